"""``adapterhub.init(model)``: gives a plain Transformers model the adapter API, in place.

The model keeps its class and its ``forward``; the API methods are bound to the instance and the adapter
bookkeeping lives in ``model.adapterhub_state``. Method names follow the ``adapters`` library.
"""

from __future__ import annotations

import re
import types
from typing import Any, Callable, Iterable, cast

import torch
from torch import nn

from . import adapter_io, adapterdrop, remote, saving
from .architectures import Architecture, architecture_of
from .composition import Block, Setup, parse_setup
from .configs import AdapterConfig, resolve_config
from .errors import AdapterConfigError, AdapterExistsError, AdapterNotFoundError
from .keys import adapter_pattern
from .methods.base import Method, method_for
from .paths import check_container_key, get_module
from .rollback import all_or_nothing

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class AdapterState:
    """Everything adapterhub knows about one model: configs, methods, the active setup."""

    def __init__(self, model: nn.Module):
        # a Transformers model (config, base_model_prefix, get_output_embeddings), typed loosely like its config
        self.model: Any = model
        self.base_model: nn.Module = getattr(model, "base_model", model)
        self.architecture: Architecture = architecture_of(model)
        layers = get_module(self.base_model, self.architecture.layers)  # an nn.ModuleList
        self.layers: list[nn.Module] = list(cast(Iterable[nn.Module], layers))
        config: Any = model.config
        self.hidden_size: int = config.hidden_size if hasattr(config, "hidden_size") else config.dim
        self.embedding_size: int = getattr(config, "embedding_size", None) or self.hidden_size
        self.configs: dict[str, AdapterConfig] = {}
        self.methods: dict[str, Method] = {}  # method name -> the method's instance for this model
        self.active: Block | None = None
        self.training: Block | None = None
        self.skip_layers: frozenset[int] = frozenset()  # AdapterDrop: layers whose adapters stay inactive

    @property
    def output_embeddings(self) -> nn.Module | None:
        if self.model is self.base_model or not hasattr(self.model, "get_output_embeddings"):
            return None
        return self.model.get_output_embeddings()

    @property
    def prefix(self) -> str:
        """Prefix of base-model keys in the model's state dict ("" for a bare base model)."""
        return "" if self.model is self.base_model else self.model.base_model_prefix + "."

    def method(self, config: AdapterConfig) -> Method:
        """The instance of the method that runs ``config`` in this model (created on first use)."""
        cls = method_for(config)
        if cls.name not in self.methods:
            self.methods[cls.name] = cls(self)
        return self.methods[cls.name]

    def method_of(self, name: str) -> Method:
        """The method of adapter ``name``; a union of several methods' configs (``ConfigUnion``) has several,
        see :meth:`methods_of`."""
        methods = self.methods_of(name)
        if len(methods) != 1:
            raise AdapterConfigError(
                f"adapter {name!r} is a union of {', '.join(m.name for m in methods)} adapters; this operation "
                "takes an adapter of one method"
            )
        return methods[0]

    def methods_of(self, name: str) -> list[Method]:
        """The methods that run adapter ``name`` (one per part of a union), in the config's order."""
        return [self.method(part) for part in self.configs[name].parts()]

    def config_of(self, name: str, method: Method) -> AdapterConfig:
        """The part of adapter ``name``'s config that ``method`` runs (the config itself, unless a union)."""
        for part in self.configs[name].parts():
            if self.method(part) is method:
                return part
        raise AdapterConfigError(f"adapter {name!r} has no {method.name} part")

    def replace_config(self, name: str, method: Method, new: AdapterConfig) -> None:
        """Put ``new`` in place of the part of adapter ``name``'s config that ``method`` runs."""
        old = self.config_of(name, method)
        self.configs[name] = self.configs[name].with_part(old, new)

    def fusion_method(self) -> Method | None:
        """The method instance that holds AdapterFusion layers, if any method here supports "Fuse"."""
        return next((m for m in self.methods.values() if "Fuse" in m.compositions), None)

    def adapter_parameters(self, name: str) -> dict[str, nn.Parameter]:
        pattern = adapter_pattern(name)
        return {k: p for k, p in self.model.named_parameters() if pattern.search(k)}

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        pattern = adapter_pattern(name)
        return {k: v for k, v in full_state_dict(self.model).items() if pattern.search(k)}

    def head_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters of the task head: outside the base model, LM heads (pretrained, tied) excluded."""
        if self.model is self.base_model:
            return {}
        lm_head = self.output_embeddings
        lm_ids = {id(p) for p in lm_head.parameters()} if lm_head is not None else set()
        base_ids = {id(p) for p in self.base_model.parameters()}
        return {
            k: p
            for k, p in self.model.named_parameters()
            if not k.startswith(self.prefix) and id(p) not in lm_ids and id(p) not in base_ids
        }

    def base_parameter_count(self) -> int:
        adapter_ids = {id(p) for name in self.configs for p in self.adapter_parameters(name).values()}
        return sum(p.numel() for p in self.model.parameters() if id(p) not in adapter_ids)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of ``model`` (``nn.Module.state_dict``). The library reads a model's weights through this:
    a flexible-head model set up for adapter training gives only the trained ones from its ``state_dict()``
    (what ``transformers.Trainer`` saves in its checkpoints; see ``AdapterModel.state_dict``)."""
    return nn.Module.state_dict(model)


def _state(model: nn.Module) -> AdapterState:
    state = model.__dict__.get("adapterhub_state")
    if state is None:
        raise AdapterConfigError("this model has no adapter support yet: call adapterhub.init(model) first")
    return state


def _known(state: AdapterState, name: str) -> None:
    if name not in state.configs:
        known = ", ".join(sorted(state.configs)) or "none"
        raise AdapterNotFoundError(f"no adapter named {name!r} in this model (adapters: {known})")


# ----------------------------------------------------------------------------- the API bound to the model


def add_adapter(
    self,
    adapter_name: str,
    config: AdapterConfig | str | dict = "seq_bn",
    overwrite_ok: bool = False,
    set_active: bool = False,
) -> None:
    """Add a new adapter ``adapter_name`` with ``config`` (a preset name, a config string, a dict or a config)."""
    state = _state(self)
    if not isinstance(adapter_name, str) or not _NAME.match(adapter_name):
        raise AdapterConfigError(
            f"invalid adapter name {adapter_name!r}: use letters, digits, '_' and '-' only"
        )
    if problem := check_container_key("adapter", adapter_name):
        raise AdapterConfigError(problem)
    resolved = resolve_config(config)
    if adapter_name in state.configs and not overwrite_ok:
        raise AdapterExistsError(
            f"an adapter named {adapter_name!r} already exists in this model; delete it first, "
            f"pass overwrite_ok=True, or load it under another name (load_as=...)"
        )
    with all_or_nothing(state):  # a config that fails leaves the model as it was (the old adapter too)
        if adapter_name in state.configs:
            delete_adapter(self, adapter_name)
        for index, part in enumerate(resolved.parts()):  # one part unless the config is a union
            before = state.adapter_parameters(adapter_name)
            state.method(part).add(adapter_name, part)
            _check_kept(state, adapter_name, before, index)
        state.configs[adapter_name] = resolved
        if set_active:
            set_active_adapters(self, adapter_name)
        elif state.active is not None:
            _apply_active(state)  # new modules at active sites stay inactive, but sites must be consistent


def _check_kept(state: AdapterState, name: str, before: dict[str, nn.Parameter], index: int) -> None:
    """Part ``index`` of a union must not replace the modules that an earlier part put at the same place."""
    now = state.adapter_parameters(name)
    lost = sorted(k for k, p in before.items() if now.get(k) is not p)
    if lost:
        raise AdapterConfigError(
            f"part {index} of the union config of adapter {name!r} puts modules where an earlier part put "
            f"its own ({lost[0]}); the parts of a union must use different places (e.g. leave_out)"
        )


def delete_adapter(self, adapter_name: str) -> None:
    state = _state(self)
    _known(state, adapter_name)
    with all_or_nothing(state):
        config = state.configs.pop(adapter_name)
        for part in config.parts():
            state.method(part).delete(adapter_name)
        for attr in ("active", "training"):
            setup = getattr(state, attr)
            if setup is not None and adapter_name in setup:
                setattr(state, attr, setup.without(adapter_name))  # a Fuse holding it goes too
        _apply_active(state)


def _apply_active(state: AdapterState) -> None:
    names = state.active.names() if state.active is not None else []
    for method in state.methods.values():
        method.set_active(names)
    adapterdrop.install(state)
    state.model.__dict__["active_adapters"] = state.active


def set_active_adapters(self, adapter_setup: Setup, skip_layers: Any = None) -> None:
    """Activate ``adapter_setup`` (a name, a list of names, a Stack or a Fuse); ``None`` deactivates.
    ``skip_layers`` (AdapterDrop): a number ``n`` (the ``n`` lowest layers) or a list of layer indices whose
    adapters stay inactive, in training and inference; see :mod:`adapterhub.library.adapterdrop`."""
    state = _state(self)
    setup = parse_setup(adapter_setup)
    skip = adapterdrop.parse_skip_layers(skip_layers, len(state.layers))
    if setup is not None:
        validate_setup(state, setup)
    state.active = setup
    state.skip_layers = skip
    _apply_active(state)


def validate_setup(state: AdapterState, setup: Block) -> None:
    """Every adapter of ``setup`` exists, and so does the fusion layer of each Fuse block."""
    for name in setup.names():
        _known(state, name)
    for block in setup.fuse_blocks():
        for name in block.names():
            for method in state.methods_of(name):
                if "Fuse" not in method.compositions:
                    raise AdapterConfigError(
                        f"{name!r} is a {method.name} adapter, which cannot take part in a Fuse block"
                    )
    by_method: dict[str, list[str]] = {}
    for name in setup.names():
        for method in state.methods_of(name):
            by_method.setdefault(method.name, []).append(name)
    for method_name, names in by_method.items():
        if len(names) > 1 and "Stack" not in state.methods[method_name].compositions:
            raise AdapterConfigError(
                f"{', '.join(map(repr, names))} are {method_name} adapters, of which only one can be active "
                f"at a time (setup {setup!r}); adapters of different methods can be combined"
            )
    fusion = state.fusion_method()
    for block in setup.fuse_blocks():
        if fusion is None or block.name not in fusion.fusions:
            raise AdapterConfigError(
                f"no AdapterFusion layer named {block.name!r} in this model: call add_adapter_fusion"
                f"({block.names()!r}) or load_adapter_fusion(...) first"
            )


def freeze_model(self, freeze: bool = True) -> None:
    """Freeze (or unfreeze) every weight of the model, adapters and heads included."""
    for param in self.parameters():
        param.requires_grad = not freeze


def train_adapter(self, adapter_setup: Setup, train_head: bool = True) -> None:
    """Freeze everything but the given adapter(s) (and the task head), activate them and switch to train mode."""
    state = _state(self)
    setup = parse_setup(adapter_setup)
    if setup is None:
        raise AdapterConfigError("train_adapter needs at least one adapter name")
    for name in setup.names():
        _known(state, name)
    self.train()
    freeze_model(self, True)
    for name in setup.names():
        for param in state.adapter_parameters(name).values():
            param.requires_grad = True
    if train_head:
        for param in state.head_parameters().values():
            param.requires_grad = True
    state.training = setup
    set_active_adapters(self, setup)


def has_adapters(self) -> bool:
    return bool(_state(self).configs)


def adapter_summary(self, as_dict: bool = False):
    """A table of the adapters: name, method, parameters, % of the base model, active, training."""
    state = _state(self)
    base = state.base_parameter_count()
    rows = []
    merged = {n for method in state.methods.values() for n in method.merged()}
    for name, config in state.configs.items():
        params = sum(p.numel() for p in state.adapter_parameters(name).values())
        rows.append(
            {
                "name": name,
                "method": config.method,
                "params": params,
                "percent": 100.0 * params / base if base else 0.0,
                "active": state.active is not None and name in state.active,
                "training": state.training is not None and name in state.training,
                "merged": name in merged,  # folded into the base weights (merge_adapter): acts while inactive
            }
        )
    head = sum(p.numel() for p in state.head_parameters().values())
    if as_dict:
        return rows
    header = f"{'Name':<20}{'Method':<14}{'Params':>12}{'% of base':>11}{'Active':>8}{'Training':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['name']:<20}{row['method']:<14}{row['params']:>12,}{row['percent']:>10.3f}%"
            f"{'merged' if row['merged'] else 'yes' if row['active'] else 'no':>8}"
            f"{'yes' if row['training'] else 'no':>10}"
        )
    if head:
        lines.append(f"{'(task head)':<20}{'head':<14}{head:>12,}{100.0 * head / base:>10.3f}%")
    lines.append("-" * len(header))
    lines.append(f"{'Full model':<34}{base:>12,}{100.0:>10.3f}%")
    return "\n".join(lines)


def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
    state = _state(self)
    _known(state, adapter_name)
    return state.adapter_state_dict(adapter_name)


def save_adapter(
    self,
    save_directory,
    adapter_name: str,
    with_head: bool = True,
    use_safetensors: bool = True,
    meta_dict: dict | None = None,
    format: str = "adapterhub",
) -> None:
    """Write ``adapter_name`` (and the task head) to ``save_directory``: ``format="adapterhub"`` (the
    AdapterHub format) or ``"peft"`` (a folder that ``peft.PeftModel.from_pretrained`` loads)."""
    state = _state(self)
    _known(state, adapter_name)
    adapter_io.save(
        state,
        save_directory,
        adapter_name,
        with_head=with_head,
        use_safetensors=use_safetensors,
        meta_dict=meta_dict,
        format=format,
    )


def load_adapter(
    self,
    adapter_name_or_path,
    config: Any = None,
    version: str | None = None,
    model_name: str | None = None,
    load_as: str | None = None,
    with_head: bool = True,
    set_active: bool = False,
    leave_out: list[int] | None = None,
    **kwargs: Any,
) -> str:
    """Load a saved adapter (and its head) into the model; returns the adapter's name in this model.

    ``leave_out``: layer indices whose adapter weights are not loaded (added to the saved config's leave_out).
    Other keyword arguments are options of the hub client (``endpoint``, ``token``, ...); unknown ones raise."""
    state = _state(self)
    folder = saving.resolve_location(
        adapter_name_or_path,
        config=config,
        version=version,
        model_name=model_name,
        own_model_name=getattr(self.config, "name_or_path", None),
        **kwargs,
    )
    name = adapter_io.load(state, folder, load_as=load_as, with_head=with_head, leave_out=leave_out)
    if set_active:
        set_active_adapters(self, name)
    return name


def merge_adapter(self, adapter_name: str) -> None:
    """Fold ``adapter_name`` into the base model's weights (methods that allow it: LoRA, IA3). The merged
    adapter then acts without being active; ``reset_adapter()`` undoes every merge."""
    state = _state(self)
    _known(state, adapter_name)
    state.method_of(adapter_name).merge(adapter_name)


def reset_adapter(self) -> None:
    """Undo every ``merge_adapter``: the base weights are as before the merges."""
    for method in _state(self).methods.values():
        method.unmerge()


def push_adapter_to_hub(self, repo_id: str, adapter_name: str, **kwargs: Any):
    """Push ``adapter_name`` (its head and a model card) to an adapter hub; see ``adapterhub.client.push_adapter``."""
    return remote.hook("push_adapter", "push_adapter_to_hub")(self, repo_id, adapter_name, **kwargs)


def push_adapter_setup_to_hub(self, repo_id: str, adapter_setup: Setup, **kwargs: Any):
    """Push a composed setup to an adapter hub; see ``adapterhub.client.push_adapter_setup``."""
    return remote.hook("push_adapter_setup", "push_adapter_setup_to_hub")(
        self, repo_id, adapter_setup, **kwargs
    )


_API: dict[str, Callable[..., Any]] = {
    "add_adapter": add_adapter,
    "delete_adapter": delete_adapter,
    "set_active_adapters": set_active_adapters,
    "freeze_model": freeze_model,
    "train_adapter": train_adapter,
    "has_adapters": has_adapters,
    "adapter_summary": adapter_summary,
    "adapter_state_dict": adapter_state_dict,
    "save_adapter": save_adapter,
    "load_adapter": load_adapter,
    "merge_adapter": merge_adapter,
    "reset_adapter": reset_adapter,
    "push_adapter_to_hub": push_adapter_to_hub,
    "push_adapter_setup_to_hub": push_adapter_setup_to_hub,
}


def register_api(functions: dict[str, Any]) -> None:
    """Add model methods (bound by :func:`init`) from another module of the library (fusion, setups)."""
    _API.update(functions)


def init(model: nn.Module) -> nn.Module:
    """Give ``model`` the adapter API, in place (idempotent). Returns the model."""
    if "adapterhub_state" in model.__dict__:
        return model
    state = AdapterState(model)
    model.__dict__["adapterhub_state"] = state
    model.__dict__["active_adapters"] = None
    for name, function in _API.items():
        model.__dict__[name] = types.MethodType(function, model)
    return model

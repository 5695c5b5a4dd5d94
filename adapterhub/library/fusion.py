"""AdapterFusion on a model: add, train, save and load fusion layers (bound to models by ``adapterhub.init``).

A fusion layer named ``"a,b"`` (the fused adapters joined by commas, unless named otherwise) sits next to the
adapters at every site that holds all of them (``...output.adapter_fusion_layer.a,b.{query,key,value}``). Saved in
the AdapterHub format: ``adapter_fusion_config.json`` (``adapter_names``, ``config`` and the model header) and
``model_adapter_fusion.safetensors`` (reading also accepts ``pytorch_model_adapter_fusion.bin``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from . import saving
from .composition import Block, Fuse, Stack
from .errors import AdapterConfigError, AdapterExistsError, AdapterLoadError, AdapterNotFoundError
from .keys import align_prefix
from .methods.base import Method
from .methods.bottleneck import FusionConfig
from .model import _apply_active, _known, _state, full_state_dict, register_api, train_adapter
from .rollback import all_or_nothing

FUSION_CONFIG_NAME = "adapter_fusion_config.json"
FUSION_WEIGHTS_NAME = "model_adapter_fusion.safetensors"
LEGACY_FUSION_WEIGHTS_NAME = "pytorch_model_adapter_fusion.bin"


def fusion_target(adapter_names, name: str | None = None) -> tuple[list[str], str]:
    """(fused adapter names, fusion name) from a Fuse block, a list of names or a comma-separated string."""
    if isinstance(adapter_names, Fuse):
        names, name = adapter_names.fused(), name or adapter_names.name
    elif isinstance(adapter_names, str):
        names = [n.strip() for n in adapter_names.split(",")]
    elif isinstance(adapter_names, (list, tuple)) and all(isinstance(n, str) for n in adapter_names):
        names = list(adapter_names)
    else:
        raise AdapterConfigError(
            f"AdapterFusion takes a Fuse block, a list of adapter names or 'a,b'; got {adapter_names!r}"
        )
    if len(names) < 1 or not all(names):
        raise AdapterConfigError(f"AdapterFusion needs at least one adapter name, got {adapter_names!r}")
    if len(set(names)) != len(names):
        raise AdapterConfigError(f"AdapterFusion names an adapter twice: {names}")
    return names, name or ",".join(names)


def _fuse_block(names: list[str], name: str) -> Fuse:
    return Fuse(*names) if name == ",".join(names) else Fuse(*names, name=name)


def _fusing_method(state, names: list[str]):
    """The method that fuses ``names``: all of one method, and one that supports "Fuse"."""
    for n in names:
        _known(state, n)
    methods = {state.method_of(n).name: state.method_of(n) for n in names}
    unfit = [n for n in names if "Fuse" not in state.method_of(n).compositions]
    if unfit or len(methods) > 1:
        kinds = ", ".join(f"{n!r} ({state.method_of(n).name})" for n in names)
        raise AdapterConfigError(
            f"AdapterFusion fuses adapters of one method that supports fusion (bottleneck adapters); got {kinds}"
        )
    return next(iter(methods.values()))


def _existing_fusion(state, adapter_names) -> tuple[Method, str]:
    """(the method that holds it, the name) of the fusion layer over ``adapter_names``, which must exist."""
    _, name = fusion_target(adapter_names)
    method = state.fusion_method()
    if method is None or name not in method.fusions:
        known = ", ".join(sorted(method.fusions)) if method is not None and method.fusions else "none"
        raise AdapterNotFoundError(f"no AdapterFusion layer named {name!r} in this model (fusions: {known})")
    return method, name


def _without_fusion(setup: Block | None, name: str) -> Block | None:
    if setup is None:
        return None
    if isinstance(setup, Fuse):
        return None if setup.name == name else setup
    rest = [c for c in setup.children if not (isinstance(c, Fuse) and c.name == name)]
    return Stack(*rest) if rest else None


# ----------------------------------------------------------------------------- the API bound to the model


def add_adapter_fusion(
    self,
    adapter_names,
    config: FusionConfig | str | dict | None = None,
    name: str | None = None,
    overwrite_ok: bool = False,
    set_active: bool = False,
) -> str:
    """Add an AdapterFusion layer over ``adapter_names`` (config: ``"dynamic"`` (default), ``"static"``, a dict)."""
    state = _state(self)
    names, name = fusion_target(adapter_names, name)
    method = _fusing_method(state, names)
    fusion_config = FusionConfig.load(config)
    if name in method.fusions and not overwrite_ok:
        raise AdapterExistsError(
            f"an AdapterFusion layer named {name!r} already exists; delete it first or pass overwrite_ok=True"
        )
    with all_or_nothing(state):  # a replacement that fails keeps the old fusion layer
        if name in method.fusions:
            delete_adapter_fusion(self, name)
        method.add_fusion(name, names, fusion_config)
        if set_active:
            self.set_active_adapters(_fuse_block(names, name))
    return name


def delete_adapter_fusion(self, adapter_names) -> None:
    state = _state(self)
    method, name = _existing_fusion(state, adapter_names)
    method.delete_fusion(name)
    state.active = _without_fusion(state.active, name)
    state.training = _without_fusion(state.training, name)
    _apply_active(state)


def train_adapter_fusion(
    self, adapter_setup, unfreeze_adapters: bool = False, train_head: bool = True
) -> None:
    """Freeze everything but the fusion layers of ``adapter_setup`` (and the task head; the adapters too if
    ``unfreeze_adapters``), activate the setup and switch to train mode."""
    state = _state(self)
    setup = adapter_setup if isinstance(adapter_setup, Block) else Fuse(*fusion_target(adapter_setup)[0])
    if not setup.fuse_blocks():
        raise AdapterConfigError(f"train_adapter_fusion needs a setup with a Fuse block, got {setup!r}")
    train_adapter(self, setup, train_head=train_head)  # validates, freezes all but adapters + head, activates
    if not unfreeze_adapters:
        for name in setup.names():
            for param in state.adapter_parameters(name).values():
                param.requires_grad = False
    for block in setup.fuse_blocks():  # train_adapter checked that each one exists
        for layer in _existing_fusion(state, block)[0].fusion_layers(block.name):
            for param in layer.parameters():
                param.requires_grad = True


def get_fusion_regularization_loss(self) -> torch.Tensor:
    """Sum of ``0.01 * ||I - W_value||^2`` over the fusion layers that use regularization (add it to the loss)."""
    state = _state(self)
    method = state.fusion_method()
    losses = []
    if method is not None:
        for name in method.fusions:
            losses += [
                loss
                for layer in method.fusion_layers(name)
                if (loss := layer.regularization_loss()) is not None
            ]
    if not losses:
        return torch.zeros(())
    return torch.stack(losses).sum()


def _fusion_pattern(name: str) -> re.Pattern:
    return re.compile(r"(^|\.)adapter_fusion_layer\." + re.escape(name) + r"\.")


def save_adapter_fusion(
    self,
    save_directory,
    adapter_names,
    meta_dict: dict | None = None,
    with_head: bool = False,
    use_safetensors: bool = True,
) -> None:
    """Write the fusion layer of ``adapter_names`` to ``save_directory`` in the AdapterHub format."""
    state = _state(self)
    method, name = _existing_fusion(state, adapter_names)
    names, config = method.fusions[name]
    folder = Path(save_directory)
    pattern = _fusion_pattern(name)
    weights = {k: v for k, v in full_state_dict(self).items() if pattern.search(k)}
    header = {"adapter_names": list(names), "config": config.to_dict(), **saving.model_header(state, name)}
    for key, value in (meta_dict or {}).items():
        header.setdefault(key, value)
    saving.write_weights(folder, (FUSION_WEIGHTS_NAME, LEGACY_FUSION_WEIGHTS_NAME), weights, use_safetensors)
    saving.write_json(folder / FUSION_CONFIG_NAME, header)
    flex_save = getattr(self, "save_head", None)
    if with_head and flex_save is not None and name in getattr(self, "heads", {}):
        flex_save(folder, name, use_safetensors=use_safetensors)


def load_adapter_fusion(
    self,
    adapter_fusion_name_or_path,
    load_as: str | None = None,
    set_active: bool = False,
    with_head: bool = True,
    **kwargs: Any,
) -> str:
    """Load a saved fusion layer; its adapters must be loaded already. Returns the fusion's name."""
    state = _state(self)
    folder = saving.resolve_location(adapter_fusion_name_or_path, **kwargs)
    config_path, header = saving.read_folder_json(folder, FUSION_CONFIG_NAME)
    saving._check_model(header, state, config_path)
    names = header.get("adapter_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise AdapterLoadError(
            f"{config_path}: 'adapter_names' must be a list of adapter names, got {names!r}"
        )
    try:
        config = FusionConfig.load(header.get("config"))
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    saved_name = header.get("name") or ",".join(names)
    name = load_as or saved_name
    missing = [n for n in names if n not in state.configs]
    if missing:
        raise AdapterLoadError(
            f"{config_path} fuses adapters that are not in this model: {', '.join(missing)}; load them first"
        )
    method = _fusing_method(state, names)
    if name in method.fusions:
        raise AdapterExistsError(
            f"an AdapterFusion layer named {name!r} already exists in this model; delete it or pass load_as=..."
        )
    weights, weights_path = saving.read_tensors(folder, (FUSION_WEIGHTS_NAME, LEGACY_FUSION_WEIGHTS_NAME))
    old = _fusion_pattern(saved_name)
    weights = {
        old.sub(lambda m: f"{m.group(1)}adapter_fusion_layer.{name}.", k): v for k, v in weights.items()
    }
    weights = align_prefix(weights, state)
    with all_or_nothing(state):
        method.add_fusion(name, names, config)
        pattern = _fusion_pattern(name)
        expected = {k: v for k, v in full_state_dict(self).items() if pattern.search(k)}
        saving._compare(expected, weights, "the AdapterFusion layer", weights_path)
        with torch.no_grad():
            for key, value in weights.items():
                self.get_parameter(key).copy_(value)
        flex_load = getattr(self, "load_head", None)
        if with_head and flex_load is not None and (folder / saving.HEAD_CONFIG_NAME).is_file():
            flex_load(folder, load_as=name)
    if set_active:
        self.set_active_adapters(_fuse_block(names, name))
    return name


register_api(
    {
        "add_adapter_fusion": add_adapter_fusion,
        "delete_adapter_fusion": delete_adapter_fusion,
        "train_adapter_fusion": train_adapter_fusion,
        "get_fusion_regularization_loss": get_fusion_regularization_loss,
        "save_adapter_fusion": save_adapter_fusion,
        "load_adapter_fusion": load_adapter_fusion,
    }
)

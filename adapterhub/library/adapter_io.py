"""Saving an adapter of a model to a folder, and putting a saved adapter into a model.

Two dialects, told apart by the folder's ``adapter_config.json`` (never by a file name): the AdapterHub format
(a ``config`` entry plus the model header; weights in ``adapter.safetensors`` / ``pytorch_adapter.bin``) and
the PEFT format (a ``peft_type`` entry; weights in ``adapter_model.safetensors`` / ``adapter_model.bin``, keyed
``base_model.model.<module path>...``, task heads as ``modules_to_save``). File reading and writing is
:mod:`.saving`'s; which method reads a config is the method registry's (:mod:`.methods.base`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import saving
from .configs import resolve_config
from .errors import AdapterConfigError, AdapterExistsError, AdapterLoadError
from .keys import align_prefix, local_weights, renamed
from .methods.base import method_for, method_for_peft
from .paths import get_tensor
from .rollback import all_or_nothing

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_PEFT_WEIGHTS_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
#: the name a PEFT adapter gets unless ``load_as`` names it (PEFT's own default name)
PEFT_DEFAULT_NAME = "default"
FORMATS = ("adapterhub", "peft")

# Activation names written before versions were recorded.
_LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}


# ------------------------------------------------------------------------------------------ saving


def save(
    state,
    directory,
    name: str,
    with_head: bool = True,
    use_safetensors: bool = True,
    meta_dict: dict | None = None,
    format: str = "adapterhub",
) -> None:
    if format not in FORMATS:
        raise AdapterConfigError(f"unknown adapter format {format!r}; use one of: {', '.join(FORMATS)}")
    folder = Path(directory)
    if format == "peft":
        if meta_dict:
            raise AdapterConfigError(
                "meta_dict is written in the AdapterHub format only; PEFT files have no place for it"
            )
        _save_peft(state, folder, name, with_head, use_safetensors)
        return
    weights = state.adapter_state_dict(name)
    header = {"config": state.configs[name].to_dict(), **saving.model_header(state, name)}
    for key, value in (meta_dict or {}).items():
        header.setdefault(key, value)
    saving.write_weights(folder, (saving.WEIGHTS_NAME, saving.LEGACY_WEIGHTS_NAME), weights, use_safetensors)
    saving.write_json(folder / saving.CONFIG_NAME, header)
    head = state.head_parameters()
    if with_head and getattr(
        state.model, "has_flex_heads", False
    ):  # AdapterModel: the head named like the adapter
        if name in state.model.heads:
            state.model.save_head(folder, name, use_safetensors=use_safetensors)
    elif with_head and head:
        config = state.model.config
        head_header = {
            "config": None,
            **saving.model_header(state, None),
            "num_labels": getattr(config, "num_labels", None),
            "label2id": dict(getattr(config, "label2id", {}) or {}),
        }
        names = (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME)
        saving.write_weights(folder, names, dict(head), use_safetensors)
        saving.write_json(folder / saving.HEAD_CONFIG_NAME, head_header)


def _save_peft(state, folder: Path, name: str, with_head: bool, use_safetensors: bool) -> None:
    if with_head and getattr(state.model, "has_flex_heads", False) and name in state.model.heads:
        raise AdapterConfigError(
            "flexible heads have no PEFT form; save with with_head=False or in the AdapterHub format"
        )
    if len(state.methods_of(name)) > 1:
        raise AdapterConfigError(
            f"{name!r} is a union of several methods' adapters, which PEFT has no form for; save it in the "
            "AdapterHub format"
        )
    config, weights = state.method_of(name).to_peft(name)  # weights keyed like the model's state dict
    flex = getattr(state.model, "has_flex_heads", False)  # other flexible heads are not this adapter's
    head = state.head_parameters() if with_head and not flex else {}
    if head:
        config["modules_to_save"] = sorted({key.split(".")[0] for key in head})
        weights = {**weights, **head}
    config.setdefault("base_model_name_or_path", getattr(state.model.config, "name_or_path", None) or None)
    config.setdefault("task_type", _peft_task_type(state) if head else None)
    config.setdefault("inference_mode", True)
    config.setdefault("revision", None)
    # model weights under base_model.model.; prompt-learning tables (prompt_embeddings) stay at the top
    weights = {(PEFT_PREFIX + key if "." in key else key): value for key, value in weights.items()}
    saving.write_weights(folder, (PEFT_WEIGHTS_NAME, LEGACY_PEFT_WEIGHTS_NAME), weights, use_safetensors)
    saving.write_json(folder / saving.CONFIG_NAME, config)


def _peft_task_type(state) -> str | None:
    name = type(state.model).__name__
    for suffix, task in (
        ("ForSequenceClassification", "SEQ_CLS"),
        ("ForTokenClassification", "TOKEN_CLS"),
        ("ForQuestionAnswering", "QUESTION_ANS"),
        ("ForCausalLM", "CAUSAL_LM"),
    ):
        if name.endswith(suffix):
            return task
    return None


# ------------------------------------------------------------------------------------------ loading


def install(state, name: str, config, weights: dict[str, torch.Tensor], source: Path, then=None) -> None:
    """Add adapter ``name`` with ``config`` and copy ``weights`` (keyed like the model's state dict) into it;
    ``then()`` runs last. Nothing is half-applied: on any error the model is left as it was."""
    from .model import add_adapter

    with all_or_nothing(state):
        add_adapter(state.model, name, config)
        saving._compare(state.adapter_state_dict(name), weights, "the adapter", source)
        with torch.no_grad():
            for key, value in weights.items():
                get_tensor(state.model, key).copy_(value)
        if then is not None:
            then()


def _check_new_name(state, name: str | None, config_path: Path) -> str:
    if not name:
        raise AdapterLoadError(f"{config_path} names no adapter; pass load_as=...")
    if name in state.configs:
        raise AdapterExistsError(
            f"an adapter named {name!r} already exists in this model; delete it or pass load_as=<new name>"
        )
    return name


def _static_head(state, folder: Path, with_head: bool):
    """The fixed task head saved in ``folder`` (checked against the model), or ``None``."""
    head = state.head_parameters()
    has_head = head or state.output_embeddings is not None
    if not (with_head and has_head and (folder / saving.HEAD_CONFIG_NAME).is_file()):
        return None
    head_header = saving.read_json(folder / saving.HEAD_CONFIG_NAME)
    if head_header.get("config") is not None:
        raise AdapterLoadError(
            f"{folder / saving.HEAD_CONFIG_NAME} holds a flexible prediction head "
            f"({head_header['config'].get('head_type')}); this model has a fixed head "
            f"({type(state.model).__name__}); pass with_head=False to load only the adapter"
        )
    weights, path = saving.read_tensors(folder, (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME))
    weights = _without_tied_lm_weights(state, weights, head, path)
    saving._compare({k: p.detach() for k, p in head.items()}, weights, "the head", path)
    return head_header, weights


def _without_tied_lm_weights(state, weights: dict[str, torch.Tensor], head, path: Path):
    """``weights`` without the LM head's own weights (the output embeddings, tied to the input embeddings),
    which the AdapterHub library saves with a static head; they must equal this model's."""
    lm_head = state.output_embeddings
    if lm_head is None:
        return weights
    lm_ids = {id(p) for p in lm_head.parameters()}
    own = {k: p for k, p in state.model.named_parameters(remove_duplicate=False) if id(p) in lm_ids}
    out = {}
    for key, value in weights.items():
        if key in head or key not in own:
            out[key] = value
        elif tuple(value.shape) != tuple(own[key].shape) or not torch.equal(value, own[key].detach().cpu()):
            raise AdapterLoadError(
                f"{path}: {key} differs from this model's own LM head weights (tied to its input embeddings); "
                f"was the adapter saved from another base model?"
            )
    return out


def _copy_head(state, weights: dict[str, torch.Tensor]) -> None:
    head = state.head_parameters()
    with torch.no_grad():
        for key, value in weights.items():
            head[key].copy_(value)


def _with_leave_out(config, leave_out):
    """``config`` with the layers ``leave_out`` added to its own (``load_adapter(..., leave_out=...)``)."""
    if not isinstance(leave_out, (list, tuple, set)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in leave_out
    ):
        raise AdapterConfigError(f"leave_out must be a list of layer indices, got {leave_out!r}")
    parts = [
        part for part in config.parts() if "leave_out" in part.to_dict()
    ]  # a union: each part that has it
    if not parts:
        raise AdapterConfigError(f"a {config.method} adapter has no leave_out option")
    for part in parts:
        config = config.with_part(part, part.replace(leave_out=sorted(set(part.leave_out) | set(leave_out))))
    return config


def _drop_layers(weights: dict[str, torch.Tensor], state, layers) -> dict[str, torch.Tensor]:
    """``weights`` without those of the given layer indices."""
    prefixes = tuple(f"{state.prefix}{state.architecture.layers}.{int(i)}." for i in layers)
    return {k: v for k, v in weights.items() if not k.startswith(prefixes)}


def load(state, folder: Path, load_as: str | None = None, with_head: bool = True, leave_out=None) -> str:
    config_path, header = saving.read_folder_json(folder, saving.CONFIG_NAME)
    if "peft_type" in header:
        return _load_peft(state, folder, config_path, header, load_as, with_head, leave_out)
    if "config" not in header:
        raise AdapterLoadError(
            f"{config_path} has neither a 'config' entry (AdapterHub format) nor a 'peft_type' (PEFT format)"
        )
    saving._check_model(header, state, config_path)
    config_data = dict(header["config"]) if isinstance(header["config"], dict) else header["config"]
    if "version" not in header and isinstance(config_data, dict):
        act = config_data.get("non_linearity")
        config_data["non_linearity"] = _LEGACY_ACTIVATIONS.get(act, act) if isinstance(act, str) else act
    try:
        config = resolve_config(config_data)
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    name = _check_new_name(state, load_as or header.get("name"), config_path)
    saved_name = header.get("name") or name  # the name its weights are saved under
    weights, weights_path = saving.read_tensors(folder, (saving.WEIGHTS_NAME, saving.LEGACY_WEIGHTS_NAME))
    weights = local_weights(weights, state, saved_name, name)
    for part in config.parts():  # the parts of a union, or the config itself
        weights = method_for(part).from_saved(weights)
    if leave_out:  # as the AdapterHub library: added to the saved config's leave_out, those weights dropped
        config = _with_leave_out(config, leave_out)
        weights = _drop_layers(weights, state, leave_out)

    static_head = None
    install_flex_head = None
    if with_head and getattr(state.model, "has_flex_heads", False):
        if (folder / saving.HEAD_CONFIG_NAME).is_file():  # checked now, installed with the adapter
            install_flex_head = state.model.prepare_saved_head(folder, name)
    else:
        static_head = _static_head(state, folder, with_head)

    def then() -> None:
        if install_flex_head is not None:
            install_flex_head()
        if static_head is not None:  # last: copying checked weights into the head cannot fail
            _copy_head(state, static_head[1])

    install(state, name, config, weights, weights_path, then)
    if static_head is not None:
        labels = static_head[0].get("label2id")
        if labels:
            state.model.config.label2id = dict(labels)
            state.model.config.id2label = {int(v): k for k, v in labels.items()}
    return name


def _peft_key(key: str) -> str | None:
    """A PEFT file's key as the model names it: ``base_model.model.<path>``; prompt-learning files (prefix and
    prompt tuning) hold their table at the top (``prompt_embeddings``) and ``modules_to_save`` heads at
    ``base_model.<path>``. ``None`` for any other key."""
    if key.startswith(PEFT_PREFIX):
        return key[len(PEFT_PREFIX) :]
    if key.startswith("base_model."):
        return key[len("base_model.") :]
    return key if "." not in key else None


def read_peft(state, folder: Path, config_path: Path, header: dict):
    """A PEFT adapter folder read for this model: ``(config, weights, head_weights, weights_path)``, the
    weights keyed as this model's adapter ``default`` and the ``modules_to_save`` head keyed like the model's
    parameters. Raises :class:`AdapterLoadError` for a method or file this library cannot read."""
    try:
        method = method_for_peft(header["peft_type"])
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    saved, weights_path = saving.read_tensors(folder, (PEFT_WEIGHTS_NAME, LEGACY_PEFT_WEIGHTS_NAME))
    outside = sorted(k for k in saved if _peft_key(k) is None)
    if outside:
        raise AdapterLoadError(f"{weights_path}: keys outside {PEFT_PREFIX!r}: {', '.join(outside[:5])}")
    saved = {_peft_key(k) or k: v for k, v in saved.items()}
    head_names = tuple(f"{m}." for m in header.get("modules_to_save") or ())
    base_prefix = getattr(state.model, "base_model_prefix", "") + "."
    head_weights = {
        k: v for k, v in saved.items() if k.startswith(head_names) and not k.startswith(base_prefix)
    }
    adapter_weights = align_prefix({k: v for k, v in saved.items() if k not in head_weights}, state)
    try:
        config, weights = method.from_peft(header, adapter_weights, state)
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    return config, weights, head_weights, weights_path


def _load_peft(
    state, folder: Path, config_path: Path, header: dict, load_as, with_head: bool, leave_out
) -> str:
    config, weights, head_weights, weights_path = read_peft(state, folder, config_path, header)
    name = _check_new_name(state, load_as or PEFT_DEFAULT_NAME, config_path)
    weights = renamed(weights, PEFT_DEFAULT_NAME, name)
    if leave_out:
        config = _with_leave_out(config, leave_out)
        weights = _drop_layers(weights, state, leave_out)
    head = {k: p.detach() for k, p in state.head_parameters().items()}
    if head_weights and with_head and head:  # as for AdapterHub files: a model without a task head skips it
        saving._compare(head, head_weights, "the head (modules_to_save)", weights_path)
    else:
        head_weights = {}

    install(state, name, config, weights, weights_path, lambda: _copy_head(state, head_weights))
    return name

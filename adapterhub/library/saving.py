"""Saving and loading adapters in the AdapterHub format.

A saved adapter is a folder with ``adapter_config.json`` and ``adapter.safetensors`` (or the legacy
``pytorch_adapter.bin``), plus ``head_config.json`` and ``model_head.safetensors`` (``pytorch_model_head.bin``)
when a task head is saved with it. Weight names are those of the ``adapters`` library, relative to the model
the adapter was saved from (``bert.encoder.layer.0.output.adapters.NAME...`` from a model with a head,
``encoder.layer.0...`` from a bare base model); both forms load into either kind of model.
Every file is written atomically (temporary file, then rename). Legacy ``.bin`` files are only ever read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from .configs import resolve_config
from .errors import AdapterConfigError, AdapterExistsError, AdapterLoadError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_adapter.bin"
HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAME = "model_head.safetensors"
LEGACY_HEAD_WEIGHTS_NAME = "pytorch_model_head.bin"

# Container names of adapter-transformers v1 (the paper's code), renamed in v2.
_LEGACY_CONTAINERS = {
    "attention_text_task_adapters": "adapters",
    "attention_text_lang_adapters": "adapters",
    "layer_text_task_adapters": "adapters",
    "layer_text_lang_adapters": "adapters",
    "invertible_lang_adapters": "invertible_adapters",
}
# Activation names written before versions were recorded.
_LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}


# ------------------------------------------------------------------------------------------ file helpers


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)

    _atomic_write(path, write)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(plain, tmp, metadata={"format": "pt"}))


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise AdapterLoadError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise AdapterLoadError(f"{path} must hold a JSON object")
    return data


def read_folder_json(folder: Path, filename: str) -> tuple[Path, dict]:
    """``folder/filename`` as a dict, with a clear error if it is missing."""
    path = folder / filename
    if not path.is_file():
        raise AdapterLoadError(f"no {filename} in {folder}")
    return path, read_json(path)


def read_tensors(folder: Path, names: tuple[str, str]) -> tuple[dict[str, torch.Tensor], Path]:
    """Read the safetensors file of ``names`` if present, else the legacy pickle (weights only)."""
    safe, legacy = (folder / n for n in names)
    if safe.is_file():
        try:
            return load_file(str(safe)), safe
        except (SafetensorError, OSError, ValueError) as error:
            raise AdapterLoadError(f"{safe} is corrupt or truncated: {error}") from None
    if legacy.is_file():
        try:
            data = torch.load(str(legacy), map_location="cpu", weights_only=True)
        except Exception as error:  # any unpickling failure: damaged file or non-tensor content
            raise AdapterLoadError(
                f"{legacy} is corrupt, truncated or holds more than tensors (only weights are loaded): {error}"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise AdapterLoadError(f"{legacy} does not hold a flat {{name: tensor}} dict")
        return data, legacy
    raise AdapterLoadError(f"no weights in {folder}: expected {names[0]} or {names[1]}")


# ------------------------------------------------------------------------------------------ saving


def _model_header(state, name: str | None) -> dict[str, Any]:
    config = state.model.config
    return {
        "hidden_size": state.hidden_size,
        "model_class": type(state.model).__name__,
        "model_name": getattr(config, "name_or_path", "") or "",
        "model_type": config.model_type,
        "name": name,
        "version": f"adapterhub.{__version__}",
    }


def save(
    state,
    directory,
    name: str,
    with_head: bool = True,
    use_safetensors: bool = True,
    meta_dict: dict | None = None,
) -> None:
    folder = Path(directory)
    weights = state.adapter_state_dict(name)
    header = {"config": state.configs[name].to_dict(), **_model_header(state, name)}
    for key, value in (meta_dict or {}).items():
        header.setdefault(key, value)
    if use_safetensors:
        write_tensors(folder / WEIGHTS_NAME, weights)
    else:
        _atomic_write(folder / LEGACY_WEIGHTS_NAME, lambda tmp: torch.save(weights, tmp))
    write_json(folder / CONFIG_NAME, header)
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
            **_model_header(state, None),
            "num_labels": getattr(config, "num_labels", None),
            "label2id": dict(getattr(config, "label2id", {}) or {}),
        }
        write_tensors(folder / HEAD_WEIGHTS_NAME, {k: p for k, p in head.items()})
        write_json(folder / HEAD_CONFIG_NAME, head_header)


# ------------------------------------------------------------------------------------------ loading


def resolve_location(identifier, **kwargs: Any) -> Path:
    """The local folder of a saved adapter; hub identifiers and URLs go through the hub client (imported only then)."""
    path = Path(os.fspath(identifier)).expanduser()
    if path.is_dir():
        return path
    if isinstance(identifier, str) and not path.exists():
        from ..client.resolve import adapter_folder

        path = adapter_folder(identifier, **kwargs)
        if path.is_dir():
            return path
    if path.exists():
        raise AdapterLoadError(f"{path} is a file; load_adapter expects the folder that holds {CONFIG_NAME}")
    raise AdapterLoadError(f"no adapter folder at {path}")


def _rename_keys(weights: dict[str, torch.Tensor], saved_name: str, new_name: str) -> dict[str, torch.Tensor]:
    out = {}
    container = re.compile(r"(^|\.)(" + "|".join(_LEGACY_CONTAINERS) + r")\.")
    own = re.compile(
        r"(^|\.)(adapters|invertible_adapters|shared_parameters)\." + re.escape(saved_name) + r"\."
    )
    for key, value in weights.items():
        key = container.sub(lambda m: m.group(1) + _LEGACY_CONTAINERS[m.group(2)] + ".", key)
        key = own.sub(lambda m: f"{m.group(1)}{m.group(2)}.{new_name}.", key)
        out[key] = value
    return out


def _align_prefix(weights: dict[str, torch.Tensor], state) -> dict[str, torch.Tensor]:
    """Key names relative to this model, whether saved from a model with a head or a bare base model."""
    base_prefix = getattr(state.model, "base_model_prefix", "") + "."
    out = {}
    for key, value in weights.items():
        relative = key[len(base_prefix) :] if key.startswith(base_prefix) else key
        out[state.prefix + relative] = value
    return out


def _check_model(header: dict, state, path: Path) -> None:
    model_type = state.model.config.model_type
    saved_type = header.get("model_type")
    if saved_type and saved_type != model_type:
        raise AdapterLoadError(
            f"{path} was saved for a {saved_type!r} model ({header.get('model_class')}); this model is a "
            f"{model_type!r} model ({type(state.model).__name__})"
        )
    saved_hidden = header.get("hidden_size")
    if saved_hidden is not None and saved_hidden != state.hidden_size:
        raise AdapterLoadError(
            f"{path} was saved for a model with hidden size {saved_hidden}; this model has hidden size "
            f"{state.hidden_size}"
        )


def compare_keys(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]):
    """(missing, unexpected, wrong-shape) key lists of ``given`` weights against ``expected`` ones."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    return missing, unexpected, wrong


def _compare(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], what: str, path: Path
) -> None:
    missing, unexpected, wrong = compare_keys(expected, given)
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        problems.append(
            "shape mismatch: "
            + ", ".join(
                f"{k} (file {tuple(given[k].shape)}, model {tuple(expected[k].shape)})" for k in wrong
            )
        )
    if problems:
        raise AdapterLoadError(f"{what} in {path} does not fit the model: " + "; ".join(problems))


def load(state, folder: Path, load_as: str | None = None, with_head: bool = True) -> str:
    from .model import add_adapter, delete_adapter

    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise AdapterLoadError(f"no {CONFIG_NAME} in {folder}")
    header = read_json(config_path)
    if "config" not in header:
        raise AdapterLoadError(f"{config_path} has no 'config' entry; is it a PEFT adapter_config.json?")
    _check_model(header, state, config_path)
    config_data = dict(header["config"]) if isinstance(header["config"], dict) else header["config"]
    if "version" not in header and isinstance(config_data, dict):
        act = config_data.get("non_linearity")
        config_data["non_linearity"] = _LEGACY_ACTIVATIONS.get(act, act)
    try:
        config = resolve_config(config_data)
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    saved_name = header.get("name") or load_as
    name = load_as or saved_name
    if not name:
        raise AdapterLoadError(f"{config_path} names no adapter; pass load_as=...")
    if name in state.configs:
        raise AdapterExistsError(
            f"an adapter named {name!r} already exists in this model; delete it or pass load_as=<new name>"
        )
    weights, weights_path = read_tensors(folder, (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME))
    weights = _align_prefix(_rename_keys(weights, saved_name, name), state)

    head_weights = None
    install_flex_head = None
    head = state.head_parameters()
    if with_head and getattr(state.model, "has_flex_heads", False):
        if (folder / HEAD_CONFIG_NAME).is_file():  # checked now, installed with the adapter
            install_flex_head = state.model.prepare_saved_head(folder, name)
    elif with_head and head and (folder / HEAD_CONFIG_NAME).is_file():
        head_header = read_json(folder / HEAD_CONFIG_NAME)
        if head_header.get("config") is not None:
            raise AdapterLoadError(
                f"{folder / HEAD_CONFIG_NAME} holds a flexible prediction head ({head_header['config'].get('head_type')}); "
                f"this model has a fixed head ({type(state.model).__name__}); pass with_head=False to load "
                f"only the adapter"
            )
        head_weights, head_path = read_tensors(folder, (HEAD_WEIGHTS_NAME, LEGACY_HEAD_WEIGHTS_NAME))
        _compare({k: p.detach() for k, p in head.items()}, head_weights, "the head", head_path)

    add_adapter(state.model, name, config)
    try:
        expected = state.adapter_state_dict(name)
        _compare(expected, weights, "the adapter", weights_path)
        with torch.no_grad():
            for key, value in weights.items():
                state.model.get_parameter(key).copy_(value)
            if head_weights is not None:
                for key, value in head_weights.items():
                    head[key].copy_(value)
        if install_flex_head is not None:
            install_flex_head()
    except BaseException:
        delete_adapter(state.model, name)
        raise
    if head_weights is not None:
        labels = head_header.get("label2id")
        if labels:
            state.model.config.label2id = dict(labels)
            state.model.config.id2label = {int(v): k for k, v in labels.items()}
    return name

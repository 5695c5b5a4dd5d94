"""Adapter files: names, atomic writes, and reading them back (no model is changed here).

A saved adapter is a folder with ``adapter_config.json`` and ``adapter.safetensors`` (or the legacy
``pytorch_adapter.bin``), plus ``head_config.json`` and ``model_head.safetensors`` (``pytorch_model_head.bin``)
when a task head is saved with it. Weight names are those of the ``adapters`` library, relative to the model
the adapter was saved from (``bert.encoder.layer.0.output.adapters.NAME...`` from a model with a head,
``encoder.layer.0...`` from a bare base model); both forms load into either kind of model.
Every file is written atomically (temporary file, then rename). Legacy ``.bin`` files are only ever read with
``torch.load(weights_only=True)``. Putting loaded weights into a model is :mod:`.adapter_io`'s job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..common.files import atomic_write
from ..version import __version__
from . import remote
from .errors import AdapterLoadError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_adapter.bin"
HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAME = "model_head.safetensors"
LEGACY_HEAD_WEIGHTS_NAME = "pytorch_model_head.bin"

# ------------------------------------------------------------------------------------------ file helpers


def write_json(path: Path, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)

    atomic_write(path, write)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, tmp, metadata={"format": "pt"}))


def write_weights(
    folder: Path, names: tuple[str, str], tensors: dict[str, torch.Tensor], use_safetensors: bool
) -> None:
    """``tensors`` as ``names[0]`` (safetensors) or ``names[1]`` (a legacy ``.bin`` pickle of plain tensors); the
    file of the other format is removed, so that a folder never holds two versions of the same weights."""
    keep, other = (names[0], names[1]) if use_safetensors else (names[1], names[0])
    if use_safetensors:
        write_tensors(folder / keep, tensors)
    else:
        plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        atomic_write(folder / keep, lambda tmp: torch.save(plain, tmp))
    (folder / other).unlink(missing_ok=True)


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


def model_header(state, name: str | None) -> dict[str, Any]:
    config = state.model.config
    return {
        "hidden_size": state.hidden_size,
        "model_class": type(state.model).__name__,
        "model_name": getattr(config, "name_or_path", "") or "",
        "model_type": config.model_type,
        "name": name,
        "version": f"adapterhub.{__version__}",
    }


# ------------------------------------------------------------------------------------------ loading


def resolve_location(identifier, **kwargs: Any) -> Path:
    """The local folder of a saved adapter; hub identifiers and URLs go through the hub client's resolver."""
    path = Path(os.fspath(identifier)).expanduser()
    resolver = remote.registered("adapter_folder")
    if kwargs and resolver is not None:
        # a local folder takes no hub options, but a misspelt or unsupported option is still an error
        import inspect

        parameters = inspect.signature(resolver).parameters.values()
        known = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY]
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise TypeError(
                f"unknown option(s) for loading an adapter: {', '.join(unknown)}; known: {', '.join(known)}"
            )
    if path.is_dir():
        return path
    if isinstance(identifier, str) and not path.exists():
        path = remote.hook("adapter_folder", f"loading {identifier!r} (not a local folder)")(
            identifier, **kwargs
        )
        if path.is_dir():
            return path
    if path.exists():
        raise AdapterLoadError(f"{path} is a file; load_adapter expects the folder that holds {CONFIG_NAME}")
    raise AdapterLoadError(f"no adapter folder at {path}")


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

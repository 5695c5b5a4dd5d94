"""Saving and loading the flexible heads of an ``AdapterModel``: ``head_config.json`` (the head's config and
the model header) and ``model_head.safetensors`` (reading also accepts ``pytorch_model_head.bin``), as the
``adapters`` library writes them, so heads move both ways between the two libraries."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable

import torch

from . import saving
from .errors import AdapterConfigError, AdapterLoadError, AdapterNotFoundError
from .head_types import build_head, check_new_head
from .lm_heads import LMHead
from .model import _state

logger = logging.getLogger(__name__)


def save_head(model: Any, save_directory, head_name: str, use_safetensors: bool = True) -> None:
    if head_name not in model.heads:
        raise AdapterNotFoundError(f"no head named {head_name!r} (heads: {', '.join(model.heads) or 'none'})")
    header = saving.model_header(_state(model), head_name)
    folder = Path(save_directory)
    head = model.heads[head_name]
    weights = {f"heads.{head_name}.{k}": v for k, v in head.state_dict().items()}
    saving.write_weights(
        folder, (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME), weights, use_safetensors
    )
    saving.write_json(
        folder / saving.HEAD_CONFIG_NAME,
        {"config": dict(head.config), **header},
    )


def prepare_saved_head(model: Any, folder: Path, name: str) -> Callable[[], None]:
    """Read and check the head saved in ``folder``; returns a function that installs it in ``model`` as
    ``name`` (so that a caller can check everything else before changing the model)."""
    path = Path(folder) / saving.HEAD_CONFIG_NAME
    header = saving.read_json(path)
    head = _head_of_header(model, header, path, name)
    weights, weights_path = saving.read_tensors(
        Path(folder), (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME)
    )
    local = _local_weights(weights, header.get("name") or name, weights_path)
    saving._compare(dict(head.state_dict()), local, "the head", weights_path)
    _copy_weights(head, local, name, weights_path)

    def install() -> None:
        if name in model.heads:
            logger.warning("replacing the existing head %r with the one loaded from %s", name, folder)
        model.heads[name] = head
        model.active_head = name

    return install


def load_head(model: Any, save_directory, load_as: str | None = None) -> str:
    """Load a head saved with :func:`save_head` into ``model``; it becomes the active head. Returns its name."""
    folder = saving.resolve_location(save_directory)
    if not (folder / saving.HEAD_CONFIG_NAME).is_file():
        raise AdapterLoadError(f"no {saving.HEAD_CONFIG_NAME} in {folder}")
    name = load_as or saving.read_json(folder / saving.HEAD_CONFIG_NAME).get("name")
    if not name:
        raise AdapterLoadError(f"{folder / saving.HEAD_CONFIG_NAME} names no head; pass load_as=...")
    check_new_head(model.heads, name, overwrite_ok=True)
    prepare_saved_head(model, folder, name)()
    return name


def _head_of_header(model: Any, header: dict, path: Path, name: str) -> torch.nn.Module:
    """A new head module for the flexible head that ``header`` (a head_config.json) describes."""
    config = header.get("config")
    if config is None:
        raise AdapterLoadError(
            f"{path} holds the fixed head of a {header.get('model_class')} (config null); this model "
            f"({type(model).__name__}) has flexible heads; pass with_head=False to load without it, or load it "
            f"into a {header.get('model_class')}"
        )
    if not isinstance(config, dict):
        raise AdapterLoadError(f"{path}: 'config' must be a JSON object, got {config!r}")
    saving._check_model(header, _state(model), path)
    try:
        return build_head(model, name, config)
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{path}: {error}") from None


def _local_weights(weights: dict[str, torch.Tensor], saved_name: str, weights_path: Path) -> dict:
    """``heads.<saved_name>.<key>`` -> ``<key>``; any other key is an error."""
    saved = re.compile(r"^heads\." + re.escape(saved_name) + r"\.")
    local = {}
    for key, value in weights.items():
        if not saved.match(key):
            raise AdapterLoadError(f"{weights_path}: unexpected key {key!r} (expected heads.<name>.*)")
        local[saved.sub("", key)] = value
    return local


def _copy_weights(
    head: torch.nn.Module, local: dict[str, torch.Tensor], name: str, weights_path: Path
) -> None:
    """The saved weights into ``head``; a weight tied to the input embeddings must equal them instead."""
    tied = head.tied_keys() if isinstance(head, LMHead) else set()
    with torch.no_grad():
        for key, value in local.items():
            param = head.get_parameter(key)
            if key not in tied:
                param.copy_(value)
            elif not torch.equal(value.to(param.device, param.dtype), param):
                raise AdapterLoadError(
                    f"{weights_path}: heads.{name}.{key} is tied to this model's input embeddings, but "
                    f"differs from them; was the head saved from another base model?"
                )

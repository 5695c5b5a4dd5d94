"""Whole-model checkpoints of an :class:`~adapterhub.library.adapter_model.AdapterModel`, as ``<Arch>AdapterModel`` writes them.

``save_pretrained(dir)`` writes ``config.json`` (the base model's config plus ``adapters``: the AdapterHub
``ModelAdaptersConfig`` dict with ``adapters``, ``config_map``, ``fusions``, ``fusion_config_map``,
``fusion_name_map``; and ``prediction_heads``: each head's config) and ``model.safetensors`` with every weight
(``bert.embeddings...``, ``bert.encoder.layer.0.output.adapters.a...``, ``heads.a.1.weight``).
``AdapterModel.from_pretrained`` reads such a folder (also one written by the ``adapters`` library): the base
model through ``AutoModel``, then the adapters, fusion layers and heads named in the config, then their weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers.utils import cached_file

from . import saving
from .configs import config_hash, resolve_config
from .errors import AdapterConfigError, AdapterLoadError
from .keys import align_prefix
from .methods.bottleneck import FusionConfig
from .methods.bottleneck.fusion import FUSION_PRESETS
from .model import full_state_dict
from .paths import get_tensor

CONFIG_KEYS = ("adapters", "prediction_heads")
logger = logging.getLogger(__name__)


class _DropUnexpectedOnlyReport(logging.Filter):
    """Drops transformers' load report when it lists only unused (UNEXPECTED) weights: we report those ourselves,
    after the adapters, fusion layers and heads have taken theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (
            "LOAD REPORT" in text
            and "UNEXPECTED" in text
            and "MISSING" not in text
            and "MISMATCH" not in text
        )


def load_base_model(path, **kwargs: Any):
    """``AutoModel.from_pretrained(path, **kwargs)``; returns the model and the checkpoint keys it did not use."""
    import transformers

    if kwargs.pop("output_loading_info", False):
        raise TypeError(
            "AdapterModel.from_pretrained returns the model only; output_loading_info is not supported (weights "
            "of the checkpoint that nothing took are logged as a warning)"
        )
    log = logging.getLogger("transformers.modeling_utils")
    quiet = _DropUnexpectedOnlyReport()
    log.addFilter(quiet)
    try:
        base, info = transformers.AutoModel.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        log.removeFilter(quiet)
    return base, set(info.get("unexpected_keys", ()))


def warn_unused(path, model, unused: set[str]) -> None:
    if unused:
        logger.warning(
            "weights in %s not used by %s: %s", path, type(model).__name__, ", ".join(sorted(unused))
        )


def adapters_config(model) -> dict[str, Any]:
    """The ``adapters`` entry of config.json for the model's adapters and fusion layers."""
    state = model.adapterhub_state
    out: dict[str, Any] = {
        "adapters": {},
        "config_map": {},
        "fusions": {},
        "fusion_config_map": {},
        "fusion_name_map": {},
    }
    for name, config in state.configs.items():
        key = config_hash(config)
        out["adapters"][name] = key
        out["config_map"][key] = config.to_dict()
    method = state.fusion_method()
    for name, (names, config) in method.fusions.items() if method is not None else []:
        # a preset by its name (the `adapters` library reads fusion configs from the map as plain dicts and fails)
        preset = next((preset for preset, value in FUSION_PRESETS.items() if value == config), None)
        if preset is not None:
            key = preset
        else:
            key = config_hash(config.to_dict())
            out["fusion_config_map"][key] = config.to_dict()
        out["fusions"][name] = key
        if name != ",".join(names):
            out["fusion_name_map"][name] = list(names)
    return out


def save_pretrained(model, save_directory, use_safetensors: bool = True) -> None:
    folder = Path(save_directory)
    config = model.config.to_dict()
    config["adapters"] = adapters_config(model)
    config["prediction_heads"] = {name: dict(head.config) for name, head in model.heads.items()}
    config["architectures"] = [type(model).__name__]
    weights = full_state_dict(model)
    saving.write_weights(folder, ("model.safetensors", "pytorch_model.bin"), weights, use_safetensors)
    saving.write_json(folder / "config.json", config)


def _checkpoint_weights(path, **kwargs: Any) -> dict[str, torch.Tensor]:
    options = {k: kwargs[k] for k in ("cache_dir", "revision", "local_files_only", "token") if k in kwargs}
    found: dict[str, str] = {}
    for name in (
        "model.safetensors.index.json",
        "model.safetensors",
        "pytorch_model.bin.index.json",
        "pytorch_model.bin",
    ):
        file = cached_file(path, name, _raise_exceptions_for_missing_entries=False, **options)
        if file:
            found[name] = file
            break
    if not found:
        raise AdapterLoadError(f"no model weights found at {path}")
    name, file = next(iter(found.items()))
    if name.endswith(".index.json"):
        shards = sorted(set(json.loads(Path(file).read_text())["weight_map"].values()))
        files = []
        for shard in shards:
            shard_file = cached_file(path, shard, _raise_exceptions_for_missing_entries=False, **options)
            if not shard_file:
                raise AdapterLoadError(f"{path}: the shard {shard} that {name} lists is missing")
            files.append(shard_file)
    else:
        files = [file]
    weights: dict[str, torch.Tensor] = {}
    for shard in files:
        weights.update(
            load_file(shard)
            if shard.endswith(".safetensors")
            else torch.load(shard, map_location="cpu", weights_only=True)
        )
    return weights


def _local_name(key: str, state) -> str:
    """A checkpoint key as this model names it (heads stay at the top, the rest under the base model prefix)."""
    return key if key.startswith("heads.") else next(iter(align_prefix({key: torch.empty(0)}, state)))


def restore(
    model, path, adapters: dict | None, heads: dict | None, unused: set[str], **kwargs: Any
) -> set[str]:
    """Add the adapters, fusion layers and heads named in a checkpoint's config, then load their weights.

    ``unused``: the checkpoint keys the base model did not take; returns those that are still unused."""
    before = set(full_state_dict(model))
    adapters = adapters or {}
    config_map = adapters.get("config_map") or {}
    try:
        for name, key in (adapters.get("adapters") or {}).items():
            if isinstance(key, (list, tuple)):  # adapter-transformers 1.x: (type, config name)
                key = key[1] or key[0]
            model.add_adapter(name, config=resolve_config(config_map.get(key, key)))
        fusion_configs = adapters.get("fusion_config_map") or {}
        for name, key in (adapters.get("fusions") or {}).items():
            names = (adapters.get("fusion_name_map") or {}).get(name) or name.split(",")
            model.add_adapter_fusion(names, config=FusionConfig.load(fusion_configs.get(key, key)), name=name)
        for name, config in (heads or {}).items():
            model.add_prediction_head_from_config(name, config, overwrite_ok=True)
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{path}: config.json: {error}") from None
    state = model.adapterhub_state
    expected = {k: v for k, v in full_state_dict(model).items() if k not in before}
    if not expected:
        return unused
    given = {}
    for key, value in _checkpoint_weights(path, **kwargs).items():
        local = _local_name(key, state)
        if local in expected:
            given[local] = value
    saving._compare(expected, given, "the adapters, fusion layers and heads", Path(str(path)))
    with torch.no_grad():
        for key, value in given.items():
            get_tensor(model, key).copy_(value)
    return {k for k in unused if _local_name(k, state) not in given}

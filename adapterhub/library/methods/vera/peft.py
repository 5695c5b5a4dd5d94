"""VeRA adapters in the PEFT format (``peft_type`` ``VERA``), both ways.

PEFT keys (after ``base_model.model.``): ``<module>.vera_lambda_b`` ``[out]`` and ``<module>.vera_lambda_d``
``[r]``; with ``save_projection`` (PEFT's default) also the shared ``base_model.vera_A`` / ``vera_B``. We draw
those from ``projection_prng_key`` as PEFT does, so saved ones must equal ours (else the file is refused) and we
write none (``save_projection: false``).
"""

from __future__ import annotations

import re

import torch

from ...errors import AdapterConfigError
from ..lora.peft import _targets, _unsupported
from .config import VeRAConfig
from .projections import projections

_PLACEHOLDER = "default"
_VECTOR_KEY = re.compile(r"^(?P<path>.+)\.vera_lambda_(?P<part>[bd])$")
_PROJECTION_KEY = re.compile(r"(^|\.)vera_(?P<which>[AB])(\.[^.]+)?$")
_PLAIN: dict[str, tuple] = {"bias": ("none",), "exclude_modules": (None, []), "modules_to_save": (None, [])}


def from_peft(peft_config: dict, weights: dict[str, torch.Tensor], host):
    _unsupported(peft_config, _PLAIN)
    config = VeRAConfig(
        r=int(peft_config.get("r", 256)),
        projection_prng_key=int(peft_config.get("projection_prng_key", 0)),
        d_initial=float(peft_config.get("d_initial", 0.1)),
        dropout=float(peft_config.get("vera_dropout", 0.0) or 0.0),
        **_targets(peft_config, host),
    )
    out, saved = {}, {}
    for key, value in weights.items():
        match = _VECTOR_KEY.match(key)
        if match:
            out[f"{match.group('path')}.veras.{_PLACEHOLDER}.lambda_{match.group('part')}"] = value
            continue
        match = _PROJECTION_KEY.search(key)
        if not match:
            raise AdapterConfigError(f"unexpected key {key!r} in a PEFT VeRA adapter")
        saved[match.group("which")] = value
    if saved:
        if set(saved) != {"A", "B"}:
            raise AdapterConfigError("a PEFT VeRA adapter saves both vera_A and vera_B or neither")
        A, B = projections(config, saved["A"].shape[1], saved["B"].shape[0])
        if not (torch.equal(saved["A"].float(), A) and torch.equal(saved["B"].float(), B)):
            raise AdapterConfigError(
                "the saved vera_A / vera_B are not the projections drawn from projection_prng_key "
                f"{config.projection_prng_key}; this library regenerates them and cannot use other ones"
            )
    return config, out


def to_peft(method, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    config: VeRAConfig = method.host.configs[name]
    prefix = method.host.prefix
    weights: dict[str, torch.Tensor] = {}
    paths, conv = [], False
    for path, target in method.targets.items():
        if name not in target.veras:
            continue
        paths.append(path)
        conv = conv or type(target.module).__name__ == "Conv1D"
        weights[f"{prefix}{path}.vera_lambda_b"] = target.veras[name].lambda_b.detach()
        weights[f"{prefix}{path}.vera_lambda_d"] = target.veras[name].lambda_d.detach()
    header = {
        "peft_type": "VERA",
        "r": config.r,
        "target_modules": sorted(paths),
        "projection_prng_key": config.projection_prng_key,
        "save_projection": False,
        "vera_dropout": config.dropout,
        "d_initial": config.d_initial,
        "fan_in_fan_out": conv,
        "bias": "none",
        "init_weights": True,
        "modules_to_save": None,
    }
    return header, weights

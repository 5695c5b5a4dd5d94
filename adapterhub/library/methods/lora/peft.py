"""LoRA and IA3 adapters in the PEFT format (``peft_type`` ``LORA`` / ``IA3``), both ways.

PEFT keys (after ``base_model.model.``, relative to the model): ``<module>.lora_A.weight`` ``[r, in]``,
``<module>.lora_B.weight`` ``[out, r]``, ``<module>.lora_magnitude_vector`` ``[out]`` (DoRA),
``<module>.ia3_l`` (``[out, 1]``, or ``[1, in]`` for ``feedforward_modules``). The target layers come from the
config (``target_modules`` with PEFT's matching rule, ``layers_to_transform``), so a file that lacks a target's
tensors is reported as missing them; we write them as exact module paths.
"""

from __future__ import annotations

import re

import torch

from ...errors import AdapterConfigError
from .config import IA3Config, LoRAConfig
from .layers import IA3

_PLACEHOLDER = "default"  # the adapter name of the returned weights (renamed by the loader)
_LORA_KEY = re.compile(
    r"^(?P<path>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_magnitude_vector(\.weight)?)$"
)
_IA3_KEY = re.compile(r"^(?P<path>.+)\.ia3_l$")
# options PEFT may write, with the values this library reproduces exactly
_LORA_PLAIN: dict[str, tuple] = {
    "bias": ("none",),
    "lora_bias": (False, None),
    "use_qalora": (False, None),
    "layer_replication": (None,),
    "alora_invocation_tokens": (None,),
    "trainable_token_indices": (None,),
    "target_parameters": (None, []),
    "arrow_config": (None,),
    "use_bdlora": (None, False),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "exclude_modules": (None, []),
}
_IA3_PLAIN: dict[str, tuple] = {"exclude_modules": (None, [])}


def _unsupported(peft_config: dict, plain: dict) -> None:
    odd = {
        k: peft_config[k]
        for k, allowed in plain.items()
        if k in peft_config and peft_config[k] not in allowed
    }
    if odd:
        raise AdapterConfigError(
            "PEFT options not supported: " + ", ".join(f"{k}={v!r}" for k, v in sorted(odd.items()))
        )


def _targets(peft_config: dict, host) -> dict:
    """``target_modules`` and, from ``layers_to_transform``, ``leave_out`` for our config."""
    targets = peft_config.get("target_modules")
    if not targets:
        raise AdapterConfigError("the PEFT config names no target_modules")
    if isinstance(targets, (list, tuple)):
        targets = sorted(str(t) for t in targets)
    layers = peft_config.get("layers_to_transform")
    if layers is None:
        return {"target_modules": targets}
    keep = {layers} if isinstance(layers, int) else set(layers)
    return {"target_modules": targets, "leave_out": [i for i in range(len(host.layers)) if i not in keep]}


def from_peft(peft_config: dict, weights: dict[str, torch.Tensor], host):
    kind = str(peft_config["peft_type"]).upper()
    if kind == "LORA":
        return _lora_from_peft(peft_config, weights, host)
    return _ia3_from_peft(peft_config, weights, host)


def _lora_from_peft(peft_config: dict, weights: dict[str, torch.Tensor], host):
    _unsupported(peft_config, _LORA_PLAIN)
    out = {}
    for key, value in weights.items():
        match = _LORA_KEY.match(key)
        if not match:
            raise AdapterConfigError(f"unexpected key {key!r} in a PEFT LoRA adapter")
        path, part = match.group("path"), match.group("part")
        if part.startswith("lora_magnitude_vector"):
            out[f"{path}.loras.{_PLACEHOLDER}.m.weight"] = value.reshape(-1, 1)
        else:
            out[f"{path}.loras.{_PLACEHOLDER}.{part.split('.')[0]}"] = value
    config = LoRAConfig(
        r=int(peft_config.get("r", 8)),
        alpha=peft_config.get("lora_alpha", 8),
        dropout=float(peft_config.get("lora_dropout", 0.0) or 0.0),
        use_rslora=bool(peft_config.get("use_rslora", False)),
        use_dora=bool(peft_config.get("use_dora", False)),
        **_targets(peft_config, host),
    )
    return config, out


def _ia3_from_peft(peft_config: dict, weights: dict[str, torch.Tensor], host):
    _unsupported(peft_config, _IA3_PLAIN)
    out = {}
    for key, value in weights.items():
        match = _IA3_KEY.match(key)
        if not match:
            raise AdapterConfigError(f"unexpected key {key!r} in a PEFT IA3 adapter")
        out[f"{match.group('path')}.loras.{_PLACEHOLDER}.lora_B"] = value.reshape(-1, 1)
    feedforward = peft_config.get("feedforward_modules") or None
    if isinstance(feedforward, (list, tuple)):
        feedforward = sorted(str(t) for t in feedforward)
    config = IA3Config(feedforward_modules=feedforward, **_targets(peft_config, host))
    return config, out


def to_peft(method, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    config = method.host.configs[name]
    if config.use_gating:
        raise AdapterConfigError(f"{name!r} is a gated LoRA adapter (use_gating), which PEFT has no form for")
    prefix = method.host.prefix
    weights: dict[str, torch.Tensor] = {}
    paths, inputs, conv = [], [], False
    for path, target in method.targets.items():
        if name not in target.loras:
            continue
        module = target.loras[name]
        if not module.blocks.whole and not (isinstance(module, IA3) and module.on_input):
            raise AdapterConfigError(
                f"{name!r} adapts only some of the q/k/v blocks of the fused projection {path!r}, which has no "
                f"PEFT form; save it in the AdapterHub format"
            )
        paths.append(path)
        conv = conv or type(target.module).__name__ == "Conv1D"
        key = prefix + path
        if isinstance(module, IA3):
            if module.on_input:
                inputs.append(path)
                weights[f"{key}.ia3_l"] = module.vector().reshape(1, -1)
            else:
                weights[f"{key}.ia3_l"] = module.vector().reshape(-1, 1)
        else:
            weights[f"{key}.lora_A.weight"] = module.lora_A
            weights[f"{key}.lora_B.weight"] = module.lora_B
            if config.use_dora:
                weights[f"{key}.lora_magnitude_vector"] = module.m.weight.reshape(-1)
    weights = {k: v.detach() for k, v in weights.items()}
    if isinstance(config, IA3Config):
        header = {
            "peft_type": "IA3",
            "target_modules": sorted(paths),
            "feedforward_modules": sorted(inputs),
            "fan_in_fan_out": conv,
            "init_ia3_weights": True,
            "modules_to_save": None,
        }
    else:
        header = {
            "peft_type": "LORA",
            "r": config.r,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "use_rslora": config.use_rslora,
            "use_dora": config.use_dora,
            "target_modules": sorted(paths),
            "fan_in_fan_out": conv,
            "bias": "none",
            "init_lora_weights": True,
            "modules_to_save": None,
            "rank_pattern": {},
            "alpha_pattern": {},
        }
    return header, weights

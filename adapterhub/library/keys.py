"""Adapter weight names: which state-dict keys belong to an adapter, and saved names as this model names them.

An adapter's weights are ``<path>.<container>.<adapter name>.<parameter>``, where the containers are those of
the registered methods (``adapters``, ``invertible_adapters``, ``shared_parameters``, ``loras``, ...; see
:mod:`adapterhub.library.methods.base`). Saved names are relative to the model they were saved from
(``bert.encoder...`` from a model with a head, ``encoder...`` from a bare base model); both forms load into
either kind of model.
"""

from __future__ import annotations

import re

import torch

from .methods.base import containers

# Container names of adapter-transformers v1 (the paper's code), renamed in v2.
_LEGACY_CONTAINERS = {
    "attention_text_task_adapters": "adapters",
    "attention_text_lang_adapters": "adapters",
    "layer_text_task_adapters": "adapters",
    "layer_text_lang_adapters": "adapters",
    "invertible_lang_adapters": "invertible_adapters",
}
_LEGACY = re.compile(r"(^|\.)(" + "|".join(_LEGACY_CONTAINERS) + r")\.")


def adapter_pattern(name: str) -> re.Pattern:
    """Matches the state-dict keys of adapter ``name`` (of any method)."""
    return re.compile(r"(^|\.)(" + "|".join(map(re.escape, containers())) + r")\." + re.escape(name) + r"\.")


def renamed(weights: dict[str, torch.Tensor], saved_name: str, new_name: str) -> dict[str, torch.Tensor]:
    """Saved weights of adapter ``saved_name`` under ``new_name`` (legacy container names updated)."""
    own = adapter_pattern(saved_name)
    out = {}
    for key, value in weights.items():
        key = _LEGACY.sub(lambda m: m.group(1) + _LEGACY_CONTAINERS[m.group(2)] + ".", key)
        out[own.sub(lambda m: f"{m.group(1)}{m.group(2)}.{new_name}.", key)] = value
    return out


def align_prefix(weights: dict[str, torch.Tensor], state) -> dict[str, torch.Tensor]:
    """Key names relative to this model, whether saved from a model with a head or a bare base model."""
    base_prefix = getattr(state.model, "base_model_prefix", "") + "."
    out = {}
    for key, value in weights.items():
        relative = key[len(base_prefix) :] if key.startswith(base_prefix) else key
        out[state.prefix + relative] = value
    return out


def local_weights(weights: dict[str, torch.Tensor], state, saved_name: str, name: str):
    """Saved adapter weights keyed as adapter ``name`` of this model's state dict."""
    return align_prefix(renamed(weights, saved_name, name), state)

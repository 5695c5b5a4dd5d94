"""Helpers shared by the client tests (imported by name: a module called ``conftest`` is ambiguous when
several test folders have one)."""

from __future__ import annotations

from pathlib import Path

import torch

import adapterhub
from tiny_models import make_model

BASE = "alice/tiny-bert"


def adapter_model(seed: int = 0, name: str = "sst", config: str = "seq_bn"):
    """A tiny BERT classifier (hub id alice/tiny-bert) with one adapter of non-trivial weights, active."""
    model = fresh_model()
    model.add_adapter(name, config=config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
        for param in model.adapterhub_state.head_parameters().values():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    model.set_active_adapters(name)
    return model


def fresh_model():
    model = make_model("bert", "seqcls", seed=0)
    model.config.name_or_path = BASE
    return adapterhub.init(model)


def blob_path(hub, sha256: str) -> Path:
    """Where the server keeps a blob on its disk."""
    return Path(hub.hub.store.local_path(sha256))

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


def run_killed(script: str, *args: str) -> None:
    """Run ``script`` in a fresh Python (this environment, the repository root as working folder) and check that
    it was SIGKILLed, as the script arranges for itself half-way through a download."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ),
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr


def record_stream_starts(monkeypatch) -> list[tuple[str, int]]:
    """(path, first byte) of every file download the client starts (``HubClient.stream_file``), from now on."""
    from adapterhub.client import HubClient

    starts: list[tuple[str, int]] = []
    original = HubClient.stream_file

    def recording(self, repo_id, commit, path, start=0):
        starts.append((path, start))
        return original(self, repo_id, commit, path, start)

    monkeypatch.setattr(HubClient, "stream_file", recording)
    return starts

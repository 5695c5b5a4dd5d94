"""The lifecycle the quickstart runs, in miniature: a hub in a child process (``local_hub``), a base model
and an adapter pushed with its card, found by search, loaded by identifier into a fresh model."""

from __future__ import annotations

import torch
from client_support import BASE, adapter_model, fresh_model
from tiny_models import inputs, output_of

from adapterhub.client import list_adapters, local_hub, push_base_model


def test_local_hub_lifecycle(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAPTERHUB_TOKEN", raising=False)
    monkeypatch.delenv("ADAPTERHUB_ENDPOINT", raising=False)
    with local_hub(tmp_path / "hub", user="alice", orgs=("demo",)) as hub:
        assert hub.url.startswith("http://127.0.0.1:") and hub.token
        push_base_model(fresh_model(), BASE, endpoint=hub.url, token=hub.token)
        model = adapter_model(61)
        pushed = model.push_adapter_to_hub(
            "demo/sst2",
            "sst",
            task="sentiment",
            subtask="sst-2",
            language="en",
            metrics={"accuracy": 0.8},
            endpoint=hub.url,
            token=hub.token,
        )
        assert pushed.validation == "passed"
        (hit,) = list_adapters("sst2", base_model=BASE, endpoint=hub.url)
        assert (hit.id, hit.commit) == ("demo/sst2", pushed.commit)
        loaded = fresh_model()
        loaded.load_adapter("sentiment/sst-2@demo", endpoint=hub.url, set_active=True)
        assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))
    assert hub.process.poll() is not None  # stopped with the block

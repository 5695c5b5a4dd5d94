"""The client tests run against the real hub on 127.0.0.1: the server tests' ``live_hub`` fixture
(tests/server/conftest.py: uvicorn in a thread, users ``alice`` and ``bob``, organisation ``acme`` with alice as
a member), on SQLite only, plus the base model ``alice/tiny-bert`` (its config.json) so that uploads validate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
_path = Path(__file__).resolve().parents[1] / "server" / "conftest.py"
_spec = importlib.util.spec_from_file_location("server_conftest", _path)
_server_conftest = importlib.util.module_from_spec(_spec)
sys.modules["server_conftest"] = _server_conftest
_spec.loader.exec_module(_server_conftest)

from tiny_models import make_model  # noqa: E402


live_hub = _server_conftest.live_hub
from client_support import BASE, adapter_model, blob_path, fresh_model  # noqa: E402,F401


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    """SQLite only: the server tests cover PostgreSQL; the client does not care which database the hub uses."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.sqlite'}"


@pytest.fixture(scope="module")
def client_hub(live_hub, tmp_path_factory):
    from adapterhub.client import push_base_model

    with pytest.MonkeyPatch.context() as mp:  # pushes in module fixtures must not touch the user's own cache
        home = tmp_path_factory.mktemp("client-home")
        mp.setenv("ADAPTERHUB_CACHE", str(home / "cache"))
        mp.setenv("ADAPTERHUB_HOME", str(home / "home"))
        mp.delenv("ADAPTERHUB_TOKEN", raising=False)
        push_base_model(
            make_model("bert", "seqcls"), BASE, endpoint=live_hub.url, token=live_hub.tokens["alice"]
        )
        yield live_hub


@pytest.fixture
def env(client_hub, tmp_path, monkeypatch):
    """A private cache and home per test, the endpoint set, no token or offline mode leaking in."""
    monkeypatch.setenv("ADAPTERHUB_ENDPOINT", client_hub.url)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAPTERHUB_TOKEN", raising=False)
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return tmp_path / "cache"

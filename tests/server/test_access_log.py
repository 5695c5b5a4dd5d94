"""The hub's own access log (``HubApp.access_log``, set by ``adapterhub serve`` instead of uvicorn's): one line
per request, written after the answer went out, with uvicorn's access-log arguments and the real status."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from adapterhub.server.app import ACCESS_LOG, create_app
from adapterhub.server.hub import Hub
from adapterhub.server.settings import Settings


@pytest.fixture
def app(tmp_path):
    hub = Hub(Settings(data_dir=tmp_path / "hub"))
    app = create_app(hub=hub)
    yield app
    hub.close()


def test_each_request_is_logged_with_its_status(app, caplog):
    app.access_log = True
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger=ACCESS_LOG.name):
        assert client.get("/api/models").status_code == 200
        assert (
            client.get("/api/adapters/bundle", params={"identifier": "no/such"}).status_code == 404
        )  # fast path
        assert client.get("/no/such/resolve/main/x.json").status_code == 404
    lines = [r.args for r in caplog.records if r.name == ACCESS_LOG.name]
    assert [(m, p, s) for _, m, p, _, s in lines] == [
        ("GET", "/api/models", 200),
        ("GET", "/api/adapters/bundle?identifier=no%2Fsuch", 404),
        ("GET", "/no/such/resolve/main/x.json", 404),
    ]
    assert all(client.startswith("testclient") and version == "1.1" for client, _, _, version, _ in lines)


def test_a_path_cannot_forge_a_log_line(app, caplog):
    app.access_log = True
    forged = '/x\n10.0.0.1:1234 - "GET /admin HTTP/1.1" 200'
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger=ACCESS_LOG.name):
        client.get(forged.replace("\n", "%0A").replace(" ", "%20").replace('"', "%22"))
    (line,) = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG.name]
    assert "\n" not in line and "/x%0A10.0.0.1" in line


def test_nothing_is_logged_unless_asked(app, caplog):
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger=ACCESS_LOG.name):
        assert client.get("/api/models").status_code == 200
    assert not [r for r in caplog.records if r.name == ACCESS_LOG.name]

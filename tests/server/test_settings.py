"""Every server setting has an effect: the ones no other test module exercises are checked here against a
live server (``ADAPTERHUB_ALLOW_ANONYMOUS_READ=0``, ``public_url``, ``validation_workers``), and every
``ADAPTERHUB_*`` variable is parsed, or refused with its name."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import httpx
import pytest
from server_support import start_server

from adapterhub.server.settings import Settings


@pytest.fixture(scope="module")
def closed_hub(tmp_path_factory):
    """A hub with anonymous reads off, a public URL and two validation workers, built from the environment
    as ``adapterhub serve`` builds it; alice has a public repository with one file."""
    from adapterhub.server import auth
    from adapterhub.server.app import create_app
    from adapterhub.server.hub import Hub

    mp = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("closed")
    mp.setenv("ADAPTERHUB_DATA_DIR", str(data))
    mp.setenv("ADAPTERHUB_ALLOW_ANONYMOUS_READ", "0")
    mp.setenv("ADAPTERHUB_PUBLIC_URL", "https://hub.example.org/base")
    mp.setenv("ADAPTERHUB_VALIDATION_WORKERS", "2")
    settings = Settings.from_env()
    mp.undo()
    hub = Hub(settings)
    with hub.db.session() as s:
        token = auth.create_token(s, auth.create_account(s, "alice"), "write")
    url, server, thread = start_server(create_app(hub=hub))
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{url}/api/repos/create", json={"name": "pub"}, headers=h).status_code == 200
    lines = [{"key": "header", "value": {"summary": "add"}},
             {"key": "file", "value": {"path": "f.txt", "content": base64.b64encode(b"public text").decode()}}]  # fmt: skip
    body = "\n".join(json.dumps(x) for x in lines).encode()
    assert httpx.post(f"{url}/api/models/alice/pub/commit/main", content=body, headers=h).status_code == 200
    yield url, hub, token
    server.should_exit = True
    thread.join(10)
    hub.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/models",
        "/api/models/alice/pub",
        "/api/models/alice/pub/tree/main",
        "/alice/pub/resolve/main/f.txt",  # the download fast path
        "/api/adapters/bundle?identifier=alice/pub",  # the bundle fast path
        "/api/adapters?q=pub",
        "/api/whoami-v2",
    ],
)
def test_anonymous_reads_off_refuses_every_read_without_a_token(closed_hub, path):
    url, _, token = closed_hub
    r = httpx.get(url + path)
    assert r.status_code == 401, (path, r.status_code, r.text[:200])
    assert "anonymous" in r.text or "token" in r.text
    ok = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code in (200, 404), (path, ok.status_code)  # a bundle of a non-adapter repo: 404
    if "resolve" in path:
        assert ok.content == b"public text"


def test_anonymous_reads_off_sends_browsers_to_the_login_form(closed_hub):
    url, _, token = closed_hub
    r = httpx.get(url + "/adapters?q=x")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fadapters%3Fq%3Dx"
    assert httpx.get(url + "/login").status_code == 200
    assert httpx.get(url + "/static/ui.css").status_code == 200
    assert httpx.get(url + "/adapters", cookies={"ah_token": "ah_forged"}).status_code == 303
    assert httpx.get(url + "/adapters", cookies={"ah_token": token}).status_code == 200


def test_public_url_names_the_hub_in_answers(closed_hub):
    url, _, token = closed_hub
    r = httpx.post(
        url + "/api/repos/create", json={"name": "named"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["url"] == "https://hub.example.org/base/alice/named"


def test_validation_workers_sets_the_pool_size(closed_hub):
    _, hub, _ = closed_hub
    assert hub.validator.pool._max_workers == 2


VALUES = {"Path": ("/x/y", Path("/x/y")), "int": ("12", 12), "float": ("2.5", 2.5), "str": ("abc", "abc"),
          "bool": ("0", False)}  # fmt: skip


def test_every_setting_is_read_from_its_environment_variable(monkeypatch):
    for f in dataclasses.fields(Settings):
        raw, want = VALUES[f.type]
        monkeypatch.setenv(f"ADAPTERHUB_{f.name.upper()}", raw)
        assert getattr(Settings.from_env(), f.name) == want, f.name
        monkeypatch.delenv(f"ADAPTERHUB_{f.name.upper()}")
    for raw, want in (("1", True), ("yes", True), ("ON", True), ("false", False), ("off", False)):
        monkeypatch.setenv("ADAPTERHUB_ALLOW_ANONYMOUS_READ", raw)
        assert Settings.from_env().allow_anonymous_read is want


@pytest.mark.parametrize(
    "name,raw", [("MAX_FILE_SIZE", "12MB"), ("VALIDATION_WAIT", "soon"), ("ALLOW_ANONYMOUS_READ", "nope")]
)
def test_a_setting_that_does_not_parse_is_refused_by_name(monkeypatch, name, raw):
    monkeypatch.setenv(f"ADAPTERHUB_{name}", raw)
    with pytest.raises(ValueError, match=f"ADAPTERHUB_{name}"):
        Settings.from_env()

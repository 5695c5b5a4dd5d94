"""The plain-ASGI download path (``downloads.fast_resolve``): it answers the common download (GET/HEAD of a file,
no Range), leaves the rest to the route, whose answers are the same bytes and metadata, and hides no error."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx
import pytest

from adapterhub.server import downloads
from adapterhub.server.repos import HubError

DATA = os.urandom(300_000)


@pytest.fixture(scope="module")
def stored(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/fast-dl", exist_ok=True)
    api.upload_file(path_or_fileobj=DATA, path_in_repo="weights.dat", repo_id="alice/fast-dl")
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="alice/fast-dl")
    return f"{live_hub.url}/alice/fast-dl/resolve/main"


@pytest.fixture
def routed(monkeypatch) -> list[list[str]]:
    """The downloads that the route answers (it alone splits the path with ``_split_resolve``)."""
    calls: list[list[str]] = []
    original = downloads._split_resolve

    def recording(hub, segs):
        calls.append(segs)
        return original(hub, segs)

    monkeypatch.setattr(downloads, "_split_resolve", recording)
    return calls


METADATA = ("x-repo-commit", "etag", "x-linked-etag", "x-linked-size", "content-length", "content-type")


def test_the_fast_path_answers_plain_downloads_and_the_route_the_rest(live_hub, stored, routed, monkeypatch):
    fast = httpx.get(f"{stored}/weights.dat")
    head = httpx.head(f"{stored}/weights.dat")
    assert fast.status_code == head.status_code == 200 and fast.content == DATA
    assert fast.headers["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert routed == []
    part = httpx.get(f"{stored}/weights.dat", headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == DATA[:10]
    assert httpx.get(f"{stored}/config.json").json() == {"a": 1}  # counted as a download: the route
    assert httpx.get(f"{stored}/missing.dat").status_code == 404
    assert len(routed) == 3
    # the plain path alone (the fast path switched off) gives the same bytes and metadata
    from adapterhub.server import app as app_module

    async def declines(*args) -> bool:
        return False

    for module in (downloads, app_module):
        if hasattr(module, "fast_resolve"):
            monkeypatch.setattr(module, "fast_resolve", declines)
    plain = httpx.get(f"{stored}/weights.dat")
    assert plain.content == DATA and len(routed) == 4
    assert [plain.headers[k] for k in METADATA] == [fast.headers[k] for k in METADATA]
    plain_head = httpx.head(f"{stored}/weights.dat")
    assert [plain_head.headers[k] for k in METADATA] == [head.headers[k] for k in METADATA]


def test_fast_download_errors_surface_unless_the_route_explains_them(live_hub, stored, monkeypatch):
    scope = {
        "type": "http",
        "method": "GET",
        "headers": [],
        "raw_path": b"/alice/fast-dl/resolve/main/weights.dat",
    }

    async def send(message) -> None:
        raise AssertionError("nothing may be sent")

    def not_found(*args):
        raise HubError("no such file", 404, "EntryNotFound")

    monkeypatch.setattr(downloads.repos, "lookup_file", not_found)
    assert asyncio.run(downloads.fast_resolve(live_hub.hub, scope, send)) is False

    def broken(*args):
        raise RuntimeError("a bug in the lookup")

    monkeypatch.setattr(downloads.repos, "lookup_file", broken)
    with pytest.raises(RuntimeError, match="a bug in the lookup"):
        asyncio.run(downloads.fast_resolve(live_hub.hub, scope, send))

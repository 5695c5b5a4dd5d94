"""Downloads (``/{repo}/resolve/{revision}/{path}``): the bytes and the metadata headers huggingface_hub reads,
Range requests, counted files, errors, and the memory a large download holds."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import httpx
import pytest

DATA = os.urandom(300_000)


@pytest.fixture(scope="module")
def stored(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/dl", exist_ok=True)
    api.upload_file(path_or_fileobj=DATA, path_in_repo="weights.dat", repo_id="alice/dl")
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="alice/dl")
    return f"{live_hub.url}/alice/dl/resolve/main"


METADATA = ("x-repo-commit", "etag", "x-linked-etag", "x-linked-size", "content-length", "content-type")


def test_get_and_head_give_the_bytes_and_the_metadata(live_hub, stored):
    got = httpx.get(f"{stored}/weights.dat")
    head = httpx.head(f"{stored}/weights.dat")
    assert got.status_code == head.status_code == 200 and got.content == DATA and head.content == b""
    sha = hashlib.sha256(DATA).hexdigest()
    assert got.headers["etag"] == got.headers["x-linked-etag"] == f'"{sha}"'
    assert got.headers["x-linked-size"] == got.headers["content-length"] == str(len(DATA))
    assert len(got.headers["x-repo-commit"]) == 40
    assert got.headers["cache-control"] == "no-cache"  # a branch moves
    assert [head.headers[k] for k in METADATA] == [got.headers[k] for k in METADATA]
    pinned = httpx.get(f"{live_hub.url}/alice/dl/resolve/{got.headers['x-repo-commit']}/weights.dat")
    assert pinned.content == DATA and "immutable" in pinned.headers["cache-control"]


def _downloads(live_hub) -> int:
    from sqlalchemy import select

    from adapterhub.server.models import Repo

    live_hub.hub.downloads.flush()
    with live_hub.hub.db.session() as s:
        return s.scalar(select(Repo.downloads).where(Repo.namespace == "alice", Repo.name == "dl"))


def test_ranges_counted_files_and_errors(live_hub, stored):
    before = _downloads(live_hub)
    assert httpx.get(f"{stored}/config.json", headers={"range": "bytes=0-1"}).content == b'{"'
    part = httpx.get(f"{stored}/weights.dat", headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == DATA[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(DATA)}"
    tail = httpx.get(f"{stored}/weights.dat", headers={"range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == DATA[-5:]
    beyond = httpx.get(f"{stored}/weights.dat", headers={"range": f"bytes={len(DATA)}-"})
    assert beyond.status_code == 416
    # a Range request of a counted file, and any other file, count no download
    assert _downloads(live_hub) == before
    assert httpx.get(f"{stored}/config.json").json() == {"a": 1}
    assert _downloads(live_hub) == before + 1
    missing = httpx.get(f"{stored}/missing.dat")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert httpx.get(f"{live_hub.url}/alice/nothing-here/resolve/main/x").status_code in (401, 404)


def test_a_large_download_holds_a_bounded_part_of_the_file(live_hub, stored):
    """A file is streamed from disk in pieces: the process's peak memory during an 8 MiB download (server and
    client, which discards what it receives) stays far below the file's size."""
    data = os.urandom(8 * 1024 * 1024)
    api = live_hub.api("alice")
    api.upload_file(path_or_fileobj=data, path_in_repo="big.dat", repo_id="alice/dl")
    received, digest = 0, hashlib.sha256()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with httpx.stream("GET", f"{stored}/big.dat") as answer:
            for chunk in answer.iter_raw():
                received += len(chunk)
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert received == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert peak < 4 * 1024 * 1024, peak

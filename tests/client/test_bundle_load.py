"""Loading by identifier through the hub's bundle API (one request for resolution + files), against the live hub:
request counts, outputs, big files by the per-file path, corrupted and interrupted bundles, hubs without the
API, and the warm cache check (a blob's recorded identity on disk instead of re-hashing; ADAPTERHUB_VERIFY)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import torch
from client_support import adapter_model, blob_path, fresh_model, record_stream_starts, run_killed
from tiny_models import inputs, output_of

from adapterhub.client import (
    HubClient,
    HubHTTPError,
    IdentifierError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    adapter_folder,
    resolve_settings,
)
from adapterhub.client import cache as cache_module
from adapterhub.client import bundle as bundle_module
from adapterhub.client import http as http_module
from adapterhub.client.cache import hub_key
from adapterhub.client.lean import LeanConnection

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/bundled"
BUNDLE = "/api/adapters/bundle"
LEGACY = ROOT.parent / "shared" / "data" / "adapterhub-index"


@pytest.fixture(scope="module")
def pushed(client_hub):
    """(commit, the pushed model's outputs, {path: bytes} of the commit as the hub serves it)."""
    model = adapter_model(11)
    result = model.push_adapter_to_hub(
        REPO,
        "sst",
        task="sentiment",
        subtask="bundle-load",
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    info = httpx.get(f"{client_hub.url}/api/models/{REPO}/revision/{result.commit}?blobs=true").json()
    files = {
        s["rfilename"]: httpx.get(f"{client_hub.url}/{REPO}/resolve/{result.commit}/{s['rfilename']}").content
        for s in info["siblings"]
    }
    return result.commit, output_of(model, inputs()), files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def repo_dir(cache_root: Path, url: str, repo_id: str = REPO) -> Path:
    return cache_root / "hubs" / hub_key(url) / ("models--" + repo_id.replace("/", "--"))


@pytest.fixture
def requests(monkeypatch):
    """Every HTTP request the client sends, as (method, path, query params)."""
    seen: list[tuple[str, str, dict]] = []
    original = httpx.Client.send

    def send(self, request, *args, **kwargs):
        seen.append((request.method, request.url.path, dict(request.url.params)))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    original_lean = LeanConnection.get

    def lean_get(self, path, params, headers):  # the bundle request, where no proxy applies
        seen.append(("GET", path, {k: str(v) for k, v in params.items()}))
        return original_lean(self, path, params, headers)

    monkeypatch.setattr(LeanConnection, "get", lean_get)
    return seen


@pytest.fixture
def own_clients(monkeypatch):
    """Shared HubClients only for this test (what a test teaches a client, e.g. ``_no_bundle``, stays here)."""
    monkeypatch.setattr(http_module, "_SHARED", {})


@pytest.fixture
def hash_calls(monkeypatch):
    """The files hashed by the cache check (``adapterhub.client.cache.sha256_file``)."""
    calls: list[str] = []
    original = cache_module.sha256_file
    monkeypatch.delenv("ADAPTERHUB_VERIFY", raising=False)

    def counting(path):
        calls.append(os.path.basename(path))
        return original(path)

    monkeypatch.setattr(cache_module, "sha256_file", counting)
    return calls


def load(identifier: str = REPO, **kwargs):
    model = fresh_model()
    model.load_adapter(identifier, set_active=True, **kwargs)
    return output_of(model, inputs())


def manifest_of(env: Path, url: str, commit: str) -> dict:
    return json.loads((repo_dir(env, url) / "manifests" / f"{commit}.json").read_text())


# ------------------------------------------------------------------------------------------ one request
def test_cold_load_is_one_request_and_warm_load_none(client_hub, pushed, env, requests):
    commit, expected, files = pushed
    assert torch.allclose(load(), expected)
    assert [(m, p) for m, p, _ in requests] == [("GET", BUNDLE)]
    assert requests[0][2]["identifier"] == REPO
    assert int(requests[0][2]["max_file_size"]) == bundle_module.MAX_FILE
    repo = repo_dir(env, client_hub.url)
    manifest = manifest_of(env, client_hub.url, commit)
    assert {p: (m["sha256"], m["size"]) for p, m in manifest["files"].items()} == {
        p: (sha(d), len(d)) for p, d in files.items()
    }
    for path, data in files.items():  # the snapshot links to blobs holding exactly the hub's bytes
        assert (repo / "snapshots" / commit / path).read_bytes() == data
        assert (repo / "blobs" / sha(data)).read_bytes() == data
    assert not list(repo.glob("blobs/*.part")) and not list(repo.glob("blobs/.*.part"))
    assert not list(repo.glob("blobs/*.incomplete"))
    requests.clear()
    assert torch.allclose(load(), expected)  # within ADAPTERHUB_REF_TTL: no request at all
    assert requests == []


def test_cold_load_takes_the_lean_request_and_the_own_tar_reader_and_the_plain_paths_load_the_same(
    client_hub, pushed, env, own_clients, monkeypatch, tmp_path
):
    """The client's two tricks of a cold load, counted: the bundle request through ``lean`` (http.client) and the
    answer parsed in memory by our own tar reader. Switched off (httpx, and ``tarfile`` on a stream: the plain
    paths, complete on their own), a cold load fills the cache with the same files and loads the same adapter."""
    import tarfile

    from adapterhub.client import lean

    commit, expected, files = pushed
    taken: list[str] = []

    def counting(name, original):
        def call(*args, **kwargs):
            taken.append(name)
            return original(*args, **kwargs)

        return call

    monkeypatch.setattr(LeanConnection, "get", counting("lean", LeanConnection.get))
    monkeypatch.setattr(httpx.Client, "stream", counting("httpx", httpx.Client.stream))
    monkeypatch.setattr(bundle_module, "_tar_members", counting("own tar", bundle_module._tar_members))
    monkeypatch.setattr(tarfile, "open", counting("tarfile", tarfile.open))
    assert torch.allclose(load(), expected)
    assert taken == ["lean", "own tar"]
    taken.clear()
    monkeypatch.setattr(lean, "usable", lambda endpoint: False)
    monkeypatch.setattr(http_module, "_SHARED", {})  # new clients, made without a lean connection
    monkeypatch.setattr(bundle_module, "IN_MEMORY", 0)
    assert torch.allclose(load(cache_dir=tmp_path / "plain"), expected)
    assert taken == ["httpx", "tarfile"]
    for path, data in files.items():
        assert (
            repo_dir(tmp_path / "plain", client_hub.url) / "snapshots" / commit / path
        ).read_bytes() == data


def test_task_identifier_loads_through_the_bundle(client_hub, pushed, env, requests, monkeypatch):
    commit, expected, files = pushed
    assert torch.allclose(load("sentiment/bundle-load@acme"), expected)
    assert [(m, p, q["identifier"]) for m, p, q in requests] == [
        ("GET", BUNDLE, "sentiment/bundle-load@acme")
    ]
    assert (repo_dir(env, client_hub.url) / "manifests" / f"{commit}.json").is_file()
    requests.clear()
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")  # the resolution was remembered
    assert torch.allclose(load("sentiment/bundle-load@acme"), expected)
    assert requests == []


def test_commit_id_and_private_repository(client_hub, pushed, env, requests, monkeypatch):
    commit, expected, files = pushed
    assert torch.allclose(load(f"{REPO}@{commit}"), expected)
    assert [(p, q["identifier"]) for _, p, q in requests] == [(BUNDLE, f"{REPO}@{commit}")]
    model = adapter_model(12)
    model.push_adapter_to_hub(
        "acme/bundled-private", "sst", private=True, endpoint=client_hub.url, token=client_hub.tokens["alice"]
    )
    with pytest.raises(NotFoundError, match="bundled-private"):
        load("acme/bundled-private")
    monkeypatch.setenv("ADAPTERHUB_TOKEN", client_hub.tokens["alice"])
    requests.clear()
    assert torch.allclose(load("acme/bundled-private"), output_of(model, inputs()))
    assert [p for _, p, _ in requests] == [BUNDLE]


def test_streamed_bundle_loads_the_same(client_hub, pushed, env, requests, monkeypatch):
    """Bundles over the hub's IN_MEMORY size are streamed (no Content-Length) by the FastAPI route."""
    commit, expected, files = pushed
    from adapterhub.server import bundle as server_bundle

    monkeypatch.setattr(server_bundle, "IN_MEMORY", 0)
    assert torch.allclose(load(), expected)
    assert [p for _, p, _ in requests] == [BUNDLE]
    manifest = manifest_of(env, client_hub.url, commit)
    assert {p: m["sha256"] for p, m in manifest["files"].items()} == {p: sha(d) for p, d in files.items()}


def test_bundle_of_a_complete_snapshot_rewrites_nothing(client_hub, pushed, env, requests):
    """Loaded by commit id first, then by name (never resolved, so asked by bundle): the cached snapshot is used as
    it is, its blobs are not written again."""
    commit, expected, files = pushed
    load(f"{REPO}@{commit}")
    blobs = repo_dir(env, client_hub.url) / "blobs"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in blobs.iterdir()}
    requests.clear()
    assert torch.allclose(load(), expected)
    assert [p for _, p, _ in requests] == [BUNDLE]
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in blobs.iterdir()} == before


def test_cached_commits_are_named_and_not_sent_again(client_hub, pushed, env, requests, monkeypatch):
    """The bundle request names the commits complete in the cache (``have``): loaded by commit id first, then by
    name, the hub answers with the manifest alone; after the TTL, the remembered resolution is confirmed the same
    way: one small answer, no file transferred, nothing rewritten."""
    commit, expected, files = pushed
    load(f"{REPO}@{commit}")
    blobs = repo_dir(env, client_hub.url) / "blobs"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in blobs.iterdir()}
    transferred = []
    original = bundle_module.read_bundle

    def reading(client, cache, endpoint, response, **kwargs):
        transferred.append(int(response.headers.get("content-length")))
        return original(client, cache, endpoint, response, **kwargs)

    monkeypatch.setattr(bundle_module, "read_bundle", reading)
    requests.clear()
    assert torch.allclose(
        load(), expected
    )  # never resolved under this name: the repository's commits are named
    assert [(p, q.get("have")) for _, p, q in requests] == [(BUNDLE, commit)]
    monkeypatch.setenv("ADAPTERHUB_REF_TTL", "0")  # the resolution is too old: asked again, with the commit
    requests.clear()
    assert torch.allclose(load(), expected)
    assert [(p, q.get("have")) for _, p, q in requests] == [(BUNDLE, commit)]
    full = len(httpx.get(f"{client_hub.url}{BUNDLE}", params={"identifier": REPO}).content)
    assert len(transferred) == 2 and all(
        t <= full - sum(512 + len(d) for d in files.values()) for t in transferred
    )
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in blobs.iterdir()} == before


def test_a_new_commit_arrives_whole_and_a_broken_snapshot_is_repaired(client_hub, env, requests, monkeypatch):
    token = client_hub.tokens["alice"]
    first = adapter_model(61).push_adapter_to_hub("alice/have-moves", "sst", token=token)
    assert fresh_model().load_adapter("alice/have-moves") and True
    second_model = adapter_model(62)
    second = second_model.push_adapter_to_hub("alice/have-moves", "sst", token=token)
    assert second.commit != first.commit
    monkeypatch.setenv("ADAPTERHUB_REF_TTL", "0")
    requests.clear()
    model = fresh_model()
    model.load_adapter("alice/have-moves", set_active=True)  # the hub moved on: the new commit comes whole
    assert torch.allclose(output_of(model, inputs()), output_of(second_model, inputs()))
    assert [(p, q.get("have")) for _, p, q in requests] == [(BUNDLE, first.commit)]
    repo = repo_dir(env, client_hub.url, "alice/have-moves")
    assert (repo / "manifests" / f"{second.commit}.json").is_file()
    weights = repo / "snapshots" / second.commit / "adapter.safetensors"
    good = weights.read_bytes()
    blob = weights.resolve()
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # damaged in the cache
    requests.clear()
    model = fresh_model()
    model.load_adapter("alice/have-moves", set_active=True)  # named as held, found broken: fetched again
    assert torch.allclose(output_of(model, inputs()), output_of(second_model, inputs()))
    assert requests[0][1] == BUNDLE and set(requests[0][2]["have"].split(",")) == {
        first.commit,
        second.commit,
    }
    assert blob.read_bytes() == good


def test_empty_duplicate_and_nested_files(client_hub, env, tmp_path, requests):
    """A commit with an empty file, two paths with the same bytes, a non-ASCII name and files in subfolders loads
    by bundle."""
    from adapterhub.client import push_folder

    model = adapter_model(13)
    folder = tmp_path / "edge"
    model.save_adapter(str(folder), "sst")
    (folder / "notes").mkdir()
    (folder / "notes" / "empty.txt").write_bytes(b"")
    (folder / "notes" / "r\u00e9sum\u00e9 \u6587.txt").write_text("non-ASCII name", encoding="utf-8")
    (folder / "notes" / "deep").mkdir()
    (folder / "notes" / "deep" / "config-copy.json").write_bytes(
        (folder / "adapter_config.json").read_bytes()
    )
    pushed_files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    result = push_folder(
        folder, "acme/bundled-edge", endpoint=client_hub.url, token=client_hub.tokens["alice"]
    )
    requests.clear()
    model_out = output_of(model, inputs())
    assert torch.allclose(load("acme/bundled-edge"), model_out)
    assert [p for _, p, _ in requests] == [BUNDLE]
    snap = repo_dir(env, client_hub.url, "acme/bundled-edge") / "snapshots" / result.commit
    got = {p.relative_to(snap).as_posix(): p.read_bytes() for p in snap.rglob("*") if p.is_file()}
    assert got == pushed_files
    assert (snap / "notes" / "deep" / "config-copy.json").resolve() == (
        snap / "adapter_config.json"
    ).resolve()
    assert torch.allclose(load(f"acme/bundled-edge@{result.commit}", offline=True), model_out)


def test_bundle_broken_off_by_the_hub_leaves_nothing_usable(client_hub, pushed, env, monkeypatch):
    """A server blob shorter than its record: the streamed bundle stops in the middle of that file."""
    commit, expected, files = pushed
    from adapterhub.server import bundle as server_bundle

    monkeypatch.setattr(server_bundle, "IN_MEMORY", 0)
    on_disk = blob_path(client_hub, sha(files["adapter.safetensors"]))
    original = on_disk.read_bytes()
    os.chmod(on_disk, 0o644)
    on_disk.write_bytes(original[: len(original) // 2])
    try:
        with pytest.raises(HubHTTPError, match="broke off"):
            load()
    finally:
        on_disk.write_bytes(original)
    repo = repo_dir(env, client_hub.url)
    assert not (repo / "blobs" / sha(original)).exists()
    assert not list(repo.glob("blobs/.*.part")) and not list(repo.glob("manifests/*.json"))
    assert torch.allclose(load(), expected)


# ------------------------------------------------------------------------------------------ big files
def test_big_files_arrive_by_the_per_file_path(client_hub, pushed, env, requests, monkeypatch):
    commit, expected, files = pushed
    limit = 1000
    big = sorted(p for p, d in files.items() if len(d) > limit)
    assert big and len(big) < len(files)
    monkeypatch.setattr(bundle_module, "MAX_FILE", limit)
    assert torch.allclose(load(), expected)
    assert requests[0][1] == BUNDLE and requests[0][2]["max_file_size"] == str(limit)
    assert sorted(p for _, p, _ in requests[1:]) == sorted(f"/{REPO}/resolve/{commit}/{p}" for p in big)
    manifest = manifest_of(env, client_hub.url, commit)
    assert {p: m["sha256"] for p, m in manifest["files"].items()} == {p: sha(d) for p, d in files.items()}


# ------------------------------------------------------------------------------------------ integrity
def test_bundle_with_an_altered_server_blob_is_refused(client_hub, pushed, env, requests):
    commit, expected, files = pushed
    victim = "adapter.safetensors"
    digest = sha(files[victim])
    on_disk = blob_path(client_hub, digest)
    original = on_disk.read_bytes()
    damaged = bytearray(original)
    damaged[-5] ^= 0x01  # same size, one bit
    os.chmod(on_disk, 0o644)
    on_disk.write_bytes(bytes(damaged))
    try:
        with pytest.raises(IntegrityError, match=victim) as info:
            load()
        assert digest in str(info.value) and "bundle" in str(info.value)
        assert [p for _, p, _ in requests] == [BUNDLE]  # refused while reading the bundle
        repo = repo_dir(env, client_hub.url)
        assert not (repo / "blobs" / digest).exists()
        assert not list(repo.glob("blobs/.*.part")) and not list(repo.glob("blobs/*.part"))
        assert not list(repo.glob("manifests/*.json"))
        with pytest.raises(OfflineError):  # nothing usable, and the resolution was not remembered
            load(offline=True)
    finally:
        on_disk.write_bytes(original)
    requests.clear()
    assert torch.allclose(load(), expected)
    assert [p for _, p, _ in requests] == [BUNDLE]


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, "tests")
    from adapterhub.client import bundle
    original = bundle._write_blob
    def write_blob(rc, exp, chunks, where):
        if exp.path != "adapter.safetensors":
            return original(rc, exp, chunks, where)
        def dying():
            data = b"".join(bytes(c) for c in chunks)
            yield data[: len(data) // 2]
            os.kill(os.getpid(), signal.SIGKILL)  # killed half-way through the weights in the bundle
        return original(rc, exp, dying(), where)
    bundle._write_blob = write_blob
    from tiny_models import make_model
    import adapterhub
    adapterhub.init(make_model("bert", "seqcls", seed=0)).load_adapter(sys.argv[1])
    print("not killed")
""")


def test_killed_while_reading_a_bundle_leaves_nothing_usable(client_hub, pushed, env, requests):
    commit, expected, files = pushed
    run_killed(KILLER, REPO)
    repo = repo_dir(env, client_hub.url)
    parts = list((repo / "blobs").glob(f".{sha(files['adapter.safetensors'])}.*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size < len(files["adapter.safetensors"])  # killed mid-file
    assert not (repo / "blobs" / sha(files["adapter.safetensors"])).exists()
    assert not list(repo.glob("manifests/*.json"))
    with pytest.raises(OfflineError, match="not in the cache"):
        load(f"{REPO}@{commit}", offline=True)
    with pytest.raises(OfflineError):
        load(offline=True)
    assert torch.allclose(load(), expected)  # the next online load completes, by the bundle again
    assert [p for _, p, _ in requests] == [BUNDLE]
    manifest = manifest_of(env, client_hub.url, commit)
    assert {p: m["sha256"] for p, m in manifest["files"].items()} == {p: sha(d) for p, d in files.items()}
    assert torch.allclose(load(f"{REPO}@{commit}", offline=True), expected)


def test_interrupted_per_file_download_is_resumed_without_the_bundle(
    client_hub, pushed, env, requests, monkeypatch
):
    commit, expected, files = pushed
    data = files["adapter.safetensors"]
    blobs = repo_dir(env, client_hub.url) / "blobs"
    blobs.mkdir(parents=True)
    kept = len(data) // 2
    (blobs / f"{sha(data)}.incomplete").write_bytes(data[:kept])  # what a killed per-file download leaves
    starts = record_stream_starts(monkeypatch)
    assert torch.allclose(load(), expected)
    assert BUNDLE not in [p for _, p, _ in requests]
    assert ("adapter.safetensors", kept) in starts
    assert not list(blobs.glob("*.incomplete"))
    assert (blobs / sha(data)).read_bytes() == data


def test_partial_file_completed_by_another_route_is_not_left_behind(client_hub, pushed, env, requests):
    commit, expected, files = pushed
    data = files["adapter.safetensors"]
    blobs = repo_dir(env, client_hub.url) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{sha(data)}.incomplete").write_bytes(data[: len(data) // 2])  # a killed per-file download
    assert torch.allclose(load("sentiment/bundle-load@acme"), expected)  # task id: through the bundle
    assert [p for _, p, _ in requests] == [BUNDLE]
    assert (blobs / sha(data)).read_bytes() == data
    requests.clear()
    assert torch.allclose(load(REPO), expected)  # never resolved under this name: one request, the bundle
    assert [p for _, p, _ in requests] == [BUNDLE]
    assert not list(blobs.glob("*.incomplete"))


# ------------------------------------------------------------------------------------------ other hubs
@pytest.mark.parametrize("status", [404, 405])
def test_hub_without_the_bundle_api_uses_the_old_path(
    client_hub, pushed, env, requests, own_clients, monkeypatch, status
):
    commit, expected, files = pushed
    monkeypatch.setattr(
        http_module.lean, "usable", lambda endpoint: False
    )  # every request through httpx here
    original = httpx.Client.send  # already the counting one

    def no_bundle(self, request, *args, **kwargs):
        if request.url.path == BUNDLE:
            original(self, request, *args, **kwargs).close()  # counted; the answer replaced by a plain hub's
            return httpx.Response(status, json={"detail": "Not Found"}, request=request)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", no_bundle)
    assert torch.allclose(load(), expected)
    paths = [p for _, p, _ in requests]
    assert paths[0] == BUNDLE and "/api/adapters/resolve" in paths
    assert paths.count(BUNDLE) == 1
    assert HubClient.shared(resolve_settings())._no_bundle is True
    requests.clear()
    assert torch.allclose(
        load("sentiment/bundle-load@acme"), expected
    )  # never resolved here: not asked again
    assert BUNDLE not in [p for _, p, _ in requests] and "/api/adapters/resolve" in [
        p for _, p, _ in requests
    ]


def test_the_file_list_asked_beside_the_resolution_hides_only_hub_errors(
    client_hub, pushed, env, own_clients, monkeypatch
):
    """Without the bundle API, ``org/name`` is resolved and its file list asked for at the same time; a hub error on
    the list means "list it later" (the load still works), any other error is raised."""
    commit, expected, files = pushed
    monkeypatch.setattr(http_module.HubClient, "bundle", no_bundle_api)
    original = http_module.HubClient.tree_with_commit
    raised = []

    def failing(error):
        def tree_with_commit(self, repo_id, revision):  # the first list (beside the resolution) fails
            if not raised or raised[-1] is not error:
                raised.append(error)
                raise error
            return original(self, repo_id, revision)

        return tree_with_commit

    monkeypatch.setattr(http_module.HubClient, "tree_with_commit", failing(HubHTTPError("the hub is busy")))
    assert torch.allclose(load(cache_dir=env / "a"), expected)
    monkeypatch.setattr(
        http_module.HubClient, "tree_with_commit", failing(RuntimeError("a bug in the listing"))
    )
    with pytest.raises(RuntimeError, match="a bug in the listing"):
        load(cache_dir=env / "b")
    assert [type(e) for e in raised] == [HubHTTPError, RuntimeError]
    monkeypatch.setattr(http_module.HubClient, "tree_with_commit", original)
    assert torch.allclose(load(cache_dir=env / "c"), expected)


@contextlib.contextmanager
def no_bundle_api(self, *args, **kwargs):
    yield None  # the answer of a hub without the bundle API


def test_error_answers_fall_back_to_the_resolve_api(client_hub, pushed, env, requests, own_clients):
    with pytest.raises(NotFoundError) as info:
        load("acme/no-such-adapter")
    assert "acme/no-such-adapter" in str(info.value)
    paths = [p for _, p, _ in requests]
    assert paths[0] == BUNDLE and "/api/adapters/resolve" in paths
    assert HubClient.shared(resolve_settings())._no_bundle is False  # a 404 with candidates is an answer


@pytest.mark.skipif(not LEGACY.is_dir(), reason="../shared/data/adapterhub-index is missing")
def test_legacy_card_gives_the_legacy_message(client_hub, env, requests, own_clients):
    with pytest.raises(NotFoundError, match="legacy AdapterHub card"):
        adapter_folder("@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer", model_name="bert-base-uncased")
    paths = [p for _, p, _ in requests]
    assert paths[0] == BUNDLE and "/api/adapters/resolve" in paths
    assert HubClient.shared(resolve_settings())._no_bundle is False


# ------------------------------------------------------------------------------------------ warm checks
def test_manifest_records_each_blobs_identity(client_hub, pushed, env):
    commit, expected, files = pushed
    before = time.time_ns()
    load()
    repo = repo_dir(env, client_hub.url)
    for path, meta in manifest_of(env, client_hub.url, commit)["files"].items():
        st = os.stat(repo / "blobs" / meta["sha256"])
        assert meta["stat"] == [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns], path
        assert before <= meta["checked_ns"] <= time.time_ns()


def test_unchanged_blobs_are_not_read_again_once_not_racy(client_hub, pushed, env, hash_calls):
    commit, expected, files = pushed
    load()
    time.sleep(cache_module.RACY_NS / 1e9 + 0.05)
    assert torch.allclose(load(), expected)  # may re-hash blobs written within RACY_NS of their check
    first_check = dict(manifest_of(env, client_hub.url, commit)["files"])
    hash_calls.clear()
    for _ in range(3):
        assert torch.allclose(load(), expected)
    assert hash_calls == []
    assert manifest_of(env, client_hub.url, commit)["files"] == first_check  # nothing to rewrite


def test_racy_blobs_are_hashed_and_the_manifest_refreshed(client_hub, pushed, env, hash_calls, monkeypatch):
    commit, expected, files = pushed
    load()
    monkeypatch.setattr(cache_module, "RACY_NS", 10**18)  # every timestamp counts as too recent
    checked = {p: m["checked_ns"] for p, m in manifest_of(env, client_hub.url, commit)["files"].items()}
    hash_calls.clear()
    assert torch.allclose(load(), expected)
    assert sorted(hash_calls) == sorted(sha(d) for d in files.values())
    after = manifest_of(env, client_hub.url, commit)["files"]
    assert all(after[p]["checked_ns"] > checked[p] for p in files)  # rewritten with fresh identities
    monkeypatch.setattr(cache_module, "RACY_NS", 0)
    hash_calls.clear()
    assert torch.allclose(load(), expected)
    assert hash_calls == []


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_blob_altered_on_disk_is_detected_and_repaired(client_hub, pushed, env, monkeypatch, keep_mtime):
    """The change of a blob after its check is seen from its identity (mtime, and ctime, which a program that
    puts the old mtime back cannot restore), not by hashing every file."""
    commit, expected, files = pushed
    load()
    time.sleep(cache_module.RACY_NS / 1e9 + 0.05)
    load()  # re-checked and recorded after the racy window: trusted from now on
    victim = "adapter.safetensors"
    blob = repo_dir(env, client_hub.url) / "blobs" / sha(files[victim])
    st = os.stat(blob)
    time.sleep(0.02)
    damaged = bytearray(blob.read_bytes())
    damaged[-5] ^= 0x01
    blob.write_bytes(bytes(damaged))
    if keep_mtime:
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(blob).st_mtime_ns == st.st_mtime_ns
    with pytest.raises(IntegrityError, match=f"damaged.*{victim}"):
        load(f"{REPO}@{commit}", offline=True)
    assert torch.allclose(load(), expected)  # online: fetched again
    assert blob.read_bytes() == files[victim]
    assert torch.allclose(load(f"{REPO}@{commit}", offline=True), expected)


def test_change_while_the_snapshot_is_being_checked_is_never_trusted(client_hub, pushed, env, monkeypatch):
    """verify_snapshot hashes the blobs one after the other, then rewrites the manifest. A blob changed after it
    was hashed (here: at once, then the other files take 0.15 s) must not be recorded as verified."""
    commit, expected, files = pushed
    load()
    victim = sha(files["adapter.safetensors"])
    blob = repo_dir(env, client_hub.url) / "blobs" / victim
    original, racy_s = cache_module.sha256_file, cache_module.RACY_NS / 1e9

    def hash_then_change(path):
        digest = original(path)
        if os.path.basename(path) == victim and blob.read_bytes() == files["adapter.safetensors"]:
            damaged = bytearray(blob.read_bytes())
            damaged[-5] ^= 0x01
            blob.write_bytes(bytes(damaged))  # changed by someone else right after it was hashed
            time.sleep(racy_s + 0.05)  # ... and the check of the other files takes a while
        return digest

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "RACY_NS", 10**18)  # hash every file on this load
        patch.setattr(cache_module, "sha256_file", hash_then_change)
        with pytest.raises(
            IntegrityError, match="adapter.safetensors: changed on disk while it was being checked"
        ):
            load(f"{REPO}@{commit}", offline=True)
    assert blob.read_bytes() != files["adapter.safetensors"]
    with pytest.raises(IntegrityError, match="adapter.safetensors"):  # and not recorded as verified either
        load(f"{REPO}@{commit}", offline=True)
    assert torch.allclose(load(), expected)  # online: repaired
    assert blob.read_bytes() == files["adapter.safetensors"]


def test_verify_full_hashes_every_file_on_every_use(client_hub, pushed, env, hash_calls, monkeypatch):
    commit, expected, files = pushed
    load()
    monkeypatch.setattr(cache_module, "RACY_NS", 0)  # the stat check alone would hash nothing now
    hash_calls.clear()
    load()
    assert hash_calls == []
    monkeypatch.setenv("ADAPTERHUB_VERIFY", "full")
    assert resolve_settings().verify_full is True
    for round_ in range(2):
        hash_calls.clear()
        assert torch.allclose(load(), expected)
        assert sorted(hash_calls) == sorted(sha(d) for d in files.values()), round_
    # a change the identity cannot show (here: the manifest made to record the changed file's identity, as if
    # checked after the change) is caught only by hashing
    victim = "adapter.safetensors"
    repo = repo_dir(env, client_hub.url)
    blob = repo / "blobs" / sha(files[victim])
    damaged = bytearray(blob.read_bytes())
    damaged[-5] ^= 0x01
    blob.write_bytes(bytes(damaged))
    forge_identity(repo, commit, victim)
    with pytest.raises(IntegrityError, match=victim):
        load(f"{REPO}@{commit}", offline=True)
    monkeypatch.setenv("ADAPTERHUB_VERIFY", "stat")
    assert resolve_settings().verify_full is False
    load(f"{REPO}@{commit}", offline=True)  # by design the stat check trusts a recorded identity


def forge_identity(repo: Path, commit: str, path: str) -> None:
    """Record the blob's current identity in the manifest, as if checked just now: a change the stat check cannot see."""
    manifest_file = repo / "manifests" / f"{commit}.json"
    manifest = json.loads(manifest_file.read_text())
    st = os.stat(repo / "blobs" / manifest["files"][path]["sha256"])
    manifest["files"][path].update(
        stat=[st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns], checked_ns=time.time_ns() + 1
    )
    manifest_file.write_text(json.dumps(manifest))


def test_verify_full_also_applies_when_a_bundle_finds_the_snapshot_complete(
    client_hub, pushed, env, monkeypatch
):
    commit, expected, files = pushed
    load(f"{REPO}@{commit}")
    repo = repo_dir(env, client_hub.url)
    blob = repo / "blobs" / sha(files["adapter.safetensors"])
    damaged = bytearray(blob.read_bytes())
    damaged[-5] ^= 0x01
    blob.write_bytes(bytes(damaged))
    time.sleep(cache_module.RACY_NS / 1e9 + 0.05)
    forge_identity(repo, commit, "adapter.safetensors")
    monkeypatch.setenv("ADAPTERHUB_VERIFY", "full")
    out = load(REPO)  # never resolved under this name: the bundle, which finds the commit complete
    assert blob.read_bytes() == files["adapter.safetensors"]
    assert torch.allclose(out, expected)


@pytest.mark.parametrize("value, full", [("", False), ("stat", False), (" Full ", True), ("FULL", True)])
def test_verify_setting_values(monkeypatch, value, full):
    monkeypatch.setenv("ADAPTERHUB_VERIFY", value)
    assert resolve_settings().verify_full is full


@pytest.mark.parametrize("value", ["bogus", "sha256", "0"])
def test_bad_verify_setting_is_a_clear_error(client_hub, env, monkeypatch, value):
    monkeypatch.setenv("ADAPTERHUB_VERIFY", value)
    with pytest.raises(IdentifierError, match=f"ADAPTERHUB_VERIFY='{value}'.*'full'.*'stat'"):
        resolve_settings()
    with pytest.raises(IdentifierError, match="ADAPTERHUB_VERIFY"):
        fresh_model().load_adapter(REPO)


def test_repeated_load_in_a_process_follows_changes_to_the_cache(
    client_hub, pushed, env, requests, monkeypatch
):
    """A load repeated in the same process is answered from what the last one found (no request, no pinning), but
    only while the remembered resolution is the same file, younger than ADAPTERHUB_REF_TTL, and the snapshot
    checks out: each of these changing makes the next load take the usual way."""
    import importlib

    resolve_module = importlib.import_module("adapterhub.client.resolve")
    commit, expected, files = pushed
    assert torch.allclose(load(), expected)
    requests.clear()
    calls = []
    original_pin = resolve_module.pin
    monkeypatch.setattr(resolve_module, "pin", lambda *a, **k: calls.append(1) or original_pin(*a, **k))
    assert torch.allclose(load(), expected) and calls == [] and requests == []  # remembered in this process
    cache_module.Cache(env).remove(REPO)  # `adapterhub cache rm`: the resolution and the snapshot go
    assert torch.allclose(load(), expected)
    assert calls == [1] and [p for _, p, _ in requests] == [BUNDLE]  # fetched again
    calls.clear()
    monkeypatch.setenv("ADAPTERHUB_REF_TTL", "0")  # another setting: not the remembered load
    assert torch.allclose(load(), expected) and calls == [1]
    calls.clear()
    assert torch.allclose(load(), expected) and calls == [1]  # a TTL of 0 asks every time


def test_temporary_files_left_by_a_killed_process_with_the_same_pid(client_hub, pushed, env, monkeypatch):
    """Temporary names are the process's own (pid + counter); a container that restarts repeats both, so a name
    may be taken by a file a killed process left: it is overwritten (longer junk included), never an error."""
    from adapterhub.common import files as common_files

    commit, expected, files = pushed
    original = common_files.temp_path
    stale: list[str] = []

    def taken(final, suffix):
        name = original(final, suffix)
        if os.path.isdir(os.path.dirname(name)):
            with open(name, "wb") as f:  # what a killed process left under the very same name
                f.write(b"junk" * 200_000)
            stale.append(name)
        return name

    monkeypatch.setattr(common_files, "temp_path", taken)  # the one atomic writer: blobs, manifests, refs
    assert torch.allclose(load(), expected)
    assert sum(s.endswith(".part") for s in stale) == len(files)  # every blob written over a stale file
    repo = repo_dir(env, client_hub.url)
    for path, data in files.items():
        assert (repo / "snapshots" / commit / path).read_bytes() == data
    assert manifest_of(env, client_hub.url, commit)["commit"] == commit
    assert not [s for s in stale if os.path.exists(s)]


def test_atomic_writes_and_links_take_over_stale_temporary_names(tmp_path, monkeypatch):
    from adapterhub.client import files as files_module
    from adapterhub.common import files as common_files

    names = iter([str(tmp_path / ".stale.tmp"), str(tmp_path / ".stale.lnk")])
    monkeypatch.setattr(common_files, "temp_path", lambda final, suffix: next(names))
    (tmp_path / ".stale.tmp").write_bytes(b"junk" * 1000)  # longer than what is written now
    (tmp_path / ".stale.lnk").symlink_to("elsewhere")
    files_module.atomic_write_bytes(tmp_path / "data.json", b"{}")
    assert (tmp_path / "data.json").read_bytes() == b"{}"
    (tmp_path / "link").symlink_to("old-target")
    files_module.atomic_symlink("data.json", tmp_path / "link")  # an existing link to elsewhere: replaced
    assert os.readlink(tmp_path / "link") == "data.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "link"]

"""Download safety against the live hub: corrupted blobs are refused, killed downloads leave nothing usable
and are completed by the next call, concurrent processes share the cache, offline mode uses only the cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import torch
from client_support import adapter_model, blob_path, fresh_model, record_stream_starts, run_killed
from tiny_models import inputs, output_of

from adapterhub.client import Cache, IntegrityError, OfflineError, resolve
from adapterhub.client.cache import hub_key
from adapterhub.client.lean import LeanConnection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pushed(client_hub):
    model = adapter_model(7)
    result = model.push_adapter_to_hub(
        "acme/transfer",
        "sst",
        task="sentiment",
        subtask="transfer-test",
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    info = httpx.get(f"{client_hub.url}/api/models/acme/transfer/revision/{result.commit}?blobs=true").json()
    shas = {s["rfilename"]: s["lfs"]["sha256"] for s in info["siblings"] if s.get("lfs")}
    return result.commit, output_of(model, inputs()), shas


def _repo_dir(cache_root: Path, url: str) -> Path:
    return cache_root / "hubs" / hub_key(url) / "models--acme--transfer"


@pytest.mark.parametrize("victim", ["adapter.safetensors", "adapter_config.json"])
def test_corrupted_blob_on_the_server_is_refused(client_hub, pushed, env, victim):
    """adapter.safetensors is listed with its sha256; adapter_config.json with its git blob id (and the hub
    sends its sha256 as the ETag): a changed byte is caught either way."""
    commit, expected, shas = pushed
    head = httpx.head(f"{client_hub.url}/acme/transfer/resolve/{commit}/{victim}")
    sha = head.headers["x-linked-etag"].strip('"')
    assert sha == shas.get(victim, sha)
    on_disk = blob_path(client_hub, sha)
    original = on_disk.read_bytes()
    damaged = bytearray(original)
    damaged[-5] ^= 0x01  # same size, one changed bit near the end
    os.chmod(on_disk, 0o644)
    on_disk.write_bytes(bytes(damaged))
    try:
        with pytest.raises(IntegrityError, match=victim) as info:
            fresh_model().load_adapter("acme/transfer")
        assert sha in str(info.value) or "git blob id" in str(info.value)
        repo = _repo_dir(env, client_hub.url)
        assert not (repo / "blobs" / sha).exists()
        assert not list(repo.glob("blobs/*.incomplete"))
        assert not list(repo.glob("manifests/*.json"))  # the snapshot is not complete, so never used
    finally:
        on_disk.write_bytes(original)
    model = fresh_model()
    model.load_adapter("acme/transfer", set_active=True)
    assert torch.allclose(output_of(model, inputs()), expected)


def test_altered_cache_file_is_detected_and_repaired(client_hub, pushed, env):
    commit, expected, shas = pushed
    fresh_model().load_adapter("acme/transfer")
    blob = _repo_dir(env, client_hub.url) / "blobs" / shas["adapter.safetensors"]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="damaged"):
        fresh_model().load_adapter(f"acme/transfer@{commit}", offline=True)
    model = fresh_model()
    model.load_adapter("acme/transfer", set_active=True)  # online: downloaded again
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == shas["adapter.safetensors"]
    assert torch.allclose(output_of(model, inputs()), expected)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from adapterhub.client import download, resolve_settings, Cache, HubClient
    download.CHUNK_SIZE = 256
    settings = resolve_settings()
    seen = []
    def on_bytes(path, n):
        seen.append(n)
        if path == "adapter.safetensors" and len(seen) > 2:
            os.kill(os.getpid(), signal.SIGKILL)  # killed half-way through the weights
    with HubClient(settings) as client:
        download.snapshot(client, Cache(settings.cache_dir), settings.endpoint, "acme/transfer", sys.argv[1],
                          on_bytes=on_bytes)
    print("not killed")
""")


def test_killed_download_leaves_nothing_usable_and_is_completed(client_hub, pushed, env, monkeypatch):
    commit, expected, shas = pushed
    run_killed(KILLER, commit)
    repo = _repo_dir(env, client_hub.url)
    partial = list(repo.glob("blobs/*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size
    full_size = len(blob_path(client_hub, shas["adapter.safetensors"]).read_bytes())
    assert partial[0].stat().st_size < full_size
    assert not (repo / "blobs" / shas["adapter.safetensors"]).exists()
    assert not list(repo.glob("manifests/*.json"))
    with pytest.raises(
        OfflineError, match="not in the cache"
    ):  # the partial download is never taken as complete
        fresh_model().load_adapter(f"acme/transfer@{commit}", offline=True)
    starts = record_stream_starts(monkeypatch)
    kept = partial[0].stat().st_size
    model = fresh_model()
    model.load_adapter(f"acme/transfer@{commit}", set_active=True)
    assert ("adapter.safetensors", kept) in starts  # resumed from where the killed process stopped
    assert not list(repo.glob("blobs/*.incomplete"))
    assert (
        hashlib.sha256((repo / "blobs" / shas["adapter.safetensors"]).read_bytes()).hexdigest()
        == shas["adapter.safetensors"]
    )
    assert torch.allclose(output_of(model, inputs()), expected)


LOADER = textwrap.dedent("""
    import sys, time, json, os
    sys.path.insert(0, "tests")
    import torch
    from tiny_models import make_model, inputs, output_of
    import adapterhub
    torch.set_num_threads(1)
    model = adapterhub.init(make_model("bert", "seqcls", seed=0))
    while not os.path.exists(sys.argv[1]):  # start together
        time.sleep(0.005)
    name = model.load_adapter("acme/transfer", set_active=True)
    print(json.dumps(output_of(model, inputs()).flatten().tolist()))
""")


def test_two_processes_loading_the_same_adapter_both_succeed(client_hub, pushed, env, tmp_path):
    commit, expected, shas = pushed
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER, str(go)],
            env=dict(os.environ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.write_text("go")
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        got = torch.tensor(json.loads(out.strip().splitlines()[-1])).reshape(expected.shape)
        assert torch.allclose(got, expected)
    cache = Cache(env)
    assert [(e["repo_id"], e["commit"]) for e in cache.entries()] == [("acme/transfer", commit)]
    assert not list(_repo_dir(env, client_hub.url).glob("blobs/*.incomplete"))


def test_offline_mode_uses_only_the_cache(client_hub, pushed, env, monkeypatch):
    commit, expected, shas = pushed
    fresh_model().load_adapter("acme/transfer")
    fresh_model().load_adapter("sentiment/transfer-test@acme")

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode used the network")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(LeanConnection, "get", no_network)
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    for identifier in ("acme/transfer", f"acme/transfer@{commit}", "sentiment/transfer-test@acme"):
        model = fresh_model()
        model.load_adapter(identifier, set_active=True)
        assert torch.allclose(output_of(model, inputs()), expected), identifier
    assert resolve("acme/transfer").commit == commit
    with pytest.raises(OfflineError, match="never looked up") as info:
        fresh_model().load_adapter("acme/transfer@v9")
    assert commit[:12] in str(info.value)
    with pytest.raises(OfflineError, match="acme/never-downloaded"):
        fresh_model().load_adapter("acme/never-downloaded")


def _load_in_child(cache_dir: str, queue) -> None:
    model = fresh_model()
    model.load_adapter("acme/transfer", cache_dir=cache_dir, set_active=True)
    queue.put(output_of(model, inputs()).tolist())


def test_forked_child_downloads_after_the_parent_did(client_hub, pushed, env, tmp_path):
    """The shared HTTP client and download threads are per process: a fork (e.g. data-loader workers) gets its own."""
    import multiprocessing

    commit, expected, shas = pushed
    fresh_model().load_adapter("acme/transfer")  # the parent now holds a client and download threads
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_load_in_child, args=(str(tmp_path / "child-cache"), queue))
    child.start()
    try:
        child.join(120)
        assert child.exitcode == 0  # None: it hung
    finally:
        if child.is_alive():
            child.kill()
    assert torch.allclose(torch.tensor(queue.get(timeout=5)), expected)

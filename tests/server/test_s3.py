"""The S3 blob store (against moto's standalone S3 server): the store itself (round trip, multipart uploads,
refusals that store nothing, presigned URLs), and hubs on it: uploads validated from the bucket, downloads
through the hub and by presigned redirect (huggingface_hub and our client), and two replicas with their own
data folders on one database and one bucket."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

hf = pytest.importorskip("huggingface_hub")
pytest.importorskip("boto3")
from huggingface_hub import errors as hf_errors  # noqa: E402
from s3_support import new_bucket, objects  # noqa: E402
from test_uploads import _adapter_files, needs_fixtures  # noqa: E402

from adapterhub.server.storage import S3BlobStore, parse_blob_store  # noqa: E402

MiB = 1024 * 1024


def _tmp_blob(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    p = tmp_path / f"staged-{hashlib.sha256(data).hexdigest()[:8]}"
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


# --- the store ---------------------------------------------------------------------------------------------


def test_store_round_trip(s3_endpoint, tmp_path):
    bucket = new_bucket(s3_endpoint)
    store = S3BlobStore(bucket, "hub/blobs/", endpoint_url=s3_endpoint)
    data = os.urandom(3000)
    tmp, sha = _tmp_blob(tmp_path, data)
    assert not store.exists(sha)
    assert store.put_file(tmp, sha, len(data)) is True
    assert not tmp.exists()  # the staged file is consumed, as by the local store
    assert objects(s3_endpoint, bucket) == {f"hub/blobs/{sha}": 3000}
    assert store.exists(sha) and store.local_path(sha) is None
    with store.open(sha) as f:
        assert f.read() == data
    store.copy_to(sha, tmp_path / "job" / "adapter.safetensors")
    assert (tmp_path / "job" / "adapter.safetensors").read_bytes() == data
    assert [s for s, _ in store.stored()] == [sha]
    again, _ = _tmp_blob(tmp_path, data)
    assert store.put_file(again, sha, len(data)) is False and not again.exists()
    store.delete(sha)
    assert not store.exists(sha) and objects(s3_endpoint, bucket) == {}
    with pytest.raises(FileNotFoundError, match=sha):
        store.open(sha)


def test_store_refuses_a_wrong_size_or_sha256_and_stores_nothing(s3_endpoint, tmp_path):
    bucket = new_bucket(s3_endpoint)
    store = S3BlobStore(bucket, endpoint_url=s3_endpoint)
    tmp, sha = _tmp_blob(tmp_path, b"the right content")
    with pytest.raises(ValueError, match="expected 99"):
        store.put_file(tmp, sha, 99)
    other = hashlib.sha256(b"other content").hexdigest()
    with pytest.raises(ValueError, match=f"blob {other}: temporary file has sha256 {sha}"):
        store.put_file(tmp, other, tmp.stat().st_size)
    with pytest.raises(ValueError, match="not a sha256"):
        store.exists("../../etc/passwd")
    assert objects(s3_endpoint, bucket) == {}


def test_large_blobs_go_up_in_parts(s3_endpoint, tmp_path):
    bucket = new_bucket(s3_endpoint)
    store = S3BlobStore(
        bucket, endpoint_url=s3_endpoint, multipart_threshold=5 * MiB, multipart_chunk=5 * MiB
    )
    data = os.urandom(11 * MiB)
    tmp, sha = _tmp_blob(tmp_path, data)
    assert store.put_file(tmp, sha, len(data))
    head = store.client.head_object(Bucket=bucket, Key=sha)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    with store.open(sha) as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha


def test_presigned_url_serves_the_blob_and_ranges_without_credentials(s3_endpoint, tmp_path):
    store = S3BlobStore(new_bucket(s3_endpoint), "p", endpoint_url=s3_endpoint)
    data = os.urandom(5000)
    tmp, sha = _tmp_blob(tmp_path, data)
    store.put_file(tmp, sha, len(data))
    url = store.presigned_url(sha, 60, 'weights "x".safetensors')
    assert url.startswith(s3_endpoint) and "Signature" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-disposition"] == 'attachment; filename="weights__x_.safetensors"'
    r = httpx.get(url, headers={"range": "bytes=4000-"})
    assert r.status_code == 206 and r.content == data[4000:]


def test_missing_bucket_and_bad_urls_are_clear_errors(s3_endpoint):
    with pytest.raises(RuntimeError, match="S3 bucket 'no-such-bucket-here' at .* is not accessible"):
        S3BlobStore("no-such-bucket-here", endpoint_url=s3_endpoint)
    assert parse_blob_store("s3://my-bucket/a/b/") == ("s3", "my-bucket", "a/b")
    assert parse_blob_store("") == ("local", "", "")
    for bad in ("s3://", "s3://Bad_Bucket", "gs://bucket", "/srv/blobs"):
        with pytest.raises(ValueError, match="blob store"):
            parse_blob_store(bad)


def test_serve_refuses_bad_blob_store_options(tmp_path):
    from typer.testing import CliRunner

    import typer

    from adapterhub.server.cli import serve

    app = typer.Typer()
    app.command()(serve)
    runner = CliRunner(env={"COLUMNS": "400"})
    out = runner.invoke(app, ["--data-dir", str(tmp_path), "--blob-store", "gs://x"])
    assert out.exit_code == 2 and "expected s3://BUCKET or s3://BUCKET/PREFIX" in out.output
    out = runner.invoke(app, ["--data-dir", str(tmp_path), "--blob-redirect"])
    assert out.exit_code == 2 and "needs an s3://" in out.output


# --- hubs on S3 --------------------------------------------------------------------------------------------


class Replica:
    """One hub server with its own data folder on the shared database and bucket: in this process (``hub`` is
    its Hub), or ``adapterhub serve`` in a child process (its own caches and module state, as on another
    machine; ``hub`` is None)."""

    def __init__(self, settings, child: bool = False, args: tuple[str, ...] = (), env: dict | None = None):
        from server_support import start_server

        from adapterhub.client.local import start_local_hub
        from adapterhub.server.app import create_app
        from adapterhub.server.hub import Hub

        self.settings, self.hub, self.child = settings, None, None
        if child:
            self.child = start_local_hub(
                settings.data_dir, user=None, env=env,
                options=["--database-url", settings.database_url, "--blob-store", settings.blob_store,
                         "--s3-endpoint-url", settings.s3_endpoint_url, *args],
            )  # fmt: skip
            self.url = self.child.url
        else:
            self.hub = Hub(settings)
            self.url, self.server, self.thread = start_server(create_app(hub=self.hub))

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            return
        self.server.should_exit = True
        self.thread.join(10)
        self.hub.close()


@pytest.fixture(scope="module")
def replicas(db_url, s3_endpoint, tmp_path_factory):
    """Two hubs on one PostgreSQL database and one bucket (prefix ``blobs``), each with its own data folder: A
    in this process, streaming blobs; B an ``adapterhub serve`` process answering downloads of files from 2000
    bytes with presigned redirects. A user alice (token)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database, as deployed (the store itself: the tests above)")
    from adapterhub.server import auth
    from adapterhub.server.settings import Settings

    bucket = new_bucket(s3_endpoint)

    def settings(name):
        data = tmp_path_factory.mktemp(f"replica-{name}")
        return Settings(data_dir=data, database_url=db_url, validation_wait=30.0,
                        blob_store=f"s3://{bucket}/blobs", s3_endpoint_url=s3_endpoint)  # fmt: skip

    a = Replica(settings("a"))
    with a.hub.db.session() as s:
        token = auth.create_token(s, auth.create_account(s, "alice"), "write")
    try:
        b = Replica(settings("b"), child=True, args=("--blob-redirect",),
                    env={"ADAPTERHUB_BLOB_REDIRECT_MIN_SIZE": "2000"})  # fmt: skip
    except BaseException:
        a.stop()
        raise
    yield a, b, bucket, token
    b.stop()
    a.stop()


def _push_adapter(url: str, token: str, repo: str, base: str = "alice/bert-tiny") -> tuple[str, dict]:
    from test_uploads import INTEROP

    api = hf.HfApi(endpoint=url, token=token)
    if not api.repo_exists(base):
        api.create_repo(base)
        api.upload_file(
            path_or_fileobj=INTEROP / "bert/base/config.json", path_in_repo="config.json", repo_id=base
        )
    api.create_repo(repo)
    files = _adapter_files("seq_bn", base)
    ops = [hf.CommitOperationAdd(p, d) for p, d in files.items()]
    return api.create_commit(repo, operations=ops, commit_message="adapter").oid, files


@needs_fixtures
def test_upload_through_a_download_through_b(replicas, tmp_path):
    a, b, bucket, token = replicas
    oid, files = _push_adapter(a.url, token, "alice/replicated")
    # validated from the bucket's content (the base config) and the staged files; nothing on either disk
    v = httpx.get(f"{b.url}/api/models/alice/replicated/validation").json()
    assert v["commit"] == oid and v["status"] == "passed", v
    for r in (a, b):
        assert not (Path(r.settings.data_dir) / "blobs").exists()
        assert list((Path(r.settings.data_dir) / "tmp").iterdir()) == []
    stored = objects(a.settings.s3_endpoint_url, bucket)
    for data in files.values():
        assert stored[f"blobs/{hashlib.sha256(data).hexdigest()}"] == len(data)
    # readable through B at once: huggingface_hub (whole snapshot; the weights by redirect) and our client
    # (one bundle, streamed by B from the bucket); A streams a file from the bucket itself
    assert hf.HfApi(endpoint=b.url).model_info("alice/replicated").sha == oid
    got = hf.snapshot_download("alice/replicated", endpoint=b.url, cache_dir=tmp_path / "hf", token=False)
    for name, data in files.items():
        assert (Path(got) / name).read_bytes() == data
    r = httpx.get(f"{a.url}/alice/replicated/resolve/{oid}/adapter.safetensors")
    assert r.status_code == 200 and r.content == files["adapter.safetensors"]
    assert r.headers["etag"] == f'"{hashlib.sha256(files["adapter.safetensors"]).hexdigest()}"'
    from adapterhub.client import adapter_folder

    folder = adapter_folder("alice/replicated", endpoint=b.url, token=False, cache_dir=tmp_path / "ours")
    for name in ("adapter.safetensors", "adapter_config.json", "README.md"):
        assert (folder / name).read_bytes() == files[name]


@needs_fixtures
def test_refused_upload_leaves_no_object(replicas):
    a, _, bucket, token = replicas
    from safetensors.torch import load, save

    before = objects(a.settings.s3_endpoint_url, bucket)
    api = hf.HfApi(endpoint=a.url, token=token)
    api.create_repo("alice/refused")
    files = _adapter_files("seq_bn")
    weights = load(files["adapter.safetensors"])
    weights.pop(sorted(weights)[-1])
    files["adapter.safetensors"] = save(weights)
    files["notes.txt"] = os.urandom(2000)
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        api.create_commit("alice/refused", operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()],
                          commit_message="bad")  # fmt: skip
    assert e.value.response.status_code == 422 and "missing" in str(e.value)
    assert objects(a.settings.s3_endpoint_url, bucket) == before
    assert list((Path(a.settings.data_dir) / "tmp").iterdir()) == []


@needs_fixtures
def test_presigned_redirects_for_huggingface_hub_and_our_client(replicas, tmp_path):
    a, b, _, token = replicas
    oid, files = _push_adapter(b.url, token, "alice/redirected")
    weights = files["adapter.safetensors"]
    assert len(weights) > 2000 > len(files["adapter_config.json"])
    sha = hashlib.sha256(weights).hexdigest()
    for method in ("HEAD", "GET"):
        r = httpx.request(method, f"{b.url}/alice/redirected/resolve/main/adapter.safetensors")
        assert r.status_code == 302, r.text
        assert r.headers["etag"] == r.headers["x-linked-etag"] == f'"{sha}"'
        assert r.headers["x-linked-size"] == str(len(weights)) and r.headers["x-repo-commit"] == oid
        assert r.headers["location"].startswith(a.settings.s3_endpoint_url)
        assert httpx.get(r.headers["location"]).content == weights
    small = httpx.get(f"{b.url}/alice/redirected/resolve/main/adapter_config.json")
    assert small.status_code == 200 and small.content == files["adapter_config.json"]
    # huggingface_hub reads the metadata from the 302 and fetches the bytes from storage
    got = hf.hf_hub_download(
        "alice/redirected", "adapter.safetensors", endpoint=b.url, cache_dir=tmp_path / "hf", token=token
    )
    assert Path(got).read_bytes() == weights
    # our client, file by file (the path a resumed or bundle-less download takes)
    from adapterhub.client import HubClient
    from adapterhub.client.cache import Cache
    from adapterhub.client.download import snapshot

    with HubClient(endpoint=b.url, token=token, offline=False) as client:
        with client.stream_file("alice/redirected", oid, "adapter.safetensors") as response:
            assert str(response.url).startswith(a.settings.s3_endpoint_url)
            assert "authorization" not in response.request.headers
            assert response.headers["x-linked-etag"] == f'"{sha}"'
        folder = snapshot(client, Cache(tmp_path / "ours"), b.url, "alice/redirected", oid, progress=False)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data


@needs_fixtures
def test_commits_through_either_replica_are_seen_by_the_other_at_once(replicas):
    a, b, _, token = replicas
    api_a, api_b = hf.HfApi(endpoint=a.url, token=token), hf.HfApi(endpoint=b.url, token=token)
    api_a.create_repo("alice/ping-pong")
    for i in range(3):
        for one, other in ((api_a, b), (api_b, a)):
            text = f"round {i} through {one.endpoint}".encode()
            oid = one.upload_file(
                path_or_fileobj=text, path_in_repo="note.txt", repo_id="alice/ping-pong"
            ).oid
            r = httpx.get(f"{other.url}/alice/ping-pong/resolve/main/note.txt")
            assert r.content == text and r.headers["x-repo-commit"] == oid
            assert hf.HfApi(endpoint=other.url).model_info("alice/ping-pong").sha == oid
    hits = httpx.get(f"{b.url}/api/models", params={"search": "ping-pong"}).json()
    assert [m["id"] for m in hits] == ["alice/ping-pong"]


def test_the_compose_deployment_names_real_settings():
    """deploy/compose.yaml configures the hub through ADAPTERHUB_* variables: each must be a setting, parsed
    to what the deployment means."""
    import yaml

    from adapterhub.server.settings import Settings

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml").read_text())
    env = compose["services"]["hub-a"]["environment"]
    assert env == compose["services"]["worker"]["environment"]
    fields = {f"ADAPTERHUB_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert {k for k in env if k.startswith("ADAPTERHUB_")} <= fields
    saved = dict(os.environ)
    try:
        os.environ.update({k: str(v) for k, v in env.items()})
        s = Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert s.blob_redirect is True and s.validation_queue is True
    assert parse_blob_store(s.blob_store) == ("s3", "adapterhub", "blobs")
    assert (
        s.database_url.startswith("postgresql+psycopg2://")
        and s.s3_public_endpoint_url == "http://localhost:9000"
    )
    assert compose["services"]["worker"]["command"][:2] == ["adapterhub", "worker"]


PY03 = Path(__file__).resolve().parents[2] / ".venv-hf03" / "bin" / "python"


@needs_fixtures
@pytest.mark.skipif(not PY03.exists(), reason=".venv-hf03 is missing (scripts/setup.sh creates it)")
def test_huggingface_hub_036_follows_the_presigned_redirect(replicas, tmp_path):
    import subprocess

    a, b, _, token = replicas
    _, files = _push_adapter(a.url, token, "alice/redirected-036")
    script = (
        "import sys, huggingface_hub as hf\n"
        "print(hf.__version__)\n"
        "p = hf.hf_hub_download('alice/redirected-036', 'adapter.safetensors',\n"
        "                       cache_dir=sys.argv[1], token=sys.argv[2])\n"
        "print(p)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=b.url, HF_HOME=str(tmp_path / "home"), HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run([str(PY03), "-c", script, str(tmp_path / "c"), token], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    version, path = proc.stdout.split()[-2:]
    assert version.startswith("0.36.") and Path(path).read_bytes() == files["adapter.safetensors"]
    assert httpx.head(f"{b.url}/alice/redirected-036/resolve/main/adapter.safetensors").status_code == 302


@needs_fixtures
def test_gc_removes_unused_objects_from_the_bucket(replicas, tmp_path):
    from adapterhub.server.repos import collect_garbage

    a, _, bucket, token = replicas
    _, files = _push_adapter(a.url, token, "alice/collected")
    kept = {f"blobs/{hashlib.sha256(d).hexdigest()}" for d in files.values()}
    stray, sha = _tmp_blob(tmp_path, b"left by a crash between storing a blob and its commit")
    a.hub.store.put_file(stray, sha, stray.stat().st_size)  # an object without a row
    endpoint = a.settings.s3_endpoint_url
    assert f"blobs/{sha}" in objects(endpoint, bucket)
    assert collect_garbage(a.hub, grace_seconds=3600)[:2] == (0, 0)  # too recent: maybe a commit's in flight
    time.sleep(1.1)
    removed = collect_garbage(a.hub, grace_seconds=1)[1]
    left = objects(endpoint, bucket)
    assert f"blobs/{sha}" not in left and kept <= set(left) and removed >= 1
    assert hf.HfApi(endpoint=a.url).model_info("alice/collected").sha  # still served
    r = httpx.get(f"{a.url}/alice/collected/resolve/main/adapter.safetensors")
    assert r.content == files["adapter.safetensors"]


@needs_fixtures
def test_small_bundles_from_s3_are_kept_in_memory(replicas, tmp_path, monkeypatch):
    a, _, _, token = replicas
    oid, files = _push_adapter(a.url, token, "alice/bundled")
    opened = []
    real_open = a.hub.store.open
    monkeypatch.setattr(a.hub.store, "open", lambda sha: opened.append(sha) or real_open(sha))
    from adapterhub.client import adapter_folder

    for n in range(2):
        folder = adapter_folder(
            f"alice/bundled@{oid}", endpoint=a.url, token=False, cache_dir=tmp_path / f"c{n}"
        )
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
        if n == 0:
            assert sorted(opened) == sorted(hashlib.sha256(d).hexdigest() for d in files.values())
    assert len(opened) == len(files)  # the second bundle came from memory, no object read again


def test_byte_range_parsing():
    from adapterhub.server.downloads import byte_range

    assert byte_range(None, 100) is None and byte_range("", 100) is None
    assert byte_range("bytes=10-19", 100) == (10, 19)
    assert byte_range("bytes=90-", 100) == (90, 99) and byte_range("bytes=90-500", 100) == (90, 99)
    assert byte_range("bytes=-30", 100) == (70, 99) and byte_range("bytes=-300", 100) == (0, 99)
    assert byte_range("bytes=100-", 100) == "unsatisfiable" and byte_range("bytes=-0", 100) == "unsatisfiable"
    for whole in ("bytes=5-2", "bytes=0-1,5-9", "items=0-1", "bytes=-", "bytes=a-b"):
        assert byte_range(whole, 100) is None, whole


@needs_fixtures
def test_range_requests_streamed_from_s3(replicas):
    a, _, _, token = replicas
    oid, files = _push_adapter(a.url, token, "alice/ranges")
    data = files["adapter.safetensors"]
    url = f"{a.url}/alice/ranges/resolve/{oid}/adapter.safetensors"
    r = httpx.get(url, headers={"range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert (
        r.headers["content-range"] == f"bytes 100-1099/{len(data)}" and r.headers["content-length"] == "1000"
    )
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    r = httpx.get(url, headers={"range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = httpx.get(url, headers={"range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"

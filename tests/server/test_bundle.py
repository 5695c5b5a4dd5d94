"""``GET /api/adapters/bundle`` on the live hub: the tar holds the resolve answer, the file list with sha256 and
the files of the resolved commit, byte for byte; errors are the resolve API's; private repositories are only
for their owner; max_file_size leaves big files out; a bundle counts one download; the plain-ASGI fast path
and the streamed FastAPI route answer the same bytes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from adapterhub.server import bundle as bundle_module
from adapterhub.server.models import Account, Repo

try:
    from test_search import INTEROP, LEGACY, upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_search import INTEROP, LEGACY, upload_adapter

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")

SEQ = INTEROP / "bert/adapters/seq_bn-seqcls/safetensors"
DOUBLE = INTEROP / "bert/adapters/double_seq_bn/safetensors"
MANIFEST = ".adapterhub-bundle.json"


@pytest.fixture(scope="module")
def uploaded(live_hub):
    """Two public adapters for the same task/subtask (so the short task form is ambiguous) and a private one."""
    out = {}
    out["seq"] = upload_adapter(live_hub, "alice/bdl-seqbn", SEQ, task="sentiment", subtask="bundle-test")
    out["double"] = upload_adapter(
        live_hub, "acme/bdl-double", DOUBLE, task="sentiment", subtask="bundle-test"
    )
    live_hub.api("alice").create_repo("alice/bdl-private", private=True)
    out["private"] = upload_adapter(live_hub, "alice/bdl-private", SEQ, task="nli", subtask="bundle-private")
    return out


def get_bundle(live_hub, token: str | None = None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {live_hub.tokens[token]}"} if token else {}
    return httpx.get(f"{live_hub.url}/api/adapters/bundle", params=params, headers=headers, timeout=30)


def get_resolve(live_hub, token: str | None = None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {live_hub.tokens[token]}"} if token else {}
    return httpx.get(f"{live_hub.url}/api/adapters/resolve", params=params, headers=headers, timeout=30)


def read_tar(data: bytes) -> tuple[dict, list[tuple[str, bytes]]]:
    """(the bundle manifest, [(member name, bytes)] of the members after it, in order), read as `tar x` does."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    assert members[0][0] == MANIFEST
    return json.loads(members[0][1]), members[1:]


def downloads(live_hub, repo_id: str) -> int:
    ns, name = repo_id.split("/")
    with live_hub.hub.db.session() as s:
        return s.scalar(select(Repo.downloads).where(Repo.namespace == ns, Repo.name == name))


def wait_downloads(live_hub, repo_id: str, expected: int) -> int:
    """The download is counted after the answer went out and written within a second (``hub.downloads``): poll."""
    deadline = time.time() + 5
    while (n := downloads(live_hub, repo_id)) < expected and time.time() < deadline:
        time.sleep(0.02)
    return n


def test_bundle_holds_the_pushed_files_and_their_hashes(live_hub, uploaded):
    files, commit = uploaded["seq"]
    r = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == "application/x-tar"
    assert r.headers["x-repo-commit"] == commit
    manifest, members = read_tar(r.content)
    assert (
        manifest["format"] == 1 and manifest["repo_id"] == "alice/bdl-seqbn" and manifest["commit"] == commit
    )
    assert manifest["omitted"] == []
    # the resolve part is exactly what the resolve API answers for the same identifier
    assert manifest["resolve"] == get_resolve(live_hub, identifier="alice/bdl-seqbn").json()
    assert manifest["resolve"]["commit"] == commit and manifest["resolve"]["downloadable"] is True
    # one member per file, sorted by path, byte for byte what was pushed
    assert [name for name, _ in members] == sorted(files)
    assert dict(members) == files
    listed = {f["path"]: f for f in manifest["files"]}
    assert [f["path"] for f in manifest["files"]] == sorted(files)
    for path, data in files.items():
        assert listed[path]["size"] == len(data)
        assert listed[path]["sha256"] == hashlib.sha256(data).hexdigest()
    # ... and the hashes are the ones the model info lists for that commit
    info = httpx.get(f"{live_hub.url}/api/models/alice/bdl-seqbn/revision/{commit}?blobs=true").json()
    assert {s["rfilename"] for s in info["siblings"]} == set(files)
    for sib in info["siblings"]:
        data = files[sib["rfilename"]]
        assert sib["size"] == listed[sib["rfilename"]]["size"]
        if sib.get("lfs"):
            assert sib["lfs"]["sha256"] == listed[sib["rfilename"]]["sha256"]
        assert sib["blobId"] == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_quick_answer_equals_the_full_resolution(live_hub, uploaded):
    """A plain public org/name is answered by one light query (search.quick_resolve); naming the branch makes the
    resolve API take the full path, whose answer must be the same (but for the identifier, which differs)."""
    r = get_bundle(live_hub, identifier="acme/bdl-double")
    quick = read_tar(r.content)[0]["resolve"]
    full = get_resolve(live_hub, identifier="acme/bdl-double", version="main").json()
    assert quick == full
    via_route = read_tar(get_bundle(live_hub, identifier="acme/bdl-double", version="main").content)[0]
    assert via_route["resolve"] == quick and via_route["commit"] == uploaded["double"][1]


def test_repository_named_like_a_task_is_ambiguous(live_hub, uploaded):
    """org/name that is both a public repository and a task/subtask pair: 409 (the quick path must not answer)."""
    from adapterhub.server import auth

    with live_hub.hub.db.session() as s:
        alice = s.scalar(select(Account).where(Account.name == "alice"))
        auth.add_member(s, auth.create_account(s, "sentiment", kind="org"), alice, "write")
    files, commit = upload_adapter(live_hub, "sentiment/bundle-clash", SEQ)
    upload_adapter(live_hub, "acme/bdl-clash", DOUBLE, task="sentiment", subtask="bundle-clash")
    r = get_bundle(live_hub, identifier="sentiment/bundle-clash")
    assert r.status_code == 409, r.text
    assert "@sentiment/bundle-clash" in r.json()["error"]
    assert r.json() == get_resolve(live_hub, identifier="sentiment/bundle-clash").json()
    r = get_bundle(live_hub, identifier="@sentiment/bundle-clash")
    assert r.status_code == 200, r.text
    manifest, members = read_tar(r.content)
    assert manifest["commit"] == commit and dict(members) == files


def test_task_identifier_version_and_config(live_hub, uploaded):
    files, commit = uploaded["double"]
    r = get_bundle(live_hub, identifier="sentiment/bundle-test@acme")
    assert r.status_code == 200, r.text
    manifest, members = read_tar(r.content)
    assert manifest["repo_id"] == "acme/bdl-double" and manifest["commit"] == commit
    assert dict(members) == files
    # a task identifier made unique by the config
    r = get_bundle(live_hub, identifier="sentiment/bundle-test", config="double_seq_bn")
    assert r.status_code == 200, r.text
    assert read_tar(r.content)[0]["repo_id"] == "acme/bdl-double"
    # a revision: the commit id, in the identifier or as version=
    for params in (
        {"identifier": f"alice/bdl-seqbn@{uploaded['seq'][1]}"},
        {"identifier": "@alice/bdl-seqbn", "version": uploaded["seq"][1][:12]},
    ):
        r = get_bundle(live_hub, **params)
        assert r.status_code == 200, (params, r.text)
        assert read_tar(r.content)[0]["commit"] == uploaded["seq"][1]


@pytest.mark.parametrize(
    "params, status",
    [
        ({"identifier": "alice/no-such-adapter"}, 404),
        ({"identifier": "nothing/here"}, 404),
        ({"identifier": "sentiment/bundle-test"}, 409),  # two adapters match
        ({"identifier": "alice/bdl-seqbn", "config": "no-such-preset"}, 400),
        ({"identifier": "alice/bdl-seqbn", "config": "double_seq_bn"}, 404),  # main has seq_bn: no fallback
        ({"identifier": "a/b/c"}, 400),
    ],
)
def test_errors_are_the_resolve_apis(live_hub, uploaded, params, status):
    r = get_bundle(live_hub, **params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and isinstance(body["candidates"], list)
    resolved = get_resolve(live_hub, **params)
    assert (resolved.status_code, resolved.json()) == (status, body)
    if status == 409:
        assert any(c.startswith("alice/bdl-seqbn") for c in body["candidates"])
        assert any(c.startswith("acme/bdl-double") for c in body["candidates"])


def test_missing_identifier_is_a_validation_error(live_hub, uploaded):
    assert get_bundle(live_hub).status_code == 422
    assert get_bundle(live_hub, identifier="alice/bdl-seqbn", max_file_size=-1).status_code == 422


@pytest.mark.skipif(not LEGACY.is_dir(), reason="../shared/data/adapterhub-index is missing")
def test_legacy_card_is_422_with_the_resolve_answer(live_hub, uploaded):
    params = {"identifier": "@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"}
    r = get_bundle(live_hub, **params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body == get_resolve(live_hub, **params).json()
    assert body["source"] == "legacy" and body["downloadable"] is False and body["commit"] is None


def test_private_repository_only_for_its_owner(live_hub, uploaded):
    files, commit = uploaded["private"]
    for params in ({"identifier": "alice/bdl-private"}, {"identifier": "nli/bundle-private"}):
        anonymous = get_bundle(live_hub, **params)
        assert anonymous.status_code == 404, anonymous.text
        assert "bdl-private" not in json.dumps(anonymous.json()["candidates"])
        assert get_bundle(live_hub, "bob", **params).status_code == 404
        owner = get_bundle(live_hub, "alice", **params)
        assert owner.status_code == 200, owner.text
        manifest, members = read_tar(owner.content)
        assert manifest["commit"] == commit and dict(members) == files
    assert get_bundle(live_hub, "alice-read", identifier="alice/bdl-private").status_code == 200
    # the same through the FastAPI route (an extra parameter makes the fast path hand over)
    assert get_bundle(live_hub, identifier="alice/bdl-private", other="1").status_code == 404
    assert (
        get_bundle(live_hub, "alice", identifier="alice/bdl-private", other="1").content
        == get_bundle(live_hub, "alice", identifier="alice/bdl-private").content
    )


def test_max_file_size_lists_but_omits_big_files(live_hub, uploaded):
    files, commit = uploaded["seq"]
    limit = 1000
    big = sorted(p for p, d in files.items() if len(d) > limit)
    assert big and len(big) < len(files)  # the fixture has files on both sides of the limit
    r = get_bundle(live_hub, identifier="alice/bdl-seqbn", max_file_size=limit)
    assert r.status_code == 200, r.text
    manifest, members = read_tar(r.content)
    assert manifest["omitted"] == big
    assert [f["path"] for f in manifest["files"]] == sorted(files)  # still listed, with their hashes
    assert dict(members) == {p: d for p, d in files.items() if p not in big}
    r = get_bundle(live_hub, identifier="alice/bdl-seqbn", max_file_size=0)
    manifest, members = read_tar(r.content)
    assert manifest["omitted"] == sorted(p for p, d in files.items() if d) and members == [
        (p, b"") for p, d in sorted(files.items()) if not d
    ]


def test_a_bundle_counts_one_download(live_hub, uploaded):
    before = downloads(live_hub, "acme/bdl-double")
    assert get_bundle(live_hub, identifier="acme/bdl-double").status_code == 200
    assert wait_downloads(live_hub, "acme/bdl-double", before + 1) == before + 1
    item = httpx.get(f"{live_hub.url}/api/adapters", params={"author": "acme", "q": "bdl"}).json()["items"]
    assert [(i["id"], i["downloads"]) for i in item if i["id"] == "acme/bdl-double"] == [
        ("acme/bdl-double", before + 1)
    ]
    # an error counts nothing
    assert get_bundle(live_hub, identifier="acme/bdl-double", config="no-such-preset").status_code == 400
    live_hub.hub.downloads.flush()
    assert downloads(live_hub, "acme/bdl-double") == before + 1


def test_fast_path_route_and_streamed_route_answer_the_same(live_hub, uploaded, monkeypatch):
    """An unknown query parameter makes the fast path hand over to the FastAPI route; IN_MEMORY=0 makes the route
    stream. The three answers are the same bytes, and each counts one download."""
    files, commit = uploaded["seq"]
    before = downloads(live_hub, "alice/bdl-seqbn")
    fast = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    routed = get_bundle(live_hub, identifier="alice/bdl-seqbn", other="1")
    monkeypatch.setattr(bundle_module, "IN_MEMORY", 0)
    streamed = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    for r in (fast, routed, streamed):
        assert r.status_code == 200, r.text
        assert r.headers["x-repo-commit"] == commit
        assert r.headers["content-type"].split(";")[0] == "application/x-tar"
    assert fast.content == routed.content == streamed.content
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert int(streamed.headers["content-length"]) == len(
        streamed.content
    )  # streamed, its length known ahead
    assert dict(read_tar(streamed.content)[1]) == files
    assert wait_downloads(live_hub, "alice/bdl-seqbn", before + 3) == before + 3


def test_tar_is_a_well_formed_ustar_pax_stream(live_hub, uploaded):
    """Members are regular files with mode 0644 and sizes matching the manifest; the stream ends with the two
    zero blocks tar expects and is a whole number of 512-byte blocks."""
    r = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    data = r.content
    assert len(data) % tarfile.BLOCKSIZE == 0 and data.endswith(b"\0" * 2 * tarfile.BLOCKSIZE)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:  # stream mode, as `curl | tar x` reads it
        infos = [(m.name, m.size, m.isreg(), m.mode) for m in tar]
    manifest = read_tar(data)[0]
    assert infos[1:] == [(f["path"], f["size"], True, 0o644) for f in manifest["files"]]
    assert infos[0][0] == MANIFEST


def test_blob_shorter_than_its_record_never_gives_a_complete_tar(live_hub, uploaded, monkeypatch):
    """A damaged store (a blob cut short on disk): the in-memory answer is an error, the streamed answer breaks
    off; neither is a well-formed tar that a client could take for the commit."""
    files, commit = uploaded["double"]
    data = files["adapter.safetensors"]
    on_disk = Path(live_hub.hub.store.local_path(hashlib.sha256(data).hexdigest()))
    os.chmod(on_disk, 0o644)
    on_disk.write_bytes(data[: len(data) // 2])
    try:
        r = get_bundle(live_hub, identifier="acme/bdl-double")
        assert r.status_code == 500
        monkeypatch.setattr(bundle_module, "IN_MEMORY", 0)
        with pytest.raises(httpx.RemoteProtocolError):
            get_bundle(live_hub, identifier="acme/bdl-double")
    finally:
        on_disk.write_bytes(data)
    r = get_bundle(live_hub, identifier="acme/bdl-double")
    assert r.status_code == 200 and dict(read_tar(r.content)[1]) == files


def test_blob_repaired_in_place_with_its_mtime_kept_is_read_again(live_hub, uploaded):
    """Bit rot (bytes change, mtime does not) is sent as it is, and the client refuses it by its sha256. Once the
    blob is restored from a backup that keeps the mtime, the hub must send the good bytes again."""
    files, commit = upload_adapter(live_hub, "alice/bdl-rot", SEQ)  # a commit no bundle was made of yet
    good = files["adapter.safetensors"]
    on_disk = Path(live_hub.hub.store.local_path(hashlib.sha256(good).hexdigest()))
    os.chmod(on_disk, 0o644)
    st = os.stat(on_disk)
    rotten = bytearray(good)
    rotten[-5] ^= 0x01
    try:
        on_disk.write_bytes(bytes(rotten))
        os.utime(on_disk, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert dict(read_tar(get_bundle(live_hub, identifier="alice/bdl-rot").content)[1])[
            "adapter.safetensors"
        ] == bytes(rotten)
        on_disk.write_bytes(good)  # restored, mtime kept
        os.utime(on_disk, ns=(st.st_atime_ns, st.st_mtime_ns))
        served = dict(read_tar(get_bundle(live_hub, identifier="alice/bdl-rot").content)[1])
    finally:
        on_disk.write_bytes(good)
    assert served["adapter.safetensors"] == good


def test_fast_path_answers_while_every_pooled_connection_is_taken(live_hub, uploaded):
    """With SQLite the event loop reads through a connection of its own (``Database.loop_reader``): when streaming
    answers or slow routes hold every pooled connection, a small bundle is still answered (before, the loop
    waited up to 30 s for the pool, and every other request with it)."""
    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("the event-loop reader is SQLite's")
    files, commit = uploaded["seq"]
    engine = live_hub.hub.db.engine
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    try:
        assert engine.pool.checkedout() == len(held)
        r = httpx.get(
            f"{live_hub.url}/api/adapters/bundle", params={"identifier": "alice/bdl-seqbn"}, timeout=10
        )
        assert r.status_code == 200 and r.headers["x-repo-commit"] == commit
        manifest, members = read_tar(r.content)
        assert dict(members) == files
    finally:
        for conn in held:
            conn.close()


def test_loop_reader_cannot_write_and_reads_beside_a_writer(live_hub):
    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("the event-loop reader is SQLite's")
    reader = live_hub.hub.db.loop_reader()
    assert reader is not None
    assert reader.execute("PRAGMA query_only").fetchone() == (1,)
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        reader.execute("UPDATE repos SET downloads = downloads + 1")
    live_hub.hub.downloads.flush()  # nothing else writes while this test runs
    committed = reader.execute("SELECT sum(downloads) FROM repos").fetchone()
    writer = live_hub.hub.db.engine.raw_connection()
    try:
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE repos SET downloads = downloads + 1000")
        # WAL: the reader is answered at once (it never waits: timeout 0) and sees only committed data
        assert reader.execute("SELECT sum(downloads) FROM repos").fetchone() == committed
    finally:
        writer.rollback()
        writer.close()
    with live_hub.hub.db.loop_read() as first, live_hub.hub.db.loop_read() as second:
        assert first is reader and second is None  # in use (a second event loop): the caller takes a thread


def test_have_names_commits_the_client_holds(live_hub, uploaded):
    """``have``: the resolved commit held by the client gets the manifest alone (every file listed as omitted, no
    download counted); another commit gets the full bundle; the fast path and the route answer the same bytes."""
    files, commit = uploaded["seq"]
    other = "0" * 40
    live_hub.hub.downloads.flush()
    before = downloads(live_hub, "alice/bdl-seqbn")
    held = get_bundle(live_hub, identifier="alice/bdl-seqbn", have=f"{other},{commit}")
    routed = get_bundle(live_hub, identifier="alice/bdl-seqbn", have=commit, other="1")  # unknown: the route
    assert held.status_code == routed.status_code == 200
    manifest, members = read_tar(held.content)
    assert members == [] and manifest["have"] is True and manifest["commit"] == commit
    assert sorted(manifest["omitted"]) == sorted(files) == sorted(f["path"] for f in manifest["files"])
    assert read_tar(routed.content) == (manifest, [])
    live_hub.hub.downloads.flush()
    assert downloads(live_hub, "alice/bdl-seqbn") == before  # nothing was downloaded
    full = get_bundle(live_hub, identifier="alice/bdl-seqbn", have=other)
    manifest, members = read_tar(full.content)
    assert "have" not in manifest and dict(members) == files
    assert wait_downloads(live_hub, "alice/bdl-seqbn", before + 1) == before + 1


@pytest.mark.parametrize("have", ["abc", "0" * 39, ("0" * 40 + ",") * 65 + "0" * 40, "A" * 40])
def test_malformed_have_is_refused(live_hub, uploaded, have):
    r = get_bundle(live_hub, identifier="alice/bdl-seqbn", have=have)
    assert r.status_code == 400 and "have=" in r.json()["error"]


# --- the speed tricks of the bundle answer: each is taken, and its plain path answers the same ----------------


def answered_fast(monkeypatch) -> list[str]:
    """The repository of every bundle that the plain-ASGI fast path sends (``_send_small``: only it calls that)."""
    sent: list[str] = []
    original = bundle_module._send_small

    async def recording(send, manifest, parts):
        sent.append(manifest["repo_id"])
        await original(send, manifest, parts)

    monkeypatch.setattr(bundle_module, "_send_small", recording)
    return sent


def test_the_fast_path_answers_every_small_bundle(live_hub, uploaded, monkeypatch):
    """Plain, task and private identifiers, config, version and have= are answered by the fast path (the quick
    query, or the full resolution in a worker thread); errors and unknown parameters go to the route."""
    seq, double = uploaded["seq"][1], uploaded["double"][1]
    sent = answered_fast(monkeypatch)
    cases = [
        (None, {"identifier": "alice/bdl-seqbn"}, "alice/bdl-seqbn"),
        (None, {"identifier": "sentiment/bundle-test@acme"}, "acme/bdl-double"),
        (None, {"identifier": "sentiment/bundle-test", "config": "double_seq_bn"}, "acme/bdl-double"),
        (None, {"identifier": "@alice/bdl-seqbn", "version": seq[:12]}, "alice/bdl-seqbn"),
        (None, {"identifier": "acme/bdl-double", "have": double}, "acme/bdl-double"),
        ("alice", {"identifier": "alice/bdl-private"}, "alice/bdl-private"),
        ("alice", {"identifier": "nli/bundle-private"}, "alice/bdl-private"),
    ]
    for token, params, repo in cases:
        r = get_bundle(live_hub, token, **params)
        assert r.status_code == 200, (params, r.text)
        assert read_tar(r.content)[0]["repo_id"] == repo
    assert sent == [repo for _, _, repo in cases]
    sent.clear()
    for params, status in [
        ({"identifier": "alice/bdl-seqbn", "other": "1"}, 200),
        ({"identifier": "alice/no-such-adapter"}, 404),
        ({"identifier": "sentiment/bundle-test"}, 409),
        ({"identifier": "alice/bdl-private"}, 404),
        ({"identifier": "alice/bdl-seqbn", "max_file_size": "-1"}, 422),
    ]:
        assert get_bundle(live_hub, **params).status_code == status, params
    assert sent == []


def test_the_event_loop_answers_without_a_thread_and_the_plain_path_the_same(live_hub, uploaded, monkeypatch):
    """With SQLite the manifest comes from the event loop's own reader, and with the files in memory the whole
    answer is made there: no worker thread. Without the reader (the plain path) a thread answers the same bytes."""
    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("the event-loop reader is SQLite's")
    files, commit = uploaded["seq"]
    first = get_bundle(live_hub, identifier="alice/bdl-seqbn")  # the files are in memory after this
    hops: list[object] = []
    original = bundle_module.run_in_threadpool

    async def counting(fn, *args, **kwargs):
        hops.append(fn)
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(bundle_module, "run_in_threadpool", counting)
    sent = answered_fast(monkeypatch)
    again = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    held = get_bundle(live_hub, identifier="alice/bdl-seqbn", have=commit)
    assert again.content == first.content and read_tar(held.content)[1] == []
    assert sent == ["alice/bdl-seqbn"] * 2 and hops == []
    monkeypatch.setattr(type(live_hub.hub.db), "loop_reader", lambda self: None)
    plain = get_bundle(live_hub, identifier="alice/bdl-seqbn")
    assert plain.content == first.content and dict(read_tar(plain.content)[1]) == files
    assert sent == ["alice/bdl-seqbn"] * 3 and hops == [bundle_module._answer_in_thread]


def test_the_files_of_small_bundles_are_read_once_and_the_plain_path_reads_each_time(
    live_hub, uploaded, monkeypatch
):
    """``_BODIES`` keeps the file members of small bundles: a second answer reads no blob. Its plain path (a
    limit of 0) reads them every time, for the same bytes."""
    files, commit = uploaded["seq"]
    reads: list[str] = []
    original = bundle_module._file_members

    def counting(hub, manifest):
        reads.append(manifest["commit"])
        return original(hub, manifest)

    monkeypatch.setattr(bundle_module, "_file_members", counting)
    monkeypatch.setattr(bundle_module, "_BODIES", bundle_module._Bodies())
    answers = [get_bundle(live_hub, identifier="alice/bdl-seqbn").content for _ in range(3)]
    assert reads == [commit]
    monkeypatch.setattr(bundle_module, "_BODIES", bundle_module._Bodies(limit=0))
    answers += [get_bundle(live_hub, identifier="alice/bdl-seqbn").content for _ in range(2)]
    assert reads == [commit] * 3
    assert len(set(answers)) == 1 and dict(read_tar(answers[0])[1]) == files


def bundle_scope(query: bytes) -> dict:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/adapters/bundle",
        "query_string": query,
        "headers": [],
    }


def test_fast_path_errors_surface_instead_of_falling_back(live_hub, uploaded, monkeypatch):
    """The fast path catches nothing: what the route would explain is handed over before (None / False), and a
    real error (a bug, a broken database) raises instead of being answered more slowly by the route."""
    import asyncio

    async def send(message) -> None:
        raise AssertionError("nothing may be sent")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the quick manifest")

    monkeypatch.setattr(bundle_module, "quick_manifest", broken)
    with pytest.raises(RuntimeError, match="a bug in the quick manifest"):
        asyncio.run(
            bundle_module.fast_bundle(live_hub.hub, bundle_scope(b"identifier=alice/bdl-seqbn"), send)
        )
    for query in (b"identifier=alice/bdl-seqbn&other=1", b"max_file_size=1", b"identifier=a/b&have=xyz"):
        assert asyncio.run(bundle_module.fast_bundle(live_hub.hub, bundle_scope(query), send)) is False


def test_the_loop_reader_hands_over_only_when_the_database_is_busy(live_hub, uploaded, monkeypatch):
    import sqlite3

    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("the event-loop reader is SQLite's")
    asked = bundle_module._parse_query(bundle_scope(b"identifier=alice/bdl-seqbn"))
    assert bundle_module._quick_on_loop(live_hub.hub, asked)["commit"] == uploaded["seq"][1]
    for message, handed_over in [
        ("database is locked", True),
        ("database table is locked", True),
        ("no such table: repos", False),
    ]:

        def failing(*args, message=message):
            raise sqlite3.OperationalError(message)

        monkeypatch.setattr(bundle_module, "quick_manifest", failing)
        if handed_over:
            assert bundle_module._quick_on_loop(live_hub.hub, asked) is None
        else:
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                bundle_module._quick_on_loop(live_hub.hub, asked)

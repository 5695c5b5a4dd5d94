"""The hub's data safety, tried as an attacker would against a live server: blob references across
repositories, malformed input, unsafe names and trees, pickles in disguise, broken safetensors. Every
refusal is a 4xx with a message and leaves every table and the data dir exactly as they were."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import httpx
import pytest
from server_support import csrf_token, snapshot

ROOT = Path(__file__).resolve().parents[2]


def _h(live_hub, who="alice") -> dict:
    return {"Authorization": f"Bearer {live_hub.tokens[who]}"}


def _line(key: str, value) -> bytes:
    return json.dumps({"key": key, "value": value}).encode() + b"\n"


def _file(path: str, data: bytes) -> bytes:
    return _line("file", {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"})


def _commit(live_hub, repo: str, body: bytes, who="alice") -> httpx.Response:
    header = _line("header", {"summary": "test"})
    return httpx.post(
        f"{live_hub.url}/api/models/{repo}/commit/main",
        content=header + body,
        headers={**_h(live_hub, who), "Content-Type": "application/x-ndjson"},
        timeout=60,
    )


def _refused(live_hub, repo: str, body: bytes, status: int, needle: str, who="alice") -> dict:
    """Commit ``body``; expect ``status`` with ``needle`` in the message and nothing changed anywhere."""
    before = snapshot(live_hub.hub, live_hub.data_dir)
    r = _commit(live_hub, repo, body, who)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"], r.json()
    assert snapshot(live_hub.hub, live_hub.data_dir) == before
    return r.json()


@pytest.fixture(scope="module")
def repos_(live_hub):
    alice, bob = live_hub.api("alice"), live_hub.api("bob")
    alice.create_repo("alice/secret", private=True)
    alice.create_repo("alice/open")
    alice.create_repo("alice/names")
    bob.create_repo("bob/steal")
    return alice, bob


# --- item: blob references across repositories --------------------------------------------------------


def test_commit_cannot_reference_a_blob_of_a_private_repo_of_another_user(live_hub, repos_):
    secret = b"private weights " + os.urandom(32)
    sha = hashlib.sha256(secret).hexdigest()
    assert _commit(live_hub, "alice/secret", _file("w.txt", secret)).status_code == 200
    ref = _line("lfsFile", {"path": "stolen.txt", "algo": "sha256", "oid": sha, "size": len(secret)})
    # the same answer as for a hash that nobody stored: no oracle for which blobs exist
    err = _refused(live_hub, "bob/steal", ref, 422, "no stored blob", who="bob")
    fake = _line("lfsFile", {"path": "x.txt", "algo": "sha256", "oid": "0" * 64, "size": 1})
    assert _refused(live_hub, "bob/steal", fake, 422, "no stored blob", who="bob")["error"] == err[
        "error"
    ].replace(sha, "0" * 64).replace("stolen.txt", "x.txt")
    assert httpx.get(f"{live_hub.url}/bob/steal/resolve/main/stolen.txt").status_code == 404
    # the owner may reuse her own blob in another repository (a copy by hash), and a public blob is
    # anyone's to reference
    mine = _line("lfsFile", {"path": "copy.txt", "algo": "sha256", "oid": sha, "size": len(secret)})
    assert _commit(live_hub, "alice/open", mine).status_code == 200
    assert httpx.get(f"{live_hub.url}/alice/open/resolve/main/copy.txt").content == secret
    r = _commit(live_hub, "bob/steal", ref, who="bob")
    assert r.status_code == 200, r.text
    assert httpx.get(f"{live_hub.url}/bob/steal/resolve/main/stolen.txt").content == secret


def test_a_blob_of_a_repo_that_turned_private_is_no_longer_referable(live_hub, repos_):
    alice, _ = repos_
    alice.create_repo("alice/was-public")
    data = os.urandom(64)
    sha = hashlib.sha256(data).hexdigest()
    assert _commit(live_hub, "alice/was-public", _file("f.txt", data)).status_code == 200
    alice.update_repo_settings("alice/was-public", private=True)
    ref = _line("lfsFile", {"path": "f.txt", "algo": "sha256", "oid": sha, "size": len(data)})
    _refused(live_hub, "bob/steal", ref, 422, "no stored blob", who="bob")


# --- item: malformed input ----------------------------------------------------------------------------

BAD_LINES = [
    (b'{"key": "header", "value": ["not", "an", "object"]}\n', "must be an object"),
    (b'{"key": "header", "value": {"summary": 5}}\n', "'summary' must be str"),
    (b'{"key": "file", "value": "x"}\n', "must be an object"),
    (b'{"key": "file", "value": {"path": 7, "content": ""}}\n', "'path' must be str"),
    (b'{"key": "file", "value": {"path": "a.txt", "content": 12}}\n', "'content' must be str"),
    (b'{"key": "lfsFile", "value": {"path": "a.txt", "oid": {"x": 1}}}\n', "'oid' must be str"),
    (b'{"key": "deletedFile", "value": {"path": null}}\n', "empty file path"),
    (b'{"key": "file", "value": {"path": "\xff\xfe.txt"}}\n', "malformed NDJSON"),
    (b"[1, 2]\n", "malformed NDJSON"),
    (b'{"key": "nope", "value": {}}\n', "unknown commit operation"),
]


@pytest.mark.parametrize("line,needle", BAD_LINES)
def test_malformed_commit_lines_are_4xx_with_a_message(live_hub, repos_, line, needle):
    _refused(live_hub, "alice/names", line, 400, needle)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/api/repos/create", b"[1, 2]"),
        ("POST", "/api/repos/create", b'{"name": ["x"]}'),
        ("POST", "/api/repos/create", b'{"name": "\xff"}'),
        ("DELETE", "/api/repos/delete", b'"alice/names"'),
        ("PUT", "/api/models/alice/names/settings", b"[]"),
        ("POST", "/api/models/alice/names/branch/b1", b"[true]"),
        ("POST", "/api/models/alice/names/branch/b1", b'{"startingPoint": 3}'),
        ("POST", "/api/models/alice/names/tag/main", b'{"tag": ["v1"]}'),
        ("POST", "/api/models/alice/names/preupload/main", b'{"files": "a.txt"}'),
        ("POST", "/api/models/alice/names/preupload/main", b'{"files": [{"path": "a", "size": "9"}]}'),
        ("POST", "/api/models/alice/names/preupload/main", b'{"files": [1]}'),
        ("POST", "/api/models/alice/names/paths-info/main", b'{"paths": [1]}'),
        ("POST", "/api/models/alice/names/paths-info/main", b'["a"]'),
        ("POST", "/api/validate-yaml", b"\xff\xfe"),
    ],
)
def test_wrong_json_types_and_bodies_are_400(live_hub, repos_, method, path, body):
    before = snapshot(live_hub.hub, live_hub.data_dir)
    r = httpx.request(method, f"{live_hub.url}{path}", content=body, headers=_h(live_hub))
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert "must be" in r.text or "not valid JSON" in r.text
    assert snapshot(live_hub.hub, live_hub.data_dir) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/models?cursor=" + "9" * 30,
        "/api/models?limit=" + "9" * 30,
        "/api/models/alice/names/tree/main?cursor=" + "9" * 30,
        "/api/adapters?page=" + "9" * 30,
        "/adapters?page=" + "9" * 30,
        "/api/adapters?page=18446744073709551617",
    ],
)
def test_numbers_beyond_64_bits_are_not_500(live_hub, repos_, path):
    r = httpx.get(live_hub.url + path)
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 400:
        assert "out of range" in r.json()["error"]


# --- item: unsafe names and trees ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,needle",
    [
        (".GIT/config", "'.git' is reserved"),
        ("sub/.Git/hooks/x", "'.git' is reserved"),
        ("sub/.git./x", "'.git' is reserved"),
        ("\u202egnp.exe", "U+202E"),
        ("a\u200bb.txt", "U+200B"),
        ("a\u2066b.txt", "U+2066"),
        ("bell\x07.txt", "U+0007"),
        ("esc\x1b[31m.txt", "U+001B"),
        ("line\u2028sep.txt", "U+2028"),
        ("x" * 256, "at most 255 bytes"),
        ("d/" + "é" * 128, "at most 255 bytes"),
        ("ab:c.txt", "Windows clients cannot write"),
        ("what?.txt", "Windows clients cannot write"),
        ("dir./x.txt", "trailing dot or space"),
        ("x.txt ", "trailing dot or space"),
        ("sub/NUL.txt", "device name"),
        ("com1", "device name"),
    ],
)
def test_unsafe_names_are_refused(live_hub, repos_, name, needle):
    _refused(live_hub, "alice/names", _file(name, b"x"), 400, needle)


def test_file_and_folder_of_one_name_and_case_variants_are_refused(live_hub, repos_):
    _refused(live_hub, "alice/names", _file("a", b"1") + _file("a/b", b"2"), 422, "a is a file")
    _refused(live_hub, "alice/names", _file("A.txt", b"1") + _file("a.txt", b"2"), 422, "letter case")
    assert _commit(live_hub, "alice/names", _file("models/x.txt", b"1")).status_code == 200
    # against the tree already stored, too
    _refused(live_hub, "alice/names", _file("models", b"2"), 422, "needs a folder of that name")
    _refused(live_hub, "alice/names", _file("Models", b"2"), 422, "needs a folder")
    _refused(live_hub, "alice/names", _file("MODELS/X.TXT", b"2"), 422, "letter case")
    # replacing the folder by a file in one commit is fine
    r = _commit(live_hub, "alice/names", _line("deletedFolder", {"path": "models/"}) + _file("models", b"3"))
    assert r.status_code == 200, r.text


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _torch_like_zip(pad: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/.data/version", "3\n")
        z.writestr("archive/aaa-padding", os.urandom(pad))
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Boom()}, protocol=2))
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,data",
    [
        ("weights.dat", pickle.dumps(_Boom(), protocol=0)),
        ("weights.dat", pickle.dumps(_Boom(), protocol=1)),
        ("weights.dat", pickle.dumps(["x" * 100_000, _Boom()], protocol=0)),  # the call past 64 KiB
        ("weights.dat", _torch_like_zip(8192)),
        ("model.zip", _torch_like_zip(200_000)),
    ],
)
def test_pickles_of_every_protocol_and_torch_zips_are_refused(live_hub, repos_, name, data):
    _refused(live_hub, "alice/names", _file(name, data), 422, "pickle")


def _safetensors(entries: list[tuple[str, int, int]], data_len: int) -> bytes:
    header = {k: {"dtype": "F32", "shape": [(b - a) // 4], "data_offsets": [a, b]} for k, a, b in entries}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * data_len


@pytest.mark.parametrize(
    "entries,data_len,needle",
    [
        ([("a", 0, 16), ("b", 8, 24)], 24, "overlaps"),
        ([("a", 0, 16), ("b", 0, 16)], 16, "overlaps"),
        ([("a", 0, 8), ("b", 16, 24)], 24, "gap"),
        ([("a", 4, 12)], 12, "gap"),
    ],
)
def test_safetensors_with_overlapping_or_gapped_tensors_refused(live_hub, repos_, entries, data_len, needle):
    _refused(live_hub, "alice/names", _file("w.safetensors", _safetensors(entries, data_len)), 422, needle)


def test_safe_names_and_plain_files_still_pass(live_hub, repos_):
    body = (
        _file("docs/名前 v1.txt", b"ok")
        + _file("sat. hello.txt", b"sat. hello")
        + _file("w.safetensors", _safetensors([("a", 0, 16), ("b", 16, 24)], 24))
    )
    r = _commit(live_hub, "alice/names", body)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{live_hub.url}/alice/names/resolve/main/sat. hello.txt").content == b"sat. hello"


# --- item: leftovers ----------------------------------------------------------------------------------


def test_refused_web_form_upload_creates_nothing(live_hub, repos_):
    bad = _safetensors([("a", 0, 16), ("b", 8, 24)], 24)
    with httpx.Client(base_url=live_hub.url) as c:
        form = {
            "repo_id": "alice/form-refused",
            "token": live_hub.tokens["alice"],
            "csrf_token": csrf_token(c, "/upload"),
        }
        before = snapshot(live_hub.hub, live_hub.data_dir)
        r = c.post(
            "/upload",
            data=form,
            files=[("files", ("w.safetensors", bad)), ("files", ("notes.txt", b"hello"))],
        )
    assert r.status_code == 422, r.text
    assert "overlaps" in r.text
    assert snapshot(live_hub.hub, live_hub.data_dir) == before
    assert live_hub.api("alice").repo_exists("alice/form-refused") is False


def test_staging_of_killed_uploads_is_removed_by_gc_and_at_start(live_hub, repos_):
    import subprocess
    import sys
    import time

    from adapterhub.server.hub import Hub
    from adapterhub.server.repos import collect_garbage
    from adapterhub.server.uploads import Staging

    def killed_upload() -> object:  # what a process killed mid-upload leaves: a staging folder with files
        st = Staging(live_hub.hub.tmp_dir, live_hub.hub.limits)
        st.add_bytes("w.txt", b"half an upload")
        old = time.time() - 2 * 3600
        for p in (st.files["w.txt"].tmp, st.dir):
            os.utime(p, (old, old))
        return st.dir

    fresh = Staging(live_hub.hub.tmp_dir, live_hub.hub.limits)  # an upload in flight: kept
    fresh.add_bytes("x.txt", b"in flight")
    stale = killed_upload()
    env = {**os.environ, "ADAPTERHUB_DATABASE_URL": live_hub.hub.settings.database_url}
    cli = "import sys; from adapterhub.cli import app; sys.argv[0] = 'adapterhub'; app()"
    out = subprocess.run(
        [sys.executable, "-c", cli, "serve", "--gc", "--data-dir", str(live_hub.data_dir)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "staging folders" in out.stdout, out.stdout
    assert not stale.exists() and fresh.dir.exists()
    stale = killed_upload()
    Hub(live_hub.hub.settings).close()  # a server starting on the data dir
    assert not stale.exists() and fresh.dir.exists()
    stale = killed_upload()  # a server that runs for long: its periodic gc
    assert collect_garbage(live_hub.hub)[2] == 1
    assert not stale.exists() and fresh.dir.exists()
    fresh.cleanup()


def test_data_dir_database_and_blobs_are_private_to_the_server_user(live_hub, repos_):
    data = b"private " + os.urandom(16)
    assert _commit(live_hub, "alice/secret", _file("mode.txt", data)).status_code == 200
    blob = live_hub.hub.store.local_path(hashlib.sha256(data).hexdigest())
    paths = [live_hub.data_dir, live_hub.data_dir / "tmp", live_hub.data_dir / "blobs", blob.parent,
             blob.parent.parent, blob]  # fmt: skip
    if not live_hub.hub.settings.database_url:
        paths.append(live_hub.data_dir / "hub.sqlite")
    for p in paths:
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))


# --- item: request bodies: limits and auth before reading ---------------------------------------------


def _raw_request(url: str, head: str, body_chunks=(), timeout: float = 20) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers) and ``body_chunks`` over a plain socket and return the
    answer's status and body: what a client that lies about or streams its body sees."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        sock.sendall(head.encode("latin-1") + b"\r\n")
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed while the body was still coming
            pass
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    finally:
        sock.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@pytest.mark.parametrize(
    "path,ctype",
    [
        ("/api/validate-yaml", "application/json"),
        ("/upload", "multipart/form-data; boundary=x"),
        ("/api/repos/create", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
    ],
)
def test_anonymous_huge_declared_body_is_refused_before_it_is_sent(live_hub, repos_, path, ctype):
    """1 GiB announced, nothing sent: the answer comes at once (the hub did not wait for the body)."""
    before = snapshot(live_hub.hub, live_hub.data_dir)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {1 << 30}\r\n"
        "Origin: http://x\r\nConnection: close\r\n"
    )
    status, body = _raw_request(live_hub.url, head)
    assert status == 401, body
    assert b"without a valid token may send at most" in body
    assert snapshot(live_hub.hub, live_hub.data_dir) == before


def test_anonymous_streamed_body_is_cut_off_at_the_bound(live_hub, repos_):
    before = snapshot(live_hub.hub, live_hub.data_dir)
    head = (
        "POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n"
    )
    piece = b"x" * 65536
    chunks = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(64))  # 4 MiB
    status, body = _raw_request(live_hub.url, head, chunks)
    assert status == 401, body
    assert b"without a valid token may send at most" in body
    assert snapshot(live_hub.hub, live_hub.data_dir) == before


def test_signed_in_body_over_the_limit_is_refused_before_it_is_sent(live_hub, repos_):
    token = live_hub.tokens["alice"]
    head = (
        "POST /api/models/alice/names/preupload/main HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {1 << 30}\r\nConnection: close\r\n"
    )
    status, body = _raw_request(live_hub.url, head)
    assert status == 413, body
    assert b"request body too large" in body
    # a forged token does not lift the anonymous bound
    forged = head.replace(token, "ah_forged").replace(str(1 << 30), str(8 << 20))
    status, body = _raw_request(live_hub.url, forged)
    assert status == 401, body


# --- item: validation checks heads like adapter weights -----------------------------------------------

INTEROP = ROOT.parent / "shared" / "fixtures" / "interop"


@pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")
def test_upload_with_a_broken_or_foreign_head_is_refused(live_hub, repos_):
    from safetensors.torch import load, save

    alice, _ = repos_
    if not alice.repo_exists("alice/bert-base-cfg"):
        alice.create_repo("alice/bert-base-cfg")
        alice.upload_file(
            path_or_fileobj=INTEROP / "bert/base/config.json",
            path_in_repo="config.json",
            repo_id="alice/bert-base-cfg",
        )
    alice.create_repo("alice/heads")
    folder = INTEROP / "bert/adapters/seq_bn-seqcls/safetensors"
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    files["README.md"] = b"---\nbase_model: alice/bert-base-cfg\n---\n"
    head = load(files["model_head.safetensors"])
    head["classifier.weight"] = head["classifier.weight"][:-1].clone()
    broken = {**files, "model_head.safetensors": save(head)}
    body = b"".join(_file(p, d) for p, d in broken.items())
    _refused(live_hub, "alice/heads", body, 422, "head: shape mismatch: classifier.weight")
    foreign = {
        **files,
        "head_config.json": files["head_config.json"].replace(b"BertForSequenceClassification", b"Trainer"),
    }
    body = b"".join(_file(p, d) for p, d in foreign.items())
    _refused(live_hub, "alice/heads", body, 422, "is not a transformers model class")
    r = _commit(live_hub, "alice/heads", b"".join(_file(p, d) for p, d in files.items()))
    assert r.status_code == 200 and r.json()["validation"] == "passed", r.text

"""The bundle request through the standard library's ``http.client`` (``adapterhub.client.lean``): when it is used
(no proxy from the environment applies to the hub), keep-alive against the live hub, a kept-alive connection
that the server closed while idle, answers cut short, and the request line and headers that reach the server.
Most tests talk to a small HTTP/1.1 server of their own on 127.0.0.1 whose answers they write byte by byte."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import socketserver
import tarfile
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from client_support import adapter_model

from adapterhub.client import HubClient, HubHTTPError, adapter_folder
from adapterhub.client import bundle as bundle_module
from adapterhub.client import http as http_module
from adapterhub.client import lean
from adapterhub.client.lean import LeanConnection, LeanResponse, TransportError
from adapterhub.common.wire import BUNDLE_MANIFEST_NAME

BUNDLE = "/api/adapters/bundle"
KEPT = "acme/lean-kept"


# ------------------------------------------------------------------------------------------ helpers
def reply(
    body: bytes,
    *,
    status: str = "200 OK",
    kind: str = "application/octet-stream",
    length: int | None = None,
    extra: str = "",
) -> bytes:
    """A whole HTTP/1.1 answer (no ``Connection: close`` unless in ``extra`` headers); ``length`` may claim more
    bytes than ``body`` has."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n{extra}"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


class Server:
    """A threaded HTTP/1.1 server on 127.0.0.1 (a free port). ``answer(target)`` gives the bytes sent back for a
    request (None: close without answering); each connection serves ``per_connection`` requests, then the server
    shuts it down without having announced it. ``requests`` holds (request target, lower-cased headers)."""

    def __init__(self, answer: Callable[[str], bytes | None], per_connection: int = 1):
        self.answer, self.per_connection = answer, per_connection
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        self.closed = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                outer.connections += 1
                try:
                    for _ in range(outer.per_connection):
                        line = self.rfile.readline()
                        if not line:
                            return
                        headers = {}
                        while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                            name, _, value = header.decode("latin-1").partition(":")
                            headers[name.strip().lower()] = value.strip()
                        method, target, _ = line.decode("latin-1").split(" ", 2)
                        assert method == "GET", line
                        outer.requests.append((target, headers))
                        data = outer.answer(target)
                        if data is None:
                            return
                        self.wfile.write(data)
                finally:
                    try:
                        self.request.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    outer.closed += 1

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def wait_closed(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.closed < count:
            assert time.monotonic() < deadline, f"the server closed {self.closed} connection(s), not {count}"
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(answer: Callable[[str], bytes | None], per_connection: int = 1) -> Server:
        servers.append(Server(answer, per_connection))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def no_proxies(monkeypatch):
    """No proxy variable from the environment (either case)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def connects(monkeypatch) -> list[str]:
    """The hosts of every new connection ``LeanConnection`` opens (``_connect``), from now on."""
    calls: list[str] = []
    original = LeanConnection._connect

    def counting(self):
        calls.append(f"{self._host}:{self._port}")
        return original(self)

    monkeypatch.setattr(LeanConnection, "_connect", counting)
    return calls


@pytest.fixture
def own_clients(monkeypatch):
    """Shared HubClients only for this test, closed afterwards (their kept-alive sockets too)."""
    mine: dict = {}
    monkeypatch.setattr(http_module, "_SHARED", mine)
    yield
    for client in mine.values():
        client.close()


def echo(target: str) -> bytes:
    return reply(f"answer to {target}".encode())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# ------------------------------------------------------------------------------------------ usable()
def test_usable_without_proxy_variables(no_proxies):
    assert lean.usable("http://127.0.0.1:8000")
    assert lean.usable("http://localhost:8000/hub")
    assert lean.usable("https://hub.example.org")


ENDPOINTS = ["http://127.0.0.1:8000", "http://hub.example.org/hub", "https://hub.example.org"]


@pytest.mark.parametrize(
    "name, usable",
    [
        ("HTTP_PROXY", [False, False, True]),  # an http proxy does not apply to https
        ("http_proxy", [False, False, True]),
        ("HTTPS_PROXY", [True, True, False]),
        ("https_proxy", [True, True, False]),
        ("ALL_PROXY", [False, False, False]),
        ("all_proxy", [False, False, False]),
    ],
)
def test_proxy_variable_rules_out_the_endpoints_it_applies_to(no_proxies, monkeypatch, name, usable):
    monkeypatch.setenv(name, "http://proxy.example.org:3128")
    assert [lean.usable(e) for e in ENDPOINTS] == usable


@pytest.mark.parametrize("proxy_var", ["HTTP_PROXY", "ALL_PROXY"])
@pytest.mark.parametrize("no_proxy_var", ["NO_PROXY", "no_proxy"])
def test_no_proxy_covering_the_host_makes_it_usable_again(no_proxies, monkeypatch, proxy_var, no_proxy_var):
    monkeypatch.setenv(proxy_var, "http://proxy.example.org:3128")
    monkeypatch.setenv(no_proxy_var, "127.0.0.1")
    assert lean.usable("http://127.0.0.1:8000")
    assert not lean.usable("http://localhost:8000")  # not covered by that NO_PROXY
    monkeypatch.setenv(no_proxy_var, "localhost,.example.org")
    assert lean.usable("http://localhost:8000/hub")
    assert lean.usable("http://hub.example.org")
    assert not lean.usable("http://127.0.0.1:8000")
    monkeypatch.setenv(no_proxy_var, "*")
    assert lean.usable("http://10.1.2.3:8000")


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1:21", "file:///srv/hub", "127.0.0.1:8000", "http://"])
def test_non_http_endpoint_is_not_usable(no_proxies, endpoint):
    assert not lean.usable(endpoint)


# ------------------------------------------------------------------------------------------ HubClient
def test_client_under_a_proxy_sends_the_bundle_request_through_httpx(
    no_proxies, monkeypatch, serve, connects
):
    """Under HTTP_PROXY the client has no lean connection, and the bundle request reaches the proxy (httpx's proxy
    logic); without proxy variables it has one, and the request goes straight to the hub."""
    proxy = serve(
        lambda target: reply(b'{"detail": "no such API"}', status="404 Not Found", kind="application/json")
    )
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with HubClient(endpoint="http://hub.invalid:4321", token=False) as client:
        assert client._lean is None
        with client.bundle("acme/some", max_file_size=7) as response:
            assert response is None
    assert connects == []
    [(target, headers)] = proxy.requests
    parts = urlsplit(target)  # a proxy is asked for the absolute URL
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "hub.invalid:4321", BUNDLE)
    assert parse_qs(parts.query) == {"identifier": ["acme/some"], "max_file_size": ["7"]}

    monkeypatch.delenv("HTTP_PROXY")
    hub = serve(lambda target: reply(b"{}", status="404 Not Found", kind="application/json"))
    with HubClient(endpoint=hub.url, token=False) as client:
        assert isinstance(client._lean, LeanConnection)
        with client.bundle("acme/some") as response:
            assert response is None
    assert connects == [f"127.0.0.1:{hub.port}"]
    assert [urlsplit(t).path for t, _ in hub.requests] == [BUNDLE]
    assert len(proxy.requests) == 1


def test_client_with_no_proxy_for_the_hub_uses_the_lean_connection(no_proxies, monkeypatch, serve, connects):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    hub = serve(lambda target: reply(b"{}", status="404 Not Found", kind="application/json"))
    with HubClient(endpoint=hub.url, token=False) as client:
        assert client._lean is not None
        with client.bundle("acme/some") as response:
            assert response is None
    assert connects == [f"127.0.0.1:{hub.port}"] and len(hub.requests) == 1


# ------------------------------------------------------------------------------------------ keep-alive, live hub
@pytest.fixture(scope="module")
def kept(client_hub):
    """The commit of an adapter pushed to the live hub."""
    result = adapter_model(5).push_adapter_to_hub(
        KEPT,
        "sst",
        task="sentiment",
        subtask="lean-kept",
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    return result.commit


def test_two_bundle_requests_share_one_connection(client_hub, kept, env, no_proxies, connects):
    bodies = []
    with HubClient(endpoint=client_hub.url) as client:
        assert client._lean is not None
        for _ in range(2):
            with client.bundle(KEPT, max_file_size=bundle_module.MAX_FILE) as response:
                assert isinstance(response, LeanResponse) and response.status_code == 200
                bodies.append(response.read())
    assert len(connects) == 1
    assert bodies[0] == bodies[1]
    with tarfile.open(fileobj=io.BytesIO(bodies[0]), mode="r:") as tar:
        members = tar.getmembers()
        assert members[0].name == BUNDLE_MANIFEST_NAME
        manifest = json.loads(tar.extractfile(members[0]).read())
        assert (manifest["repo_id"], manifest["commit"]) == (KEPT, kept)
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        sent = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in members[1:]}
    assert sent and sent == {p: s for p, s in listed.items() if p not in manifest.get("omitted", [])}


# ------------------------------------------------------------------------------------------ closed connections
def test_idle_connection_closed_by_the_server_is_retried_on_a_new_one(no_proxies, serve, connects):
    server = serve(echo, per_connection=1)
    conn = LeanConnection(server.url, {}, None)
    try:
        with conn.get("/first", {}, {}) as response:
            assert response.read() == b"answer to /first"
        server.wait_closed(1)  # the kept-alive connection is now closed at the server's end
        with conn.get("/second", {"q": "1"}, {}) as response:
            assert response.status_code == 200
            assert response.read() == b"answer to /second?q=1"
    finally:
        conn.close()
    assert len(connects) == 2 and server.connections == 2
    assert [t for t, _ in server.requests] == ["/first", "/second?q=1"]


def test_kept_alive_connection_is_reused_while_the_server_keeps_it(no_proxies, serve, connects):
    server = serve(echo, per_connection=3)
    conn = LeanConnection(server.url, {}, None)
    try:
        for n in range(3):
            with conn.get(f"/{n}", {}, {}) as response:
                assert response.read() == f"answer to /{n}".encode()
    finally:
        conn.close()
    assert len(connects) == 1 and server.connections == 1


def test_retry_happens_only_once(no_proxies, serve, connects):
    """The idle connection is dead and the new one is refused: a TransportError after exactly one retry."""
    server = serve(echo, per_connection=1)
    conn = LeanConnection(server.url, {}, None)
    try:
        with conn.get("/first", {}, {}) as response:
            response.read()
        server.wait_closed(1)
        server.stop()
        with pytest.raises(TransportError):
            with conn.get("/second", {}, {}):
                pass
    finally:
        conn.close()
    assert len(connects) == 2


def test_refused_new_connection_raises_without_retry(no_proxies, connects):
    conn = LeanConnection(f"http://127.0.0.1:{closed_port()}", {}, None)
    with pytest.raises(TransportError, match="ConnectionRefused"):
        with conn.get(BUNDLE, {}, {}):
            pass
    assert len(connects) == 1


def test_new_connection_closed_without_an_answer_raises_without_retry(no_proxies, serve, connects):
    server = serve(lambda target: None)
    conn = LeanConnection(server.url, {}, None)
    with pytest.raises(TransportError):
        with conn.get(BUNDLE, {}, {}):
            pass
    assert len(connects) == 1 and server.connections == 1 and len(server.requests) == 1


# ------------------------------------------------------------------------------------------ answers cut short
def test_answer_cut_short_raises_on_read(no_proxies, serve, connects):
    server = serve(lambda target: reply(b"0123456789", length=1000) if target == "/cut" else echo(target))
    conn = LeanConnection(server.url, {}, None)
    try:
        with conn.get("/cut", {}, {}) as response:
            assert response.status_code == 200
            with pytest.raises(TransportError, match="IncompleteRead"):
                response.read()
            assert not response.reusable
        assert conn._idle == []  # the broken connection is closed, not kept for the next request
        with conn.get("/after", {}, {}) as response:  # the next request gets its answer on a new connection
            assert response.read() == b"answer to /after"
    finally:
        conn.close()
    assert [t for t, _ in server.requests][-1] == "/after"
    assert len(connects) == 2 and server.connections == 2


def test_answer_cut_short_raises_when_streamed(no_proxies, serve):
    server = serve(lambda target: reply(b"0123456789", length=1000))
    conn = LeanConnection(server.url, {}, None)
    try:
        with conn.get("/cut", {}, {}) as response:
            with pytest.raises(TransportError):
                b"".join(response.iter_bytes(4))
        assert conn._idle == []
    finally:
        conn.close()


def test_connection_close_answer_is_not_kept(no_proxies, serve, connects):
    """``Connection: close``: the server will close it; keeping it would make the next request reconnect inside
    http.client, with the connect timeout as its read timeout."""
    server = serve(lambda target: reply(b"bye", extra="Connection: close\r\n"), per_connection=3)
    conn = LeanConnection(server.url, {}, None)
    try:
        for _ in range(2):
            with conn.get("/x", {}, {}) as response:
                assert response.read() == b"bye" and not response.reusable
            assert conn._idle == []
    finally:
        conn.close()
    assert len(connects) == 2


def test_a_connection_returned_after_close_is_closed(no_proxies, serve):
    server = serve(echo, per_connection=3)
    conn = LeanConnection(server.url, {}, None)
    with conn.get("/x", {}, {}) as response:
        conn.close()  # e.g. HubClient.close() from another thread while this request runs
        assert response.read() == b"answer to /x"
    assert conn._idle == []


@pytest.fixture
def hub_env(tmp_path, monkeypatch, no_proxies, own_clients):
    """A private cache and home, no token, not offline; the endpoint is set by the test."""
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    for name in ("ADAPTERHUB_TOKEN", "ADAPTERHUB_OFFLINE", "ADAPTERHUB_ENDPOINT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def cut_bundle(repo_id: str) -> tuple[bytes, int]:
    """A bundle of two files (manifest first) and where to cut it: in the middle of the first file's data."""
    files = [("adapter_config.json", b'{"config": "seq_bn"}' * 50), ("adapter.safetensors", os.urandom(3000))]
    manifest = {
        "repo_id": repo_id,
        "commit": "c" * 40,
        "omitted": [],
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files],
    }
    body = tar_of([(BUNDLE_MANIFEST_NAME, json.dumps(manifest).encode()), *files])
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
        first = tar.getmembers()[1]
    return body, first.offset_data + first.size // 2


@pytest.mark.parametrize("streamed", [False, True])
def test_bundle_cut_short_through_the_client_leaves_nothing(hub_env, serve, monkeypatch, streamed):
    repo_id = "acme/cut-short" + ("-streamed" if streamed else "")
    body, cut = cut_bundle(repo_id)

    def answer(target):
        if urlsplit(target).path == BUNDLE:
            return reply(body[:cut], kind="application/x-tar", length=len(body))
        return reply(b'{"error": "not here"}', status="404 Not Found", kind="application/json")

    server = serve(answer)
    if streamed:
        monkeypatch.setattr(bundle_module, "IN_MEMORY", 0)
    monkeypatch.setenv("ADAPTERHUB_ENDPOINT", server.url)
    with pytest.raises(HubHTTPError, match="broke off"):
        adapter_folder(repo_id, progress=False)
    assert [urlsplit(t).path for t, _ in server.requests] == [BUNDLE]
    left = [p.relative_to(hub_env).as_posix() for p in hub_env.rglob("*") if p.is_file()]
    assert not [
        p for p in left if "/manifests/" in p or "/blobs/" in p or "/snapshots/" in p or ".part" in p
    ], left


# ------------------------------------------------------------------------------------------ what the server sees
@pytest.mark.parametrize("token", ["s3cret-token", None])
def test_endpoint_prefix_query_and_headers(no_proxies, serve, token):
    server = serve(lambda target: reply(b'{"detail": "no"}', status="404 Not Found", kind="application/json"))
    identifier, config = "acme/with space@v1.0", "seq_bn&reduction_factor=16"
    with HubClient(endpoint=f"{server.url}/hub/", token=token or False) as client:
        assert client._lean is not None
        with client.bundle(
            identifier, model_name="alice/tiny-bert", config=config, max_file_size=123
        ) as response:
            assert response is None
        user_agent = client._http.headers["user-agent"]
    [(target, headers)] = server.requests
    parts = urlsplit(target)
    assert parts.path == f"/hub{BUNDLE}"
    assert parse_qs(parts.query, strict_parsing=True) == {
        "identifier": [identifier],
        "model_name": ["alice/tiny-bert"],
        "config": [config],
        "max_file_size": ["123"],
    }
    assert not set(parts.query) & set(" @/"), parts.query  # url-encoded
    assert user_agent.startswith("adapterhub/") and headers["user-agent"] == user_agent
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    if token:
        assert headers["authorization"] == f"Bearer {token}"
    else:
        assert "authorization" not in headers

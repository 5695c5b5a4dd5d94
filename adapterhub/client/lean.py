"""Plain GET requests through the standard library's ``http.client``, for the hub's one hot request: the bundle
that a cold ``load_adapter`` asks for. On a loopback or LAN hub this costs about half a millisecond less per
request than httpx (whose request and response models are built for every call), which is a large share of a
cold load of a small adapter. Every other request goes through httpx.

Used only where httpx would connect directly: not when a proxy variable applies to the hub (``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY`` without a matching ``NO_PROXY``), which :func:`usable` tells. TLS uses the same
context as the httpx client. One idle connection is kept open; a request on a kept-alive connection that the
server closed in the meantime is sent once more on a new one (a GET may be repeated).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 60.0
_NETWORK = (OSError, http.client.HTTPException)


class TransportError(Exception):
    """The request or the answer broke off (the network, not the answer's content)."""


def usable(endpoint: str) -> bool:
    """Whether a request to ``endpoint`` goes straight to it (no proxy from the environment applies)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # in CPython, not in typeshed
    return not proxy or bool(bypass(parts.netloc, proxies))


class LeanResponse:
    """The parts of an ``httpx.Response`` that the bundle reader and ``HubClient.error_for`` use."""

    def __init__(self, response: http.client.HTTPResponse):
        self._response = response
        self.status_code = response.status
        self.reason_phrase = response.reason
        self.headers = response.headers  # case-insensitive .get()
        self._content: bytes | None = None
        self._broken = False

    def read(self) -> bytes:
        if self._content is None:
            self._content = self._read()
        return self._content

    def iter_bytes(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        while chunk := self._read(chunk_size):
            yield chunk
        if self._response.length:  # http.client's read(n) ends quietly when the server closes early
            self._broken = True
            raise TransportError(
                f"the answer ended {self._response.length} bytes short of its Content-Length"
            )

    def _read(self, n: int | None = None) -> bytes:
        try:
            return self._response.read(n)
        except _NETWORK as error:
            self._broken = True
            raise TransportError(f"{type(error).__name__}: {error}") from None

    def json(self) -> Any:
        return json.loads(self.read())

    @property
    def reusable(self) -> bool:
        """Whether the whole answer was read and the connection may carry the next request."""
        done = self._response.isclosed() or self._response.length == 0
        return done and not self._broken and not self._response.will_close


class LeanConnection:
    """Keep-alive GETs to one endpoint (``scheme://host[:port][/prefix]``)."""

    def __init__(self, endpoint: str, headers: dict[str, str], ssl_context: ssl.SSLContext | None):
        parts = urlsplit(endpoint)
        self._https = parts.scheme == "https"
        if not parts.hostname:
            raise ValueError(f"no host name in the endpoint {endpoint!r}")
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._ssl = ssl_context
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
        conn.connect()
        conn.sock.settimeout(READ_TIMEOUT)
        return conn

    @contextlib.contextmanager
    def get(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> Iterator[LeanResponse]:
        """GET ``path`` (below the endpoint's prefix); the response is read inside the ``with`` block. Network
        failures raise :class:`TransportError`."""
        url = self._prefix + path + ("?" + urlencode(params) if params else "")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        while True:
            try:
                conn = conn or self._connect()
                conn.request("GET", url, headers={**self._headers, **headers})
                response = LeanResponse(conn.getresponse())
                break
            except _NETWORK as error:
                if conn is not None:
                    conn.close()
                if not reused:
                    raise TransportError(f"{type(error).__name__}: {error}") from None
                conn, reused = None, False  # the server closed the idle connection: once more on a new one
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
        keep = False
        try:
            yield response
            keep = response.reusable
        finally:
            if keep:
                with self._lock:
                    if not self._idle and not self._closed:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Close the idle connection; one in use now is closed when its request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

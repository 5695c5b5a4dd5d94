"""What the HF-protocol handlers read from a request besides its body: the caller, the raw path split into
decoded segments, the hub's public base URL."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from fastapi import Request

from adapterhub.server.auth import Caller, caller_from_header
from adapterhub.server.errors import AuthError
from adapterhub.server.sessions import read_authorization

if TYPE_CHECKING:
    from adapterhub.server.hub import Hub


def caller_of(hub: Hub, request: Request, cookie: bool = False) -> Caller:
    """The caller named by the ``Authorization`` header; with ``cookie`` (reads only), else by the web UI's
    login cookie, where a stale cookie counts as anonymous. A bad ``Authorization`` header raises 401."""
    header = request.headers.get("authorization")
    from_cookie = cookie and not header
    if from_cookie:
        header = read_authorization(request)
    if not header:
        return Caller()
    with hub.db.session() as s:
        try:
            c = caller_from_header(s, header)
        except AuthError:
            if from_cookie:
                return Caller()
            raise
        if c.account is not None:
            s.expunge(c.account)
        return c


def raw_segments(request: Request, prefix: str) -> list[str]:
    """The path after ``prefix`` split on ``/`` *before* percent-decoding each segment, so that an encoded
    ``%2F`` (a revision such as ``refs%2Fpr%2F1``) stays inside its segment."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    return [unquote(p) for p in rest.strip("/").split("/")]


def base_url(hub: Hub, request: Request) -> str:
    """The URL the hub is reached at (``Settings.public_url``, else the request's), without a final ``/``."""
    return (hub.settings.public_url or str(request.base_url)).rstrip("/")

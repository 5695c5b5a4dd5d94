"""The first look at every HTTP request, before any handler (or fast path) reads its body.

* **Body limits first.** A body may be at most :func:`body_limit` bytes (uploads: the commit size limit,
  plus the base64 or form overhead; everything else: 16 MiB): a larger ``Content-Length`` is answered 413
  before anything is read, and a body without one is counted as it is read and cut off at the limit.
* **Auth before big bodies.** A request that is not signed in (no valid token in ``Authorization`` or in the
  login cookie) may send at most ``ANON_BODY_MAX`` bytes: a larger declared body is answered 401 without
  reading it, an undeclared one as soon as it passes the bound. So nobody can make the hub buffer or spool
  a large body without a token.
* **No NUL** in the path or the query string (400): no name or parameter of the hub holds one.
* **``allow_anonymous_read = False``**: requests without a valid token get 401 (web pages: a redirect to the
  login form), except the login form itself and the static files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from adapterhub.server.auth import caller_from_header
from adapterhub.server.errors import AuthError, PayloadTooLarge, error_response
from adapterhub.server.sessions import TOKEN_COOKIE

if TYPE_CHECKING:
    from adapterhub.server.hub import Hub

MiB = 1024 * 1024
ANON_BODY_MAX = 1 * MiB  # the most a request without a valid token may send (forms, JSON, YAML checks)
OTHER_BODY_MAX = 16 * MiB  # JSON endpoints (the longest: a preupload file list of max_files entries)
OPEN_PATHS = ("/login", "/logout")  # reachable without a token when anonymous reads are off (and /static/)
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def body_limit(hub: Hub, path: str) -> int:
    if path == "/upload" or (path.startswith("/api/models/") and "/commit/" in path):
        return hub.limits.max_commit_size * 4 // 3 + MiB  # base64 in NDJSON lines, multipart headers
    return OTHER_BODY_MAX


class _Request:
    """What the gate reads of one request (headers once, the caller at most once)."""

    def __init__(self, hub: Hub, scope):
        self.hub, self.scope = hub, scope
        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers") or []:
            headers.setdefault(k, v)
        self.authorization = headers.get(b"authorization", b"").decode("latin-1")
        self.cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"), TOKEN_COOKIE)
        raw = headers.get(b"content-length", b"").decode("latin-1").strip()
        self.declared = int(raw) if raw.isdigit() else None
        self._signed_in: bool | None = None

    async def signed_in(self) -> bool:
        """Whether the request carries a valid token (a database lookup, made only when needed)."""
        if self._signed_in is None:
            if not self.authorization and not self.cookie:
                self._signed_in = False
            else:
                self._signed_in = await run_in_threadpool(self._lookup)
        return self._signed_in

    def _lookup(self) -> bool:
        header = self.authorization or f"Bearer {self.cookie}"
        try:
            with self.hub.db.session() as s:
                return caller_from_header(s, header).account is not None
        except AuthError:
            return False


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name and v.strip('" '):
            return v.strip('" ')
    return None


async def admit(hub: Hub, scope, receive, send):
    """The ``receive`` to run the request with, or None when the gate has answered it (refused)."""
    if scope["type"] != "http":
        return receive
    req = _Request(hub, scope)
    path, method = scope.get("path") or "/", scope["method"]
    refusal = None
    if "\x00" in path or b"%00" in (scope.get("query_string") or b""):
        # no name, path or parameter of the hub holds a NUL; PostgreSQL cannot even compare one
        refusal = error_response("NUL characters are not allowed in a URL", 400, "BadRequest", method=method)
    elif not hub.settings.allow_anonymous_read and not (path in OPEN_PATHS or path.startswith("/static/")):
        if not await req.signed_in():
            if method == "GET" and not path.startswith("/api/") and "/resolve/" not in path:
                query = scope.get("query_string") or b""
                target = quote(path) + ("?" + query.decode("latin-1") if query else "")
                refusal = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            else:
                refusal = error_response(
                    "this hub does not allow anonymous reads: pass a token (Authorization: Bearer ...)",
                    401,
                    "Unauthorized",
                    method=method,
                )
    limit = body_limit(hub, path)
    if refusal is None and req.declared is not None and req.declared > ANON_BODY_MAX:
        if not await req.signed_in():
            refusal = error_response(_anonymous_body(req.declared), 401, "Unauthorized")
        elif req.declared > limit:
            refusal = error_response(
                f"request body too large ({req.declared} bytes, at most {limit})", 413, "PayloadTooLarge"
            )
    if refusal is not None:
        await refusal(scope, receive, send)
        return None
    if method not in BODY_METHODS:
        return receive
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body too large (more than {limit} bytes)")
            if seen > ANON_BODY_MAX and not await req.signed_in():
                raise AuthError(_anonymous_body(seen), 401)
        return message

    return counted


def _anonymous_body(size: int) -> str:
    return (
        f"a request without a valid token may send at most {ANON_BODY_MAX} bytes (this one: {size} or "
        "more); log in or pass a token (Authorization: Bearer ...)"
    )

"""The hub's security headers, in one place.

* Every answer (pages, API, downloads, fast paths included) gets ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, a ``Referrer-Policy`` and, unless the route set its own, a strict
  ``Content-Security-Policy`` (:data:`PAGE_CSP`: no script at all, styles and images from the hub only,
  forms post to the hub only, no framing). :func:`add_headers` wraps an ASGI ``send``; ``app.HubApp`` applies
  it to every request.
* Raw files of repositories (``/{repo}/resolve/...``) never run in the hub's origin: :func:`raw_file_headers`
  sends them as attachments, with an inert ``Content-Type`` (active types such as HTML, SVG, XML or
  JavaScript become ``text/plain``) and a sandbox CSP, so even a browser that shows one renders it in an
  opaque origin without script.
* :func:`safe_next` keeps redirect targets on the hub; :func:`redact_query` keeps tokens out of the access log.
"""

from __future__ import annotations

import mimetypes
import re
from urllib.parse import quote, unquote

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
RAW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'none'"
COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_CSP = b"content-security-policy"

# Types a browser shows without running anything; every other type is sent as text/plain or octet-stream.
INERT_TYPES = frozenset(
    {
        "application/json",
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "text/plain",
        "text/markdown",
        "text/csv",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    }
)


def add_headers(send):
    """An ASGI ``send`` that adds the common headers (and :data:`PAGE_CSP` where none is set) to the answer."""

    async def sending(message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            names = {k.lower() for k, _ in headers}
            headers.extend(h for h in COMMON if h[0] not in names)
            if _CSP not in names:
                headers.append((_CSP, PAGE_CSP.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def raw_file_type(path: str) -> str:
    """The ``Content-Type`` a repository file is served with: its own if inert, else an inert stand-in."""
    guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if guessed in INERT_TYPES:
        return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")
    if guessed.startswith("text/") or guessed.endswith(("+xml", "/xml", "javascript", "ecmascript")):
        return "text/plain; charset=utf-8"  # .html, .svg, .xml, .js, .css, ...: shown as text, never run
    return "application/octet-stream"


def raw_file_headers(path: str) -> dict[str, str]:
    """Headers of a downloaded repository file: an attachment, an inert type, a sandbox CSP."""
    name = path.rsplit("/", 1)[-1]
    fallback = re.sub(r"[^A-Za-z0-9._\- ]", "_", name) or "file"
    return {
        "Content-Type": raw_file_type(path),
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Security-Policy": RAW_CSP,
    }


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this hub (``/...``), else ``default``: never another host (``//h``,
    ``/\\h``, ``https://...``), a scheme (``javascript:``) or anything with control characters."""
    if not target or not isinstance(target, str):
        return default
    decoded = unquote(target)
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or decoded.startswith(("//", "/\\"))
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded)
        or len(target) > 2000
    ):
        return default
    return target


SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "password", "csrf_token"})
_TOKEN_VALUE = re.compile(r"ah_[A-Za-z0-9_\-]{8,}")


def redact_query(query: str) -> str:
    """A query string for the access log: values of secret-looking parameters and hub tokens replaced."""
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and unquote(name).strip().lower() in SECRET_PARAMS:
            value = "REDACTED"
        parts.append(name + eq + _TOKEN_VALUE.sub("ah_REDACTED", value))
    return _TOKEN_VALUE.sub("ah_REDACTED", "&".join(parts))


def load_secret(configured: str, data_dir) -> bytes:
    """The key that signs CSRF tokens: ``ADAPTERHUB_SECRET_KEY`` if set (the same for every server of one
    hub), else ``<data_dir>/secret_key``, made once (32 random bytes, readable by the owner only)."""
    import os
    import secrets
    from pathlib import Path

    if configured:
        if len(configured) < 32:
            raise ValueError(
                "ADAPTERHUB_SECRET_KEY must be at least 32 characters (e.g. 64 random hex digits)"
            )
        return configured.encode()
    path = Path(data_dir) / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_bytes().strip()
        if len(value) >= 32:
            return value
        raise RuntimeError(f"{path} is shorter than 32 bytes: remove it to make a new one") from None
    value = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value

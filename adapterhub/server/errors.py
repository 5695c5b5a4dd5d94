"""The hub's errors: one hierarchy, one wire format, one handler.

Every refusal of the server is a :class:`HubError`, or a subclass named after what went wrong. It carries the
HTTP status and the ``X-Error-Code`` from which ``huggingface_hub`` picks its own exception
(``RepoNotFound`` -> ``RepositoryNotFoundError``, ``RevisionNotFound``, ``EntryNotFound``; see
../shared/docs/hf-protocol.md), and for a file missing at a revision the commit it was looked up at
(``X-Repo-Commit``, which lets clients cache the absence). :func:`error_response` writes an error as the HF
Hub does: JSON ``{"error": message}`` with ``X-Error-Code`` and ``X-Error-Message`` headers (no body for
``HEAD``). :func:`install` registers the one handler that turns a raised ``HubError`` into that answer.

Raise the subclass that says what happened (``RepoNotFound(...)``, ``BadRequest(...)``); ``HubError(message,
status, code)`` spells out a status and code that no subclass names. Handlers that answer an error without
raising (a fast path, the gate before any route runs) call :func:`error_response` directly.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import escape


class HubError(Exception):
    """A refusal with an HTTP ``status`` and an ``X-Error-Code`` (``code``); ``commit`` goes to
    ``X-Repo-Commit``, ``extra`` adds fields to the JSON body (a 409 on create names the existing repo's url)."""

    status = 400
    code = "BadRequest"

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        commit: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.commit = commit
        self.extra = dict(extra or {})

    def response(self, method: str = "GET") -> Response:
        return error_response(self.message, self.status, self.code, self.commit, method, self.extra)


class BadRequest(HubError):
    status, code = 400, "BadRequest"


class NotFound(HubError):
    status, code = 404, "NotFound"


class RepoNotFound(NotFound):
    """No such repository, or a private one the caller may not see (the same answer for both)."""

    code = "RepoNotFound"


class RevisionNotFound(NotFound):
    code = "RevisionNotFound"


class EntryNotFound(NotFound):
    """No such file at a revision that exists (give ``commit``: clients cache the absence under it)."""

    code = "EntryNotFound"


class Conflict(HubError):
    status, code = 409, "Conflict"


class PayloadTooLarge(HubError):
    status, code = 413, "PayloadTooLarge"


class AuthError(HubError):
    """Authentication (401) or permission (403) refused; a 404 hides what the caller may not know exists."""

    status = 401

    def __init__(self, message: str, status: int = 401):
        super().__init__(message, status, {401: "Unauthorized", 404: "NotFound"}.get(status, "Forbidden"))


class UploadError(HubError):
    """A refused upload (a bad path, file, archive or commit line); ``code`` names the rule it broke."""

    status, code = 400, "BadUpload"


class CsrfError(HubError):
    """A form post without a valid CSRF token: answered with a small HTML page (it comes from a browser)."""

    status, code = 403, "Forbidden"

    def __init__(self, message: str):
        super().__init__(message)

    def response(self, method: str = "GET") -> Response:
        body = f"<!doctype html><title>Refused</title><h1>Refused</h1><p>{escape(self.message)}</p>"
        return HTMLResponse(body, status_code=self.status)


def error_response(
    message: str,
    status: int,
    code: str,
    commit: str | None = None,
    method: str = "GET",
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """An HF-style error: JSON ``{"error": ...}`` plus ``X-Error-Code`` / ``X-Error-Message`` headers."""
    headers = {"X-Error-Code": code, "X-Error-Message": header_safe(message)}
    if commit:
        headers["X-Repo-Commit"] = commit
    resp = JSONResponse({"error": message, **(extra or {})}, status_code=status, headers=headers)
    if method == "HEAD":
        resp.body = b""
        resp.headers["content-length"] = "0"
    return resp


def header_safe(s: str) -> str:
    """``s`` as a header value: printable ASCII only (control characters, e.g. from a decoded ``%00`` in a
    path, would make the answer fail)."""
    return "".join(c if " " <= c < "\x7f" else " " for c in s.encode("ascii", "replace").decode()[:1000])


def install(app: FastAPI) -> None:
    """Register the handler: a raised :class:`HubError` (any subclass) answers as itself, a request body that
    is not valid JSON as a 400."""

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, e: HubError) -> Response:
        return e.response(request.method)

    @app.exception_handler(json.JSONDecodeError)
    async def _bad_json(request: Request, e: json.JSONDecodeError) -> Response:
        return BadRequest(f"the request body is not valid JSON: {e}").response(request.method)

"""The ASGI application and the :class:`Hub` it serves.

Extension points for other server modules (search, index, web UI):

* **Routers.** ``create_app`` includes ``router`` (a FastAPI ``APIRouter``) from each module named in
  ``EXTENSIONS`` that can be imported, *before* the catch-all ``/{repo}/resolve/...`` route, so extension
  paths such as ``/`` or ``/{namespace}/{name}`` win. ``create_app(routers=[...])`` adds more.
* **Start-up.** If such a module has ``setup(hub)``, it is called once when the app is built, e.g. to
  append to the hook lists below.
* **Hooks.** ``hub.post_commit_hooks`` (each called with a ``repos.CommitEvent`` after a commit is stored),
  ``hub.post_validation_hooks`` (``(hub, commit_oid, status)`` when a background validation ends) and
  ``hub.model_info_hooks`` (``(info_dict, repo, commit)`` to add fields to ``/api/models/...`` answers).
  A failing hook is logged and never fails the request.
* The hub is ``request.app.state.hub`` inside handlers (or ``Depends(get_hub)``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import escape

from adapterhub.server import gate, migrate, repos, security
from adapterhub.server.counts import DownloadCounts
from adapterhub.server.auth import AuthError, LoginThrottle
from adapterhub.server.csrf import CsrfError
from adapterhub.server.db import Database
from adapterhub.server.settings import Settings
from adapterhub.server.storage import BlobStore, open_store, private_dir
from adapterhub.server.uploads import Limits, UploadError, remove_stale_staging
from adapterhub.server.validation import Validator

log = logging.getLogger("adapterhub.server")
EXTENSIONS = (
    "adapterhub.server.search",
    "adapterhub.server.bundle",
    "adapterhub.server.tokens",
    "adapterhub.server.apidocs",
    "adapterhub.server.analysis",
    "adapterhub.server.repo_pages",
    "adapterhub.server.manage",
    "adapterhub.server.ui",
)


class Hub:
    """Everything one server process shares: settings, database, blob store, validation worker, hooks."""

    def __init__(self, settings: Settings, store: BlobStore | None = None, run_migrations: bool = True):
        self.settings = settings
        data = Path(settings.data_dir)
        private_dir(data)
        # the CSRF signing key first: a bad ADAPTERHUB_SECRET_KEY fails before anything else is opened
        self.secret = security.load_secret(settings.secret_key, data)
        self.tmp_dir = data / "tmp"  # same file system as a local blob store: staged files are renamed in
        private_dir(self.tmp_dir)
        remove_stale_staging(self.tmp_dir)
        if not settings.database_url:  # the SQLite file (its -wal and -shm files take its mode)
            db_file = data / "hub.sqlite"
            os.close(os.open(db_file, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(db_file, 0o600)
        self.db = Database(settings.db_url)
        if run_migrations:
            migrate.upgrade(self.db.engine)
        self.store: BlobStore = store if store is not None else open_store(settings)
        self.validator = Validator(settings.validation_workers, self.tmp_dir)
        self.downloads = DownloadCounts(self.db)
        self.limits = Limits.from_settings(settings)
        self.login_throttle = LoginThrottle(settings.login_attempts)
        self.post_commit_hooks: list[Callable[[repos.CommitEvent], None]] = []
        self.post_validation_hooks: list[Callable[[Hub, str, str], None]] = []
        self.model_info_hooks: list[Callable] = []

    def run_post_commit(self, event: repos.CommitEvent) -> None:
        for hook in list(self.post_commit_hooks):
            try:
                hook(event)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook %r failed for %s@%s", hook, event.repo_id, event.commit_oid)

    def record_validation(self, commit_oid: str, report: dict, owner: str | None = None) -> str | None:
        """Store a validation result and run the post-validation hooks (see ``repos.record_validation``)."""
        status = repos.record_validation(self, commit_oid, report, owner)
        if status is None:
            return None
        for hook in list(self.post_validation_hooks):
            try:
                hook(self, commit_oid, status)
            except Exception:  # noqa: BLE001
                log.exception("post-validation hook %r failed for %s", hook, commit_oid)
        return status

    def close(self) -> None:
        self.validator.shutdown()
        self.downloads.close()
        self.db.dispose()


def get_hub(request: Request) -> Hub:
    return request.app.state.hub


def error_response(
    message: str, status: int, code: str, commit: str | None = None, method: str = "GET"
) -> JSONResponse:
    """An HF-style error: JSON ``{"error": ...}`` plus ``X-Error-Code`` / ``X-Error-Message`` headers."""
    headers = {"X-Error-Code": code, "X-Error-Message": _header_safe(message)}
    if commit:
        headers["X-Repo-Commit"] = commit
    resp = JSONResponse({"error": message}, status_code=status, headers=headers)
    if method == "HEAD":
        resp.body = b""
        resp.headers["content-length"] = "0"
    return resp


def _header_safe(s: str) -> str:
    """``s`` as a header value: printable ASCII only (control characters, e.g. from a decoded ``%00`` in a
    path, would make the answer fail)."""
    return "".join(c if " " <= c < "\x7f" else " " for c in s.encode("ascii", "replace").decode()[:1000])


ACCESS_LOG = logging.getLogger("adapterhub.access")


class HubApp(FastAPI):
    """FastAPI, plus plain-ASGI fast paths for the most frequent requests: downloading a file or a bundle.

    With ``access_log`` set (``adapterhub serve`` sets it and turns uvicorn's own off), each request is logged
    to ``adapterhub.access`` once its answer has gone out, with uvicorn's access-log arguments (client, method,
    path, HTTP version, status): uvicorn logs when the answer starts, which puts the logging on every request's
    critical path (~0.15 ms of a ~1 ms small download here)."""

    access_log = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            send = security.add_headers(send)
        if not self.access_log or scope["type"] != "http":
            return await self._serve(scope, receive, send)
        status = 0

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, sending)
        finally:
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                client = scope.get("client")
                query = scope.get("query_string") or b""
                # quoted as uvicorn does it: a decoded "%0A" in the path would start a forged line
                # and with tokens a client put in the query string redacted
                path = quote(scope["path"]) + (
                    "?" + security.redact_query(query.decode("latin-1")) if query else ""
                )
                ACCESS_LOG.info(
                    '%s - "%s %s HTTP/%s" %d',
                    f"{client[0]}:{client[1]}" if client else "-",
                    scope["method"],
                    path,
                    scope.get("http_version", "1.1"),
                    status or 500,
                )

    async def _serve(self, scope, receive, send) -> None:
        receive = await gate.admit(self.state.hub, scope, receive, send)
        if receive is None:
            return  # refused before anything was read
        if scope["type"] == "http" and b"/resolve/" in (scope.get("raw_path") or b""):
            from adapterhub.server.downloads import fast_resolve

            if await fast_resolve(self.state.hub, scope, send):
                return
        if (
            scope["type"] == "http"
            and scope.get("path") == "/api/adapters/bundle"
            and scope["method"] == "GET"
        ):
            from adapterhub.server.bundle import fast_bundle

            if await fast_bundle(self.state.hub, scope, send):
                return
        await super().__call__(scope, receive, send)


def load_extensions(hub: Hub) -> list:
    """Import every module of ``EXTENSIONS`` that is installed and call its ``setup(hub)`` (hooks)."""
    mods = []
    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        if hasattr(mod, "setup"):
            mod.setup(hub)
        mods.append(mod)
    return mods


def create_app(
    settings: Settings | None = None, hub: Hub | None = None, routers: Iterable[APIRouter] = ()
) -> FastAPI:
    from adapterhub.server import downloads, hfapi, links

    hub = hub or Hub(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hfapi.requeue_pending(hub)
        yield
        hub.close()

    app = HubApp(
        title="adapterhub",
        description="A self-hostable adapter hub that speaks the Hugging Face Hub protocol.",
        lifespan=lifespan,
        docs_url=None,  # apidocs.py serves /docs from packaged assets (FastAPI's loads them from a CDN)
        redoc_url=None,
    )
    app.state.hub = hub

    @app.exception_handler(repos.HubError)
    async def _hub_error(request: Request, e: repos.HubError):
        return error_response(e.message, e.status, e.code, e.commit, request.method)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, e: UploadError):
        return error_response(e.message, e.status, e.code, None, request.method)

    @app.exception_handler(json.JSONDecodeError)
    async def _bad_json(request: Request, e: json.JSONDecodeError):
        return error_response(
            f"the request body is not valid JSON: {e}", 400, "BadRequest", None, request.method
        )

    @app.exception_handler(CsrfError)
    async def _csrf_error(request: Request, e: CsrfError):
        body = f"<!doctype html><title>Refused</title><h1>Refused</h1><p>{escape(e.message)}</p>"
        return HTMLResponse(body, status_code=e.status)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, e: AuthError):
        return error_response(
            e.message,
            e.status,
            {401: "Unauthorized", 404: "NotFound"}.get(e.status, "Forbidden"),
            None,
            request.method,
        )

    app.include_router(hfapi.api_router)
    for mod in load_extensions(hub):
        if hasattr(mod, "router"):
            app.include_router(mod.router)
    for r in routers:
        app.include_router(r)
    app.include_router(links.router)  # /{org}/{name}[/...]: after every page, before the catch-all
    app.include_router(downloads.resolve_router)  # catch-all, last
    return app

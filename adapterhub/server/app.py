"""The ASGI application: it composes the routers of the hub around the :class:`~adapterhub.server.hub.Hub` it
serves (the hub itself, its hooks and extensions live in ``hub.py``).

``create_app`` mounts the HF Hub API (``hfapi``), then the router of each module of ``hub.EXTENSIONS`` (whose
``setup(hub)`` has added its hooks), then ``create_app(routers=[...])``, then the HF-style repository URLs
(``links``) and last the catch-all download route (``downloads``), so that extension paths such as ``/`` or
``/{namespace}/{name}`` win over it. Errors are answered by the one handler that ``errors.install`` registers.
:class:`HubApp` puts the gate (``gate.admit``), the plain-ASGI bundle path and the access log in front.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import APIRouter, FastAPI

from adapterhub.server import downloads, errors, gate, hfapi, links, security
from adapterhub.server.hub import Hub, load_extensions
from adapterhub.server.settings import Settings

__all__ = ["ACCESS_LOG", "HubApp", "create_app"]

ACCESS_LOG = logging.getLogger("adapterhub.access")


class HubApp(FastAPI):
    """FastAPI, plus a plain-ASGI fast path for the most frequent request: downloading a bundle.

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
        if (
            scope["type"] == "http"
            and scope.get("path") == "/api/adapters/bundle"
            and scope["method"] == "GET"
        ):
            from adapterhub.server.bundle import fast_bundle

            if await fast_bundle(self.state.hub, scope, send):
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, hub: Hub | None = None, routers: Iterable[APIRouter] = ()
) -> FastAPI:
    hub = hub or Hub(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.requeue_pending()
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
    errors.install(app)
    app.include_router(hfapi.api_router)
    for mod in load_extensions(hub):
        if hasattr(mod, "router"):
            app.include_router(mod.router)
    for r in routers:
        app.include_router(r)
    app.include_router(links.router)  # /{org}/{name}[/...]: after every page, before the catch-all
    app.include_router(downloads.resolve_router)  # catch-all, last
    return app

"""``/docs``: the interactive OpenAPI page (Swagger UI), served from the ``swagger-ui-bundle`` package and
our own start-up script, so it works offline and under a CSP that allows the hub's own scripts only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)
ASSETS = {  # name -> media type: the only files served from the package
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
INIT_JS = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
});
"""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>adapterhub API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" type="image/png" href="/static/swagger/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger/init.js"></script>
</body></html>
"""


def _assets_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": DOCS_CSP})


@router.get("/static/swagger/{name}")
def asset(name: str) -> Response:
    cache = {"Cache-Control": "public, max-age=86400"}
    if name == "init.js":
        return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers=cache)
    if name not in ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((_assets_dir() / name).read_bytes(), media_type=ASSETS[name], headers=cache)

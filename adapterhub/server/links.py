"""Hugging Face style repository URLs, so that every address a client prints leads somewhere:
``/{org}/{name}`` (``adapterhub push`` / ``info``, huggingface_hub's ``RepoUrl``), ``/{org}/{name}/commit/{oid}``
(``commitUrl``, ``CommitInfo.commit_url``), ``/{org}/{name}/tree/{rev}`` and ``/{org}/{name}/blob/{rev}/{path}``
redirect to the web UI's pages. ``create_app`` includes this router after every other one (only the download
catch-all comes later); a first path segment that belongs to the hub itself answers 404, and a download from
a repository without namespace (``/{repo}/resolve/...``) that these patterns happen to match is served."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from adapterhub.server.errors import NotFound

router = APIRouter(include_in_schema=False)
RESERVED = frozenset(
    {
        "api",
        "adapters",
        "analysis",
        "new",
        "orgs",
        "static",
        "settings",
        "login",
        "logout",
        "upload",
        "tasks",
        "languages",
        "models",
        "docs",
    }
)


def _page(request: Request, namespace: str, name: str, suffix: str = "") -> Response:
    if name == "resolve":  # /{repo}/resolve/{rev}/...: a file of a repository without namespace
        from adapterhub.server.downloads import resolve

        return resolve(request, request.url.path.lstrip("/"))
    if namespace in RESERVED or namespace.startswith("."):
        raise NotFound(f"Not Found: {request.url.path}")
    target = f"/adapters/{quote(namespace, safe='')}/{quote(name, safe='')}{suffix}"
    return RedirectResponse(target, status_code=302)


@router.get("/{namespace}/{name}")
def repo_page(namespace: str, name: str, request: Request):
    return _page(request, namespace, name)


@router.get("/{namespace}/{name}/commit/{rev}")
@router.get("/{namespace}/{name}/tree/{rev}")
def revision_page(namespace: str, name: str, rev: str, request: Request):
    return _page(request, namespace, name, f"?rev={quote(rev, safe='')}")


@router.get("/{namespace}/{name}/blob/{rev}/{path:path}")
def file_page(namespace: str, name: str, rev: str, path: str, request: Request):
    return _page(request, namespace, name, f"/blob/{quote(rev, safe='')}/{quote(path)}")

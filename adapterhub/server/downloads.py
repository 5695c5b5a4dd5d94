"""File downloads: ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with the metadata headers that
huggingface_hub needs (``X-Repo-Commit``, ``ETag`` = sha256, ``X-Linked-Etag``, ``X-Linked-Size``, true
``Content-Length``), ``Range`` requests, and HF error codes, all answered by the catch-all route
``resolve_router``, included last by ``create_app``. A file in local storage is streamed from disk in pieces of
``_BlobResponse.chunk_size``; one in an object store is streamed through the hub or, with ``blob_redirect``,
answered by a redirect to a presigned URL.
"""

from __future__ import annotations

import os
import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from adapterhub.server import repos, security
from adapterhub.server.checks import ADAPTER_CONFIG
from adapterhub.server.errors import HubError, NotFound, RepoNotFound
from adapterhub.server.hub import Hub, get_hub
from adapterhub.server.inputs import caller_of, raw_segments

resolve_router = APIRouter()


class _BlobResponse(FileResponse):
    chunk_size = 1024 * 1024


@resolve_router.api_route("/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
def resolve(request: Request, rest: str):
    hub = get_hub(request)
    segs = raw_segments(request, "/")
    m = request.method
    if segs and segs[0] in ("datasets", "spaces"):
        raise RepoNotFound("this hub hosts model repositories only")
    parsed = _split_resolve(hub, segs)
    if parsed is None:
        raise NotFound(f"Not Found: {request.url.path}")
    repo_id, rev, path = parsed
    caller = caller_of(hub, request, cookie=True)  # the owner downloads private files from the web UI
    repo_pk, commit_oid, sha, size = repos.lookup_file(hub, caller, repo_id, rev, path)
    if m == "GET" and path in COUNTED and "range" not in request.headers:
        hub.downloads.add(repo_pk)
    headers = _file_headers(commit_oid, sha, size, rev, path)
    media = headers["Content-Type"]
    if hub.settings.blob_redirect and size >= hub.settings.blob_redirect_min_size:
        presign = getattr(hub.store, "presigned_url", None)
        if presign is not None:
            return _redirect(headers, presign(sha, hub.settings.blob_redirect_ttl, path.rsplit("/", 1)[-1]))
    local = hub.store.local_path(sha)
    if local is not None:
        try:
            st = os.stat(local)
        except FileNotFoundError:
            raise HubError(f"blob {sha} of {path} is missing from storage", 500, "BlobMissing") from None
        return _BlobResponse(local, headers=headers, media_type=media, stat_result=st)
    headers["Content-Length"] = str(size)
    if m == "HEAD":
        return Response(status_code=200, headers=headers, media_type=media)
    start, end, status = 0, size - 1, 200
    wanted = byte_range(request.headers.get("range"), size)
    if wanted == "unsatisfiable":
        headers["Content-Range"], headers["Content-Length"] = f"bytes */{size}", "0"
        return Response(status_code=416, headers=headers)
    if wanted is not None:
        (start, end), status = wanted, 206
        headers["Content-Range"], headers["Content-Length"] = (
            f"bytes {start}-{end}/{size}",
            str(end - start + 1),
        )
    try:
        blob = hub.store.open(sha, start)
    except FileNotFoundError:
        raise HubError(f"blob {sha} of {path} is missing from storage", 500, "BlobMissing") from None
    body = _iter_blob(blob, end - start + 1)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media)


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one byte range ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` of a Range header as (first, last), or
    "unsatisfiable" (a 416), or None: no header, or one answered with the whole file (several ranges, another
    unit, nonsense), as HTTP allows."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if m is None or not (m[1] or m[2]):
        return None
    if m[1]:
        first, last = int(m[1]), int(m[2]) if m[2] else size - 1
        if first >= size:
            return "unsatisfiable"
        return (first, min(last, size - 1)) if last >= first else None
    n = int(m[2])
    return (max(0, size - n), size - 1) if n and size else "unsatisfiable"


def _redirect(headers: dict[str, str], location: str) -> Response:
    """A 302 to the object store, with the file's metadata headers (sha256 ETag, X-Linked-Size, X-Repo-Commit) as
    the Hugging Face Hub sends them with its redirects to storage: clients read the metadata here and fetch the
    bytes there (without the hub's token). Never cached: the URL expires."""
    out = {**headers, "Location": location, "Cache-Control": "no-store", "Content-Length": "0"}
    return Response(status_code=302, headers=out)


COUNTED = ("config.json", ADAPTER_CONFIG)  # a GET of one of these counts as a download of the repo


def _split_resolve(hub: Hub, segs: list[str]) -> tuple[str, str, str] | None:
    """(repo_id, revision, path) of a ``/{repo}/resolve/{rev}/{path}`` URL split into decoded segments."""
    i = None
    if len(segs) >= 5 and segs[2] == "resolve":
        i = 2
    if (
        len(segs) >= 4
        and segs[1] == "resolve"
        and (i is None or not _repo_exists(hub, f"{segs[0]}/{segs[1]}"))
    ):
        i = 1
    if i is None:
        return None
    return "/".join(segs[:i]), segs[i + 1], "/".join(segs[i + 2 :])


def _file_headers(commit_oid: str, sha: str, size: int, rev: str, path: str) -> dict[str, str]:
    """The metadata headers huggingface_hub reads, and those that keep a file from running in the hub's
    origin (an attachment of an inert type, with a sandbox CSP: ``security.raw_file_headers``)."""
    return {
        **security.raw_file_headers(path),
        "X-Repo-Commit": commit_oid,
        "ETag": f'"{sha}"',
        "X-Linked-Etag": f'"{sha}"',
        "X-Linked-Size": str(size),
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable" if repos.COMMIT_RE.match(rev) else "no-cache",
    }


def _iter_blob(blob, length: int):
    with blob:
        while length > 0 and (chunk := blob.read(min(1024 * 1024, length))):
            length -= len(chunk)
            yield chunk


def _repo_exists(hub: Hub, repo_id: str) -> bool:
    with hub.db.session() as s:
        return repos.find_repo(s, repo_id) is not None

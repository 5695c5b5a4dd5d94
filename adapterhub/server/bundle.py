"""``GET /api/adapters/bundle``: resolve an identifier and send the files of the resolved commit in the same
answer, so that loading an adapter that is not cached yet costs one request instead of a resolve, a file list
and one request per file.

The answer is an uncompressed tar (``application/x-tar``; ``curl ... | tar x`` unpacks it). Its first member,
``.adapterhub-bundle.json``, says what follows::

    {"format": 1, "resolve": {...the /api/adapters/resolve answer...}, "repo_id": "org/name",
     "commit": "<40 hex>", "files": [{"path": ..., "size": ..., "sha256": ...}, ...],
     "omitted": ["paths listed but not in this tar"]}

Then one member per file of the commit, in ``files`` order, named by its path in the repository. Files larger
than ``max_file_size`` (a query parameter, default 64 MiB) are listed but omitted: the client fetches those one
by one from ``/{repo}/resolve/{commit}/{path}``, where downloads can be resumed. Errors are the resolve API's
(JSON with ``error`` and ``candidates``: 400, 404, 409); an identifier that resolves to a legacy AdapterHub
card, whose weights this hub does not host, is a 422 with the resolve answer. A bundle counts as one download
of the repository.

``have`` (comma-separated commit ids) names commits the client holds complete: if the identifier resolves to
one of them, every file is listed as omitted and ``"have": true`` is added, so revalidating a cached resolution
costs one small answer; such an answer counts no download.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sqlite3
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from adapterhub.common.wire import BUNDLE_MANIFEST_NAME as MANIFEST_NAME, COMMIT_RE
from adapterhub.server.resolve import ResolveError, query_rows, quick_resolve
from adapterhub.server.search import IdentifierParams, error_answer, get_session, resolve_answer, viewer_for
from adapterhub.server.search_models import ResolveErrorBody

DEFAULT_MAX_FILE = 64 * 1024 * 1024
IN_MEMORY = 8 * 1024 * 1024  # bundles up to this size are sent as one body, larger ones are streamed
CHUNK = 1024 * 1024

_FILES_SQL = text(
    "SELECT cf.path, b.sha256, b.size FROM commit_files cf JOIN blobs b ON b.sha256 = cf.blob_sha256 "
    "WHERE cf.commit_oid = :oid ORDER BY cf.path"
)

router = APIRouter(tags=["search"])


def _member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, 0o644, tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def bundle_chunks(hub, manifest: dict) -> Iterator[bytes]:
    """The tar of ``manifest``: the manifest itself, then every file not in ``omitted``, then the end blocks."""
    yield _manifest_member(manifest)
    yield from _file_members(hub, manifest)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def bundle_length(manifest: dict) -> int:
    """The size of the tar that :func:`bundle_chunks` yields, known before it is read (the Content-Length)."""
    return (
        len(_manifest_member(manifest))
        + sum(
            len(_member(f["path"], f["size"])) + f["size"] + len(_padding(f["size"]))
            for f in _sent_files(manifest)
        )
        + 2 * tarfile.BLOCKSIZE
    )


def _sent_files(manifest: dict) -> list[dict]:
    """The files of ``manifest`` that the tar carries (all but the omitted ones), in order."""
    omitted = set(manifest["omitted"])
    return [f for f in manifest["files"] if f["path"] not in omitted]


def _manifest_member(manifest: dict) -> bytes:
    head = json.dumps(manifest, separators=(",", ":")).encode()
    return _member(MANIFEST_NAME, len(head)) + head + _padding(len(head))


def _file_members(hub, manifest: dict) -> Iterator[bytes]:
    for f in _sent_files(manifest):
        yield _member(f["path"], f["size"])
        sent = 0
        with hub.store.open(f["sha256"]) as blob:
            while sent < f["size"]:
                chunk = blob.read(min(CHUNK, f["size"] - sent))
                if not chunk:
                    raise OSError(f"blob {f['sha256']} of {f['path']} is shorter than its recorded size")
                sent += len(chunk)
                yield chunk
        yield _padding(f["size"])


class _Bodies:
    """The file members of small bundles, kept in memory (least recently used first out, ``limit`` bytes in
    all): the files of a commit never change. An entry is used only while every blob it was read from still has
    the same identity on disk (inode, size, mtime, ctime), so a blob that was altered or replaced is read again
    (blobs in an object store are taken as they were read: one request less per file)."""

    def __init__(self, limit: int = 64 * 1024 * 1024):
        self.limit, self.size = limit, 0
        self.entries: OrderedDict[tuple, tuple[list, list, bytes]] = (
            OrderedDict()
        )  # key -> paths, identity, body
        self.lock = threading.Lock()

    def cached(self, manifest: dict) -> bytes | None:
        """The file members of ``manifest`` if they are in memory and every blob is unchanged (a few ``stat``)."""
        key = (manifest["commit"], tuple(manifest["omitted"]))
        with self.lock:
            known = self.entries.get(key)
        if known is None:
            return None
        paths, identity, body = known
        try:
            if [_identity(p) for p in paths] != identity:
                return None
        except FileNotFoundError:
            return None
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
        return body

    def get(self, hub, manifest: dict) -> bytes:
        body = self.cached(manifest)
        if body is not None:
            return body
        key = (manifest["commit"], tuple(manifest["omitted"]))
        paths = [hub.store.local_path(f["sha256"]) for f in _sent_files(manifest)]
        # an object store (S3): nothing to stat; its objects are named by their sha256 and never rewritten by the
        # hub, and clients check every file's sha256 against the manifest
        paths = [] if any(p is None for p in paths) else [os.fspath(p) for p in paths]
        identity = [_identity(p) for p in paths]
        body = b"".join(_file_members(hub, manifest))
        if [_identity(p) for p in paths] == identity and len(body) <= self.limit // 4:
            with self.lock:
                old = self.entries.pop(key, None)
                self.size += len(body) - (len(old[2]) if old else 0)
                self.entries[key] = (paths, identity, body)
                while self.size > self.limit:
                    self.size -= len(self.entries.popitem(last=False)[1][2])
        return body


def _identity(path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns  # ctime: also a write that put mtime back


_BODIES = _Bodies()


def small_bundle(hub, manifest: dict, body: bytes | None = None) -> list[bytes]:
    """The tar of a bundle that is sent from memory, in three pieces (not joined: that would copy the files);
    ``body``: its file members, if already at hand."""
    body = body if body is not None else _BODIES.get(hub, manifest)
    return [_manifest_member(manifest), body, b"\0" * (2 * tarfile.BLOCKSIZE)]


def prepare(
    s: Session, viewer_of, p: IdentifierParams, max_file_size: int, quick: bool = True
) -> dict | JSONResponse:
    """The manifest of the bundle for these parameters, or the error answer: the resolve API's
    (:func:`search.resolve_answer`; ``quick=False``: the caller has already tried :func:`quick_manifest`), or a
    422 with the answer for a legacy card whose weights are not hosted here."""
    body = resolve_answer(s, p, viewer_of, quick)
    if not isinstance(body, dict):
        return body
    if not body["downloadable"] or not body["commit"]:
        return JSONResponse(body, status_code=422)
    return _manifest(s, body, max_file_size)


def quick_manifest(conn, identifier: str, max_file_size: int, model_name: str | None = None) -> dict | None:
    """The manifest for the common case that ``resolve.quick_resolve`` answers (a public ``org/name``); ``conn``
    is a Session, a Connection or SQLite's DBAPI connection. None: ask :func:`prepare`."""
    body = quick_resolve(conn, identifier, model_name)
    return None if body is None else _manifest(conn, body, max_file_size)


def _manifest(conn, body: dict, max_file_size: int) -> dict:
    files = [
        {"path": p, "sha256": sha, "size": int(size)}
        for p, sha, size in query_rows(conn, _FILES_SQL, {"oid": body["commit"]})
    ]
    return {
        "format": 1,
        "resolve": body,
        "repo_id": body["repo_id"],
        "commit": body["commit"],
        "files": files,
        "omitted": [f["path"] for f in files if f["size"] > max_file_size],
    }


def parse_have(value: str | None) -> tuple[str, ...] | None:
    """The ``have`` parameter: up to 64 comma-separated commit ids (40 hex digits); None if malformed."""
    if not value:
        return ()
    commits = tuple(value.split(","))
    if len(commits) > 64 or not all(COMMIT_RE.match(c) for c in commits):
        return None
    return commits


def with_have(manifest: dict, have: tuple[str, ...]) -> dict:
    """``manifest``, with every file left out when the client holds its commit already (``have``): the answer
    then only confirms the resolution, and counts no download."""
    if manifest["commit"] not in have:
        return manifest
    return {**manifest, "omitted": [f["path"] for f in manifest["files"]], "have": True}


def _sent_size(manifest: dict) -> int:
    return sum(f["size"] for f in _sent_files(manifest))


def _headers(manifest: dict) -> dict[str, str]:
    return {
        "X-Repo-Commit": manifest["commit"],
        "Cache-Control": "no-store",
        "Content-Type": "application/x-tar",
    }


@router.get(
    "/api/adapters/bundle",
    summary="Resolve an identifier and download the files of its commit (tar)",
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-tar": {}},
            "description": "tar: `.adapterhub-bundle.json` (resolve answer, file list with "
            "sha256), then the files",
        },
        400: {"model": ResolveErrorBody},
        404: {"model": ResolveErrorBody},
        409: {"model": ResolveErrorBody, "description": "ambiguous: the candidates are listed"},
        422: {"description": "a legacy card whose weights are not hosted here"},
    },
)
def api_bundle(
    request: Request,
    p: IdentifierParams = Depends(),
    max_file_size: int = Query(DEFAULT_MAX_FILE, ge=0, description="larger files are listed but not sent"),
    have: str | None = Query(
        None,
        description="comma-separated commit ids the client holds complete: if the "
        "identifier resolves to one of them, no file is sent",
    ),
    s: Session = Depends(get_session),
):
    hub = request.app.state.hub
    held = parse_have(have)
    if held is None:
        return error_answer(
            ResolveError(400, f"have={have!r}: expected up to 64 commit ids (40 hex digits), comma-separated")
        )
    manifest = prepare(s, lambda: viewer_for(request, s), p, max_file_size)
    if not isinstance(manifest, dict):
        return manifest
    manifest = with_have(manifest, held)
    # the download is counted after the answer went out
    count = None if manifest.get("have") else BackgroundTask(_count, hub, manifest["repo_id"])
    if _sent_size(manifest) <= IN_MEMORY:
        return Response(b"".join(small_bundle(hub, manifest)), headers=_headers(manifest), background=count)
    headers = {**_headers(manifest), "Content-Length": str(bundle_length(manifest))}  # for progress bars
    return StreamingResponse(bundle_chunks(hub, manifest), headers=headers, background=count)


async def _count(hub, repo_id: str) -> None:
    hub.downloads.add(repo_id)  # in memory: no worker thread needed (a plain function would get one)


async def fast_bundle(hub, scope, send) -> bool:
    """``GET /api/adapters/bundle`` in plain ASGI (no routing or dependency injection) when the answer is a small
    bundle; False lets the route above answer (errors, large bundles, odd parameters). Four steps: read the query
    string; find the manifest on the event loop (SQLite's own reader) and, when the files are in memory, the whole
    answer there; else make it in a worker thread; send it."""
    asked = _parse_query(scope)
    if asked is None:
        return False
    found = _quick_on_loop(hub, asked) if asked.quick else None
    answer = _answer_from_memory(hub, found, asked.held)
    if answer is None:
        answer = await run_in_threadpool(_answer_in_thread, hub, scope, asked, found)
    if answer is None:
        return False
    manifest, parts = answer
    await _send_small(send, manifest, parts)
    if not manifest.get("have"):
        hub.downloads.add(manifest["repo_id"])
    return True


_PARAMS = ("identifier", "model_name", "config", "version", "max_file_size", "have")


@dataclasses.dataclass(frozen=True)
class _Asked:
    """A bundle request as the fast path reads it."""

    params: dict[str, str]  # identifier, and model_name, config, version where given
    max_file_size: int
    held: tuple[str, ...]  # have=

    @property
    def quick(self) -> bool:
        """Whether :func:`quick_manifest` may answer: one light query, no ORM session."""
        return self.params.keys() <= {"identifier", "model_name"}

    def identifier_params(self) -> IdentifierParams:
        return IdentifierParams(
            **{k: self.params.get(k) for k in ("identifier", "model_name", "config", "version")}
        )


def _parse_query(scope) -> _Asked | None:
    """The parameters of the request, or None where the route should answer: an unknown or repeated parameter, no
    identifier, a malformed ``max_file_size`` or ``have`` (the route explains)."""
    params: dict[str, str] = {}
    for key, value in parse_qsl((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True):
        if key in params or key not in _PARAMS:
            return None
        params[key] = value
    if not params.get("identifier"):
        return None
    size = params.pop("max_file_size", str(DEFAULT_MAX_FILE))
    held = parse_have(params.pop("have", None))
    if not size.isascii() or not size.isdigit() or held is None:
        return None
    return _Asked(params, int(size), held)


def _answer_from_memory(hub, found: dict | None, held: tuple[str, ...]) -> tuple[dict, list[bytes]] | None:
    """The whole answer without a worker thread, when the manifest is known and its files are not needed (``have``)
    or are in memory (``_BODIES``); else None."""
    if found is None:
        return None
    manifest = with_have(found, held)
    if _sent_size(manifest) > IN_MEMORY:
        return None
    body = b"" if manifest.get("have") else _BODIES.cached(manifest)
    return None if body is None else (manifest, small_bundle(hub, manifest, body))


def _answer_in_thread(hub, scope, asked: _Asked, found: dict | None) -> tuple[dict, list[bytes]] | None:
    """The answer made in a worker thread: the manifest (``found`` on the loop, or the quick query through the
    pool, or the full resolution), then the files read into memory. None for an error or a large bundle: the route
    answers those."""
    manifest = found if found is not None else _lookup(hub, scope, asked)
    if not isinstance(manifest, dict):
        return None
    manifest = with_have(manifest, asked.held)
    if _sent_size(manifest) > IN_MEMORY:
        return None
    return manifest, small_bundle(hub, manifest)


def _lookup(hub, scope, asked: _Asked) -> dict | JSONResponse:
    manifest = None
    if asked.quick:
        with hub.db.engine.connect() as conn:
            manifest = quick_manifest(
                conn, asked.params["identifier"], asked.max_file_size, asked.params.get("model_name")
            )
    if manifest is None:
        with hub.db.session() as s:
            # the quick query was tried above where it applies
            viewer_of = functools.partial(viewer_for, Request(scope), s)
            manifest = prepare(s, viewer_of, asked.identifier_params(), asked.max_file_size, quick=False)
    return manifest


async def _send_small(send, manifest: dict, parts: list[bytes]) -> None:
    headers = {**_headers(manifest), "Content-Length": str(sum(map(len, parts)))}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i + 1 < len(parts)})


def _quick_on_loop(hub, asked: _Asked) -> dict | None:
    """The quick manifest on the event loop, through the database's own reader (SQLite in WAL mode: its readers do
    not wait for writers; no SQLAlchemy statement layer, no thread hop). None when there is no such reader, the
    quick query does not answer, or the database is busy: a worker thread then asks again, and may wait. Reading
    files or asking another database always happens in a worker thread."""
    with hub.db.loop_read() as reader:
        if reader is None:
            return None
        try:
            return quick_manifest(
                reader, asked.params["identifier"], asked.max_file_size, asked.params.get("model_name")
            )
        except sqlite3.OperationalError as error:
            if _busy(error):
                return None
            raise


def _busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return str(error).startswith(("database is locked", "database table is locked", "database is busy"))

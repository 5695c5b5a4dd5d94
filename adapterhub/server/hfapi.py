"""The Hugging Face Hub wire protocol (the subset that huggingface_hub, transformers, peft and adapters
use): model info, tree, refs, commits, list, create/delete repo, settings, preupload ("regular" for every
file), the NDJSON commit endpoint, branches, tags, whoami. File downloads (``/{repo}/resolve/...``) are in
``downloads.py``.

Revisions and paths in URLs are percent-encoded per segment (``refs%2Fpr%2F1``), so the model routes
split the *raw* path first and decode each segment after (see ../shared/docs/hf-protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from adapterhub.server import commits, repos
from adapterhub.server.auth import Caller, readable_repos, require_write
from adapterhub.server.checks import ADAPTER_CONFIG, parse_card
from adapterhub.server.commits import Op
from adapterhub.server.errors import (
    AuthError,
    BadRequest,
    EntryNotFound,
    HubError,
    NotFound,
    PayloadTooLarge,
    RepoNotFound,
    RevisionNotFound,
    UploadError,
)
from adapterhub.server.hub import Hub, get_hub
from adapterhub.server.inputs import base_url, caller_of, raw_segments
from adapterhub.server.models import Account, Commit, Ref, Repo, Validation
from adapterhub.server.repos import serialize_time
from adapterhub.server.storage import read_head
from adapterhub.server.uploads import Staging, clean_path, refuse_pickle_name

api_router = APIRouter()
ACTIONS = {"revision", "tree", "refs", "preupload", "commit", "commits", "branch", "tag", "settings", "validation",
           "paths-info", "auth-check"}  # fmt: skip
LFS_SUFFIXES = (".safetensors", ".gguf", ".onnx", ".h5", ".msgpack", ".zip")
TREE_PAGE = 1000
PREUPLOAD_BODY_MAX = 16 * 1024 * 1024  # a file list of up to max_files entries


def _is_lfs(path: str, size: int) -> bool:
    return size >= 10 * 1024 * 1024 or path.lower().endswith(LFS_SUFFIXES)


def _int(v: str | None, default: int) -> int:
    if not v:
        return default
    try:
        n = max(0, int(v))
    except ValueError:
        raise BadRequest(f"not a number: {v!r}") from None
    if n > MAX_NUMBER:
        raise BadRequest(f"number out of range: {v} (at most {MAX_NUMBER})")
    return n


MAX_NUMBER = 2**53
JSON_BODY_MAX = 1024 * 1024  # bodies of the JSON endpoints (repo settings, file lists, ...)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body too large ({declared} bytes, at most {limit})")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body too large (more than {limit} bytes)")
    return bytes(raw)


async def json_object(request: Request, limit: int = JSON_BODY_MAX, empty_ok: bool = False) -> dict:
    """The request body as a JSON object, read with a bound; 400 for anything else (a list, invalid UTF-8
    or JSON), 413 when it is longer than ``limit``."""
    raw = await read_body(request, limit)
    if empty_ok and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _field(obj: dict, key: str, kind: type | tuple, default=None, where: str = "request body"):
    """``obj[key]`` if it has type ``kind`` (missing or null: ``default``), else a 400 naming the field."""
    v = obj.get(key)
    if v is None:
        return default
    if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, (int, float))):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise BadRequest(f"{where}: '{key}' must be {names}, not {type(v).__name__}")
    return v


def _truthy(v: str | None) -> bool:
    return v is not None and v.strip().lower() in ("1", "true", "yes")


# --- account endpoints --------------------------------------------------------------------------------


@api_router.get("/api/whoami-v2")
def whoami(request: Request):
    hub = get_hub(request)
    caller = caller_of(hub, request)
    if caller.account is None:
        raise AuthError("Invalid user token: no token given", 401)
    with hub.db.session() as s:
        orgs = s.scalars(select(Account).where(Account.id.in_(list(caller.orgs) or [-1]))).all()
        org_list = [
            {"type": "org", "name": o.name, "fullname": o.fullname or o.name, "roleInOrg": caller.orgs[o.id]}
            for o in orgs
        ]
    a = caller.account
    return {
        "type": "user",
        "id": str(a.id),
        "name": a.name,
        "fullname": a.fullname or a.name,
        "email": a.email,
        "emailVerified": bool(a.email),
        "isPro": False,
        "canPay": False,
        "avatarUrl": "",
        "orgs": org_list,
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": caller.token_name, "role": caller.scope},
        },
    }


@api_router.post("/api/validate-yaml")
async def validate_yaml(request: Request):
    try:
        content = (await json_object(request)).get("content", "")
    except HubError as e:
        return JSONResponse({"errors": [{"message": f"body must be JSON with 'content' ({e.message})"}],
                             "warnings": []}, e.status)  # fmt: skip
    _, errors = parse_card(content.encode() if isinstance(content, str) else b"")
    return JSONResponse({"errors": [{"message": e} for e in errors], "warnings": []}, 400 if errors else 200)


@api_router.post("/api/repos/create")
async def create_repo(request: Request):
    hub = get_hub(request)
    caller = caller_of(hub, request)
    if caller.account is None:
        raise AuthError("authentication required to create a repository", 401)
    body = await json_object(request)
    if body.get("type", "model") not in ("model", None):
        raise BadRequest("this hub hosts model repositories only")
    name, org = _field(body, "name", str, ""), _field(body, "organization", str)
    repo_id = f"{org}/{name}" if org else name
    private = bool(body.get("private")) or body.get("visibility") == "private"
    repo, created = await run_in_threadpool(repos.create_repo, hub, caller, repo_id, private)
    url = f"{base_url(hub, request)}/{repo.repo_id}"
    if not created:
        raise HubError(
            f"You already created this model repo: {repo.repo_id}", 409, "RepoExists", extra={"url": url}
        )
    return {"url": url, "name": repo.repo_id, "id": str(repo.id)}


@api_router.delete("/api/repos/delete")
async def delete_repo(request: Request):
    hub = get_hub(request)
    caller = caller_of(hub, request)
    if caller.account is None:
        raise AuthError("authentication required to delete a repository", 401)
    body = await json_object(request)
    name, org = _field(body, "name", str, ""), _field(body, "organization", str)
    await run_in_threadpool(repos.delete_repo, hub, caller, f"{org}/{name}" if org else name)
    return Response(status_code=200)


for _kind in ("datasets", "spaces"):

    @api_router.api_route(
        f"/api/{_kind}/{{rest:path}}",
        methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
        include_in_schema=False,
    )
    def _other_types(request: Request, rest: str, _kind=_kind):
        raise RepoNotFound(f"this hub hosts model repositories only ({_kind} are not supported)")


# --- model listing and info ---------------------------------------------------------------------------


@api_router.get("/api/models")
def list_models(request: Request):
    hub = get_hub(request)
    caller = caller_of(hub, request)
    q = request.query_params
    limit = min(_int(q.get("limit"), 100), 1000)  # pages of 100 unless asked (each entry reads its card)
    offset = _int(q.get("cursor"), 0)
    sort = q.get("sort") or "lastModified"
    descending = q.get("direction", "-1") != "1"
    filters = q.getlist("filter")
    expand = q.getlist("expand")
    full = _truthy(q.get("full")) or bool(expand)
    col = {"lastModified": Repo.updated_at, "createdAt": Repo.created_at, "downloads": Repo.downloads,
           "id": Repo.name, "modelId": Repo.name}.get(sort, Repo.updated_at)  # fmt: skip
    with hub.db.session() as s:
        stmt = select(Repo).where(Repo.repo_type == "model")
        readable = readable_repos(caller)
        if readable is not None:
            stmt = stmt.where(readable)
        if q.get("author"):
            stmt = stmt.where(Repo.namespace == q["author"])
        if q.get("search"):
            term = f"%{q['search'].lower()}%"
            stmt = stmt.where(func.lower(Repo.namespace + "/" + Repo.name).like(term))
        stmt = stmt.order_by(col.desc() if descending else col.asc(), Repo.id)
        out: list[dict] = []
        pos = offset
        while len(out) < limit + 1:
            batch = s.scalars(stmt.offset(pos).limit(200)).all()
            if not batch:
                break
            for repo in batch:
                pos += 1
                info = _model_info(s, hub, repo, repos.resolve_revision(s, repo, "main"), blobs=False)
                if filters and not all(f in info["tags"] or f == info.get("library_name") for f in filters):
                    continue
                out.append(info if full else {k: info[k] for k in _LIST_KEYS if k in info})
                if len(out) > limit:
                    break
    headers = {}
    if len(out) > limit:
        out = out[:limit]
        nxt = request.url.include_query_params(cursor=str(pos - 1))
        headers["Link"] = f'<{nxt}>; rel="next"'
    if expand:
        out = [{k: v for k, v in i.items() if k in ("id", "_id", *expand)} for i in out]
    return JSONResponse(out, headers=headers)


_LIST_KEYS = ("_id", "id", "modelId", "author", "likes", "downloads", "private", "tags", "library_name",
              "pipeline_tag", "createdAt", "lastModified", "sha", "gated", "disabled", "validation")  # fmt: skip


def _model_info(s, hub: Hub, repo: Repo, c: Commit, blobs: bool) -> dict[str, Any]:
    tree = repos.commit_tree(c)
    siblings = []
    for p, f in tree.items():
        sib: dict[str, Any] = {"rfilename": p}
        if blobs:
            sib.update({"size": f.blob.size, "blobId": f.blob.git_oid})
            if _is_lfs(p, f.blob.size):
                sib["lfs"] = {"sha256": f.blob.sha256, "size": f.blob.size, "pointerSize": 134}
        siblings.append(sib)
    card, config, tags, library = None, None, [], None
    readme = _blob_head(hub, repo, tree.get("README.md"), 256 * 1024)
    if readme is not None:
        meta, _ = parse_card(readme)
        card = meta or None
        t = meta.get("tags") if meta else None
        tags += [t] if isinstance(t, str) else [x for x in (t or []) if isinstance(x, str)]
        if isinstance(meta.get("library_name"), str):
            library = meta["library_name"]
    adapter_cfg = _json_file(hub, repo, tree.get(ADAPTER_CONFIG))
    model_cfg = _json_file(hub, repo, tree.get("config.json"))
    if isinstance(adapter_cfg, dict):
        dialect = "peft" if "peft_type" in adapter_cfg else "adapters"
        library = library or dialect
        config = {
            "adapter": {
                k: adapter_cfg.get(k)
                for k in (
                    "peft_type",
                    "base_model_name_or_path",
                    "model_name",
                    "model_type",
                    "model_class",
                    "task_type",
                )
                if k in adapter_cfg
            }
        }
        tags.append(dialect)
    if isinstance(model_cfg, dict):
        config = dict(config or {})
        config.update({k: model_cfg[k] for k in ("model_type", "architectures") if k in model_cfg})
        library = library or "transformers"
        if "model_type" in model_cfg:
            tags.append(str(model_cfg["model_type"]))
    v = s.get(Validation, c.oid)
    info: dict[str, Any] = {
        "_id": str(repo.id),
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.namespace or None,
        "sha": c.oid,
        "lastModified": serialize_time(c.created_at),
        "createdAt": serialize_time(repo.created_at),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": 0,
        "tags": list(dict.fromkeys(tags)),
        "library_name": library,
        "pipeline_tag": None,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(f.blob.size for f in tree.values()),
        "validation": _validation_json(v),
    }
    if card is not None:
        info["cardData"] = card
    if config is not None:
        info["config"] = config
    for hook in list(hub.model_info_hooks):
        try:
            hook(info, repo, c)
        except Exception:  # noqa: BLE001
            pass
    return info


def _json_file(hub: Hub, repo: Repo, f) -> Any:
    if f is None or f.blob.size > 1024 * 1024:
        return None
    content = _blob_head(hub, repo, f, f.blob.size)
    try:
        return None if content is None else json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _blob_head(hub: Hub, repo: Repo, f, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a repo file for its metadata, or None (no such file; its blob missing from
    the store: :func:`read_head`)."""
    if f is None:
        return None
    return read_head(hub.store, f.blob.sha256, limit, f"repo {repo.namespace}/{repo.name}: {f.path}")


def _validation_json(v: Validation | None) -> dict | None:
    if v is None:
        return None
    return {"status": v.status, "errors": v.errors or [], "method": v.method, "num_params": v.num_params,
            "updatedAt": serialize_time(v.updated_at), "report": v.report or {}}  # fmt: skip


# --- /api/models/{repo}/... ---------------------------------------------------------------------------


def _split_model_path(s, segs: list[str]) -> tuple[str, list[str]]:
    """(repo_id, rest): a two-part id unless the second segment is an action and no such repo exists."""
    if len(segs) >= 2 and (len(segs) == 2 or segs[2] in ACTIONS):
        if not (segs[1] in ACTIONS and repos.find_repo(s, f"{segs[0]}/{segs[1]}") is None):
            return f"{segs[0]}/{segs[1]}", segs[2:]
    return segs[0], segs[1:]


@api_router.api_route(
    "/api/models/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
)
async def model_routes(request: Request, rest: str):
    """``/api/models/{repo}[/revision|tree|refs|commits|validation|preupload|commit|branch|tag|settings|paths-info/...]``
    (the Hugging Face Hub API; revisions may be percent-encoded, so the raw path is parsed here)."""
    hub = get_hub(request)
    segs = raw_segments(request, "/api/models/")
    with hub.db.session() as s:
        repo_id, tail = _split_model_path(s, segs)
    action = tail[0] if tail else ""
    arg = "/".join(tail[1:])
    m = request.method
    if m == "GET" and action in ("", "revision"):
        return await run_in_threadpool(_info, hub, request, repo_id, arg or "main")
    if m == "GET" and action == "tree" and arg:
        return await run_in_threadpool(_tree, hub, request, repo_id, tail[1], "/".join(tail[2:]))
    if m == "GET" and action == "refs":
        return await run_in_threadpool(_refs, hub, request, repo_id)
    if m == "GET" and action == "commits" and arg:
        return await run_in_threadpool(_commits, hub, request, repo_id, arg)
    if m == "GET" and action == "auth-check":
        return await run_in_threadpool(_auth_check, hub, request, repo_id)
    if m == "GET" and action == "validation":
        return await run_in_threadpool(_validation, hub, request, repo_id, arg or "main")
    if m == "POST" and action == "paths-info" and arg:
        ctype = request.headers.get("content-type", "")
        if "multipart/" in ctype:
            raise HubError("send the paths as JSON or as a urlencoded form", 415, "BadRequest")
        if "form" in ctype:
            raw = await read_body(request, PREUPLOAD_BODY_MAX)
            paths = [v for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if k == "paths"]
        else:
            paths = _field(await json_object(request), "paths", list, [])
            if not all(isinstance(p, str) for p in paths):
                raise BadRequest("request body: 'paths' must be a list of strings")
        return await run_in_threadpool(_paths_info, hub, request, repo_id, arg, paths)
    if m == "POST" and action == "preupload" and arg:
        return await _preupload(hub, request, repo_id, arg)
    if m == "POST" and action == "commit" and arg:
        return await _commit(hub, request, repo_id, arg)
    if action in ("branch", "tag") and arg and m in ("POST", "DELETE"):
        body = await json_object(request, empty_ok=True) if m == "POST" else {}
        return await run_in_threadpool(_ref_change, hub, request, repo_id, action, arg, m, body)
    if m == "PUT" and action == "settings":
        caller = caller_of(hub, request)
        body = await json_object(request)
        private = body.get("private")
        if body.get("visibility") in ("private", "public"):
            private = body["visibility"] == "private"
        await run_in_threadpool(repos.update_repo_settings, hub, caller, repo_id, private)
        return {"ok": True}
    raise NotFound(f"unknown endpoint {request.method} {request.url.path}")


def _info(hub: Hub, request: Request, repo_id: str, rev: str):
    caller = caller_of(hub, request)
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        c = repos.resolve_revision(s, repo, rev)
        info = _model_info(s, hub, repo, c, blobs=_truthy(request.query_params.get("blobs")))
    expand = request.query_params.getlist("expand")
    if expand:
        info = {k: v for k, v in info.items() if k in ("id", "_id", *expand)}
    return JSONResponse(info)


def _auth_check(hub: Hub, request: Request, repo_id: str):
    caller = caller_of(hub, request)
    with hub.db.session() as s:
        repos.get_repo(s, caller, repo_id)
    return JSONResponse({"ok": True})


def _validation(hub: Hub, request: Request, repo_id: str, rev: str):
    caller = caller_of(hub, request)
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        c = repos.resolve_revision(s, repo, rev)
        out = _validation_json(s.get(Validation, c.oid)) or {"status": "unknown"}
    return JSONResponse({"id": repo_id, "commit": c.oid, **out})


def _tree(hub: Hub, request: Request, repo_id: str, rev: str, path: str):
    caller = caller_of(hub, request)
    q = request.query_params
    recursive = _truthy(q.get("recursive"))
    expand = _truthy(q.get("expand"))
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        c = repos.resolve_revision(s, repo, rev)
        files = {p: f.blob for p, f in repos.commit_tree(c).items()}
    path = path.strip("/")
    prefix = path + "/" if path else ""
    entries: dict[str, dict] = {}
    for p, b in files.items():
        if not p.startswith(prefix):
            continue
        rel = p[len(prefix) :]
        parts = rel.split("/")
        for i in range(1, len(parts)):  # folders on the way
            d = prefix + "/".join(parts[:i])
            if (recursive or i == 1) and d not in entries:
                entries[d] = {"type": "directory", "oid": _dir_oid(d, files), "size": 0, "path": d}
            if not recursive:
                break
        if recursive or len(parts) == 1:
            e = {"type": "file", "oid": b.git_oid, "size": b.size, "path": p}
            if _is_lfs(p, b.size):
                e["lfs"] = {"oid": b.sha256, "size": b.size, "pointerSize": 134}
            entries[p] = e
    if path and not entries:
        raise EntryNotFound(f"{path} does not exist at revision {rev}", commit=c.oid)
    items = [entries[k] for k in sorted(entries)]
    page = 50 if expand else TREE_PAGE
    start = _int(q.get("cursor"), 0)
    headers = {"X-Repo-Commit": c.oid}
    if start + page < len(items):
        headers["Link"] = f'<{request.url.include_query_params(cursor=str(start + page))}>; rel="next"'
    items = items[start : start + page]
    if expand:  # the last commit that changed each file of this page
        with hub.db.session() as s:
            last = repos.last_commits(
                s, c, {e["path"]: files[e["path"]].sha256 for e in items if e["type"] == "file"}
            )
            for e in items:
                if e["path"] in last:
                    lc = last[e["path"]]
                    e["lastCommit"] = {"id": lc.oid, "title": lc.title, "date": serialize_time(lc.created_at)}
    return JSONResponse(items, headers=headers)


def _dir_oid(d: str, files: dict) -> str:
    h = hashlib.sha1(d.encode())
    for p in sorted(files):
        if p.startswith(d + "/"):
            h.update(files[p].git_oid.encode())
    return h.hexdigest()


def _paths_info(hub: Hub, request: Request, repo_id: str, rev: str, paths: list[str]):
    caller = caller_of(hub, request)
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        c = repos.resolve_revision(s, repo, rev)
        tree = repos.commit_tree(c)
        out = []
        for p in paths:
            p = p.strip("/")
            if p in tree:
                b = tree[p].blob
                e = {"type": "file", "oid": b.git_oid, "size": b.size, "path": p}
                if _is_lfs(p, b.size):
                    e["lfs"] = {"oid": b.sha256, "size": b.size, "pointerSize": 134}
                out.append(e)
            elif any(q.startswith(p + "/") for q in tree):
                out.append(
                    {
                        "type": "directory",
                        "oid": _dir_oid(p, {q: f.blob for q, f in tree.items()}),
                        "size": 0,
                        "path": p,
                    }
                )
    return JSONResponse(out)


def _refs(hub: Hub, request: Request, repo_id: str):
    caller = caller_of(hub, request)
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        refs = s.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.name)).all()
        out: dict[str, Any] = {"branches": [], "tags": [], "converts": []}
        for r in refs:
            key = "branches" if r.kind == "branch" else "tags"
            out[key].append(
                {
                    "name": r.name,
                    "ref": f"refs/{'heads' if r.kind == 'branch' else 'tags'}/{r.name}",
                    "targetCommit": r.commit_oid,
                }
            )
    if _truthy(request.query_params.get("include_prs")):
        out["pullRequests"] = []
    return JSONResponse(out)


def _commits(hub: Hub, request: Request, repo_id: str, rev: str):
    caller = caller_of(hub, request)
    out = []
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        c: Commit | None = repos.resolve_revision(s, repo, rev)
        while c is not None and len(out) < 1000:
            author = s.get(Account, c.author_id) if c.author_id else None
            out.append({"id": c.oid, "title": c.title, "message": c.message, "date": serialize_time(c.created_at),
                        "authors": [{"user": author.name}] if author else []})  # fmt: skip
            c = s.get(Commit, c.parent_oid) if c.parent_oid else None
    return JSONResponse(out)


def _ref_change(hub: Hub, request: Request, repo_id: str, kind: str, arg: str, method: str, body: dict):
    caller = caller_of(hub, request)
    if kind == "branch":
        if method == "POST":
            oid = repos.create_ref(hub, caller, repo_id, "branch", arg, _field(body, "startingPoint", str),
                                   exist_ok=_truthy(str(body.get("exist_ok", ""))))  # fmt: skip
            return {"name": arg, "targetCommit": oid}
        repos.delete_ref(hub, caller, repo_id, "branch", arg)
        return {"ok": True}
    if method == "POST":  # POST /tag/{revision} {"tag": name, "message": ...}
        name = _field(body, "tag", str, "")
        oid = repos.create_ref(hub, caller, repo_id, "tag", name, arg, _field(body, "message", str, ""))
        return {"name": name, "targetCommit": oid}
    repos.delete_ref(hub, caller, repo_id, "tag", arg)
    return {"ok": True}


# --- uploads ------------------------------------------------------------------------------------------


def _check_writable(hub: Hub, caller: Caller, repo_id: str, rev: str) -> dict[str, tuple[str, str]]:
    """Raises unless ``caller`` may commit to branch ``rev`` of ``repo_id``; returns path -> (git oid, sha256) at
    rev."""
    with hub.db.session() as s:
        repo = repos.get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        ref = s.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.kind == "branch", Ref.name == rev))
        if ref is None:
            raise RevisionNotFound(f"Invalid rev id: {rev} (no such branch in {repo_id})")
        return {
            p: (f.blob.git_oid, f.blob.sha256)
            for p, f in repos.commit_tree(s.get(Commit, ref.commit_oid)).items()
        }


async def _preupload(hub: Hub, request: Request, repo_id: str, rev: str):
    if _truthy(request.query_params.get("create_pr")):
        raise BadRequest("pull requests are not supported by this hub")
    caller = caller_of(hub, request)
    current = await run_in_threadpool(_check_writable, hub, caller, repo_id, rev)
    body = await json_object(request, limit=PREUPLOAD_BODY_MAX)
    out = []
    for f in _field(body, "files", list, []):
        if not isinstance(f, dict):
            raise BadRequest("request body: each entry of 'files' must be an object")
        path = clean_path(_field(f, "path", str, "", "files entry"))
        refuse_pickle_name(path)
        size = _field(f, "size", int, 0, f"files entry {path}")
        if size > hub.limits.max_file_size:
            raise UploadError(
                f"{path}: file too large ({size} bytes; the limit is {hub.limits.max_file_size} bytes)",
                413,
                "FileTooLarge",
            )
        entry = {"path": f.get("path"), "uploadMode": "regular", "shouldIgnore": False}
        # the current file's oid lets clients skip unchanged content; not for a file whose blob was lost from
        # the store, so that a client sends it again and the commit mends the repo
        if path in current and await run_in_threadpool(hub.store.exists, current[path][1]):
            entry["oid"] = current[path][0]
        out.append(entry)
    return {"files": out, "commitOid": None}


async def _commit(hub: Hub, request: Request, repo_id: str, rev: str):
    if _truthy(request.query_params.get("create_pr")):
        raise BadRequest("pull requests are not supported by this hub")
    caller = caller_of(hub, request)
    await run_in_threadpool(_check_writable, hub, caller, repo_id, rev)
    max_line = hub.limits.max_file_size * 4 // 3 + 64 * 1024
    staging = Staging(hub.tmp_dir, hub.limits)
    try:
        header: dict = {}
        ops: list[Op] = []
        buf = bytearray()

        def handle(line: bytes) -> None:
            if not line.strip():
                return
            try:
                obj = json.loads(line)
                key, value = obj["key"], obj["value"]
            except (ValueError, KeyError, TypeError) as e:  # ValueError: bad JSON or UTF-8
                raise UploadError(f"malformed NDJSON commit line: {e}") from e
            if not isinstance(value, dict):
                raise UploadError(f"malformed NDJSON commit line: the value of {key!r} must be an object")
            if key == "header":
                for k in ("summary", "description", "parentCommit"):
                    _field(value, k, str, where="commit header")
                header.update(value)
                return
            path = _field(value, "path", str, "", f"commit line {key!r}")
            if key == "file":
                path = clean_path(path)
                if value.get("encoding", "base64") != "base64":
                    raise UploadError(f"{path}: unsupported encoding {value.get('encoding')!r}")
                refuse_pickle_name(path)
                try:
                    data = base64.b64decode(_field(value, "content", str, "", path), validate=True)
                except (binascii.Error, ValueError) as e:
                    raise UploadError(f"{path}: content is not valid base64") from e
                ops.append(Op("add", path, staged=staging.add_bytes(path, data)))
            elif key == "lfsFile":
                path = clean_path(path)
                refuse_pickle_name(path)
                ops.append(Op("add", path, sha256=_field(value, "oid", str, "", path).lower()))
            elif key == "deletedFile":
                ops.append(Op("delete", clean_path(path)))
            elif key == "deletedFolder":
                ops.append(Op("delete_folder", clean_path(path.rstrip("/"))))
            else:
                raise UploadError(f"unknown commit operation {key!r}")

        async for chunk in request.stream():
            buf += chunk
            while (nl := buf.find(b"\n")) >= 0:
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                await run_in_threadpool(handle, line)
            if len(buf) > max_line:
                raise UploadError(
                    f"a commit line is longer than {max_line} bytes (file over the size limit?)",
                    413,
                    "FileTooLarge",
                )
        if buf:
            await run_in_threadpool(handle, bytes(buf))
        title = header.get("summary") or "Upload files"
        oid, status = await run_in_threadpool(
            commits.commit,
            hub,
            caller,
            repo_id,
            rev,
            ops,
            title,
            header.get("description") or "",
            header.get("parentCommit"),
        )
    finally:
        staging.cleanup()
    base = base_url(hub, request)
    return {"commitUrl": f"{base}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None,
            "success": True, "validation": status}  # fmt: skip

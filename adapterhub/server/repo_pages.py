"""Web pages of a repository's history and files: the commit list with each commit's changed files
(``/adapters/{namespace}/{name}/commits``) and a file page (``/adapters/{namespace}/{name}/blob/{rev}/{path}``)
with size, sha256, an escaped text preview and, for ``.safetensors`` files, the tensors its header declares
(names, dtypes, shapes), read from the header alone without loading any tensor."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapterhub.server.models import Account, Commit, CommitFile, Ref, Repo
from adapterhub.server.storage import log_lost, read_head
from adapterhub.server.search import get_session
from adapterhub.server.ui import not_found, render, visible_repo

router = APIRouter(include_in_schema=False)

COMMITS_PER_PAGE = 30
PREVIEW_BYTES = 64 * 1024  # of a text file shown on its page
MAX_TENSOR_ROWS = 2000  # of a safetensors header shown on a file page


@dataclass
class Change:
    status: str  # added | modified | deleted
    path: str
    oid: str  # the commit that holds this version of the file (the parent's for a deletion)


def changes(before: dict[str, str], after: dict[str, str], oid: str, parent: str | None) -> list[Change]:
    """Files added, modified (other content) and deleted between two trees (path -> sha256)."""
    out = [Change("added", p, oid) for p in after if p not in before]
    out += [Change("modified", p, oid) for p in after if p in before and before[p] != after[p]]
    out += [Change("deleted", p, parent or oid) for p in before if p not in after]
    return sorted(out, key=lambda c: c.path)


def _trees(s: Session, oids: set[str]) -> dict[str, dict[str, str]]:
    trees: dict[str, dict[str, str]] = {o: {} for o in oids}
    if oids:
        rows = s.execute(
            select(CommitFile.commit_oid, CommitFile.path, CommitFile.blob_sha256).where(
                CommitFile.commit_oid.in_(oids)
            )
        )
        for oid, path, sha in rows:
            trees[oid][path] = sha
    return trees


def _page(request: Request) -> int:
    try:
        return min(max(1, int(request.query_params.get("page") or 1)), 1 << 20)
    except ValueError:
        return 1


@router.get("/adapters/{namespace}/{name}/commits", response_class=HTMLResponse)
def commits_page(namespace: str, name: str, request: Request, s: Session = Depends(get_session)):
    full = f"{namespace}/{name}"
    _, repo = visible_repo(s, request, namespace, name)
    if repo is None:
        return not_found(request, f"No repository {full} (or it is private and you are not its owner).")
    page = _page(request)
    commits = list(
        s.scalars(
            select(Commit)
            .where(Commit.repo_id == repo.id)
            .order_by(Commit.created_at.desc(), Commit.oid)
            .offset((page - 1) * COMMITS_PER_PAGE)
            .limit(COMMITS_PER_PAGE + 1)
        )
    )
    more, commits = len(commits) > COMMITS_PER_PAGE, commits[:COMMITS_PER_PAGE]
    trees = _trees(s, {c.oid for c in commits} | {c.parent_oid for c in commits if c.parent_oid})
    author_ids = {c.author_id for c in commits if c.author_id}
    authors = dict(s.execute(select(Account.id, Account.name).where(Account.id.in_(author_ids))).all())
    refs: dict[str, list[str]] = {}
    for r in s.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.kind, Ref.name)):
        refs.setdefault(r.commit_oid, []).append(f"{r.kind}:{r.name}")
    rows = [
        {
            "commit": c,
            "author": authors.get(c.author_id),
            "refs": refs.get(c.oid, []),
            "changes": changes(trees.get(c.parent_oid, {}), trees[c.oid], c.oid, c.parent_oid),
            "body": c.message.strip() if c.message and c.message.strip() != c.title.strip() else "",
        }
        for c in commits
    ]
    return render(request, "commits.html", full=full, repo=repo, rows=rows, page=page, more=more)


def _commit_at(s: Session, repo: Repo, rev: str) -> Commit | None:
    commit = s.get(Commit, rev) if len(rev) == 40 else None
    if commit is not None and commit.repo_id == repo.id:
        return commit
    ref = s.scalar(
        select(Ref).where(Ref.repo_id == repo.id, Ref.name == rev).order_by(Ref.kind)  # branch before tag
    )
    return s.get(Commit, ref.commit_oid) if ref is not None else None


def text_preview(data: bytes, limit: int = PREVIEW_BYTES) -> str | None:
    """The start of a file as text, or None if it is not UTF-8 text (NUL bytes or invalid sequences);
    a multi-byte character cut by the limit is dropped, not an error."""
    head = data[:limit]
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) <= limit)
    except UnicodeDecodeError:
        return None


def tensor_rows(header: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from adapterhub.server.index import tensor_size

    return [
        {"name": k, "dtype": str(v.get("dtype", "?")), "shape": v["shape"], "params": tensor_size(v)}
        for k, v in sorted(header.items())
    ]


@router.get("/adapters/{namespace}/{name}/blob/{rev}/{path:path}", response_class=HTMLResponse)
def file_page(
    namespace: str, name: str, rev: str, path: str, request: Request, s: Session = Depends(get_session)
):
    from adapterhub.server.index import safetensors_header
    from adapterhub.server.indexing import BlobReader

    full = f"{namespace}/{name}"
    _, repo = visible_repo(s, request, namespace, name)
    commit = _commit_at(s, repo, rev) if repo is not None else None
    f = s.get(CommitFile, (commit.oid, path)) if commit is not None else None
    if f is None:
        return not_found(request, f"No file {path} at {rev} in {full}.")
    store = request.app.state.hub.store
    ctx: dict[str, Any] = {
        "full": full,
        "commit": commit,
        "path": path,
        "size": f.blob.size,
        "sha256": f.blob_sha256,
        "git_oid": f.blob.git_oid,
        "download": f"/{quote(full)}/resolve/{commit.oid}/{quote(path)}",
        "preview": None,
        "tensors": None,
    }
    lost = "The file's content is missing from the hub's blob store: it cannot be shown or downloaded."
    if path.endswith(".safetensors"):
        try:
            raw = BlobReader(store, {path: f.blob_sha256}).header(path)
        except FileNotFoundError as e:
            log_lost(f"repo {full}: {path}", e)
            ctx["header_error"] = lost
        else:
            header = safetensors_header(raw) if raw else None
            if header is not None:
                rows = tensor_rows(header)
                ctx.update(tensors=rows[:MAX_TENSOR_ROWS], tensor_count=len(rows))
                ctx["tensor_params"] = sum(r["params"] for r in rows)
            else:
                ctx["header_error"] = "The file does not start with a readable safetensors header."
    else:
        data = read_head(store, f.blob_sha256, PREVIEW_BYTES + 1, f"repo {full}: {path}")
        if data is None:
            ctx["header_error"] = lost
        else:
            ctx["preview"] = text_preview(data)
            ctx["truncated"] = len(data) > PREVIEW_BYTES
    return render(request, "file.html", **ctx)


# -------------------------------------------------------------------------------------------- card editor
def _card_at(store, commit: Commit | None) -> str:
    f = next((f for f in commit.files if f.path == "README.md"), None) if commit is not None else None
    if f is None or f.blob.size > 1 << 20:
        return ""
    raw = read_head(store, f.blob_sha256, 1 << 20, f"commit {f.commit_oid}: README.md")  # lost: a new card
    return raw.decode("utf-8", errors="replace") if raw is not None else ""


def _editor(request: Request, full: str, head: Commit | None, form: dict, status: int = 200, **ctx: Any):
    from adapterhub.server.card_form import choice_groups, form_options

    with request.app.state.hub.db.session() as s:
        groups = choice_groups(form_options(s))
    return render(
        request, "card_edit.html", status=status, full=full, head=head, form=form, groups=groups, **ctx
    )


@router.get("/adapters/{namespace}/{name}/card", response_class=HTMLResponse)
def card_editor(namespace: str, name: str, request: Request, s: Session = Depends(get_session)):
    """The card editor, filled from the card at the head of main."""
    from adapterhub.server.card_form import form_options, prefill
    from adapterhub.server.index import parse_front_matter

    full = f"{namespace}/{name}"
    _, repo = visible_repo(s, request, namespace, name)
    if repo is None:
        return not_found(request, f"No repository {full} (or it is private and you are not its owner).")
    head = _commit_at(s, repo, "main")
    front, body = parse_front_matter(_card_at(request.app.state.hub.store, head))
    form = {**prefill(form_options(s), front), "body": body.lstrip("\n")}
    return _editor(request, full, head, form)


@router.post("/adapters/{namespace}/{name}/card", response_class=HTMLResponse)
async def save_card(namespace: str, name: str, request: Request):
    """Writes README.md from the editor's fields as a new commit on main; refused if main moved since the
    editor was opened (the form names the commit it was filled from)."""
    from starlette.concurrency import run_in_threadpool

    from adapterhub.server import csrf

    form = await csrf.verified_form(request)
    fields = {k: str(form.get(k) or "") for k in form.keys()}
    result = await run_in_threadpool(_save_card, request, namespace, name, fields)
    return result


def _save_card(request: Request, namespace: str, name: str, fields: dict[str, str]):
    from fastapi.responses import RedirectResponse

    from adapterhub.server import commits, sessions
    from adapterhub.server.auth import caller_from_header
    from adapterhub.server.card_form import CardFieldError, compose_card, form_options, read_fields
    from adapterhub.server.errors import AuthError, HubError
    from adapterhub.server.uploads import Staging

    hub, full = request.app.state.hub, f"{namespace}/{name}"
    with hub.db.session() as s:
        token = sessions.cookie_token(request.cookies)
        try:
            caller = caller_from_header(s, "Bearer " + token if token else None)
        except AuthError:
            caller = caller_from_header(s, None)
        _, repo = visible_repo(s, request, namespace, name, caller)
        if repo is None:
            return not_found(request, f"No repository {full} (or it is private and you are not its owner).")
        head = _commit_at(s, repo, "main")
        options = form_options(s)
        existing = _card_at(hub.store, head)
    if caller.account is None:
        return _editor(request, full, head, fields, 401, error="Log in with a write token to edit the card.")
    try:
        card = read_fields(fields, options, body_field=True)
        text = compose_card(existing, card, full)
        with Staging(hub.tmp_dir, hub.limits) as staging:
            op = commits.Op("add", "README.md", staged=staging.add_bytes("README.md", text.encode()))
            message = fields.get("message", "").strip() or "Update the card from the web editor"
            oid, _ = commits.commit(
                hub, caller, full, "main", [op], message, parent_commit=fields.get("parent") or None
            )
    except CardFieldError as e:
        return _editor(request, full, head, fields, 400, error=str(e))
    except HubError as e:
        status = e.status
        message = e.message
        if e.code == "ParentMismatch" and fields.get("parent"):
            status, message = (
                409,
                "The repository changed since the editor was opened: reload it and edit again.",
            )
        return _editor(request, full, head, fields, status, error=message)
    return RedirectResponse(f"/adapters/{full}?uploaded={oid}", status_code=303)

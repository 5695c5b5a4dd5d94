"""Repositories, revisions and refs: finding a repository the caller may read, resolving a revision, looking up
a file, creating and deleting repositories, branches and tags, and removing unused blobs. Storing a new commit is
``commits.py``; checking it is ``validation.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from adapterhub.common.wire import COMMIT_RE
from adapterhub.server.auth import (
    Caller,
    can_read,
    can_write_namespace,
    readable_repos,
    require_write,
)
from adapterhub.server.errors import (
    AuthError,
    BadRequest,
    EntryNotFound,
    HubError,
    RepoNotFound,
    RevisionNotFound,
)
from adapterhub.server.models import Account, Blob, Commit, CommitFile, Ref, Repo, Validation, utcnow
from adapterhub.server.uploads import remove_stale_staging

if TYPE_CHECKING:
    from adapterhub.server.hub import Hub

log = logging.getLogger("adapterhub.server")
REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


def split_repo_id(repo_id: str) -> tuple[str, str]:
    ns, _, name = repo_id.rpartition("/")
    return ns, name


def valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return (
        1 <= len(parts) <= 2
        and all(REPO_PART_RE.match(p) for p in parts)
        and "--" not in repo_id
        and ".." not in repo_id
        and not repo_id.endswith(".git")
    )


def find_repo(s: Session, repo_id: str, repo_type: str = "model") -> Repo | None:
    ns, name = split_repo_id(repo_id)
    return s.scalar(select(Repo).where(Repo.repo_type == repo_type, Repo.namespace == ns, Repo.name == name))


def get_repo(s: Session, caller: Caller, repo_id: str, repo_type: str = "model") -> Repo:
    """The repo if ``caller`` may read it; otherwise the same 404 whether it is missing or private."""
    repo = find_repo(s, repo_id, repo_type)
    if repo is None or not can_read(caller, repo):
        raise RepoNotFound(
            f"Repository Not Found for {repo_id}: it does not exist, or it is private and you are not authorised."
        )
    return repo


def resolve_revision(s: Session, repo: Repo, revision: str) -> Commit:
    """A branch, a tag or a full commit id of this repo -> the commit."""
    refs = s.execute(
        select(Ref.kind, Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.name == revision)
    ).all()
    for kind in ("branch", "tag"):
        for k, oid in refs:
            if k == kind:
                return s.get(Commit, oid)
    if COMMIT_RE.match(revision):
        c = s.get(Commit, revision)
        if c is not None and c.repo_id == repo.id:
            return c
    raise RevisionNotFound(
        f"Invalid rev id: {revision} (no branch, tag or commit of that name in {repo.repo_id})"
    )


_FILE_SQL = text(
    "SELECT r.id, r.private, r.owner_id, ref.kind, ref.commit_oid, b.sha256, b.size "
    "FROM repos r LEFT JOIN refs ref ON ref.repo_id = r.id AND ref.name = :rev "
    "LEFT JOIN commit_files cf ON cf.commit_oid = ref.commit_oid AND cf.path = :path "
    "LEFT JOIN blobs b ON b.sha256 = cf.blob_sha256 "
    "WHERE r.repo_type = 'model' AND r.namespace = :ns AND r.name = :name"
)
_COMMIT_FILE_SQL = (
    text(  # the same for a full commit id (what clients ask for once they have resolved a branch)
        "SELECT r.id, r.private, r.owner_id, 'commit' AS kind, c.oid AS commit_oid, b.sha256, b.size "
        "FROM repos r LEFT JOIN commits c ON c.repo_id = r.id AND c.oid = :rev "
        "LEFT JOIN commit_files cf ON cf.commit_oid = c.oid AND cf.path = :path "
        "LEFT JOIN blobs b ON b.sha256 = cf.blob_sha256 "
        "WHERE r.repo_type = 'model' AND r.namespace = :ns AND r.name = :name"
    )
)
_FULL_OID = re.compile(r"^[0-9a-f]{40}$")


def lookup_file(
    hub: Hub, caller: Caller, repo_id: str, revision: str, path: str
) -> tuple[int, str, str, int]:
    """(repo pk, commit oid, sha256, size) of ``path`` at ``revision``: one query on the download path (a
    branch, a tag or a full commit id); short commit ids and errors take the ORM path."""
    ns, name = split_repo_id(repo_id)
    sql = _COMMIT_FILE_SQL if _FULL_OID.match(revision) else _FILE_SQL
    with hub.db.engine.connect() as conn:
        rows = conn.execute(sql, {"rev": revision, "path": path, "ns": ns, "name": name}).all()
    rows.sort(key=lambda r: r.kind != "branch")  # a branch wins over a tag of the same name
    if rows and rows[0].commit_oid is not None and rows[0].sha256 is not None:
        r = rows[0]
        if can_read(caller, r):
            return r.id, r.commit_oid, r.sha256, r.size
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        c = resolve_revision(s, repo, revision)
        f = s.scalar(select(CommitFile).where(CommitFile.commit_oid == c.oid, CommitFile.path == path))
        if f is None:
            raise EntryNotFound(f"Entry not found: {path} at revision {revision} of {repo_id}", commit=c.oid)
        return repo.id, c.oid, f.blob.sha256, f.blob.size


def commit_tree(c: Commit) -> dict[str, CommitFile]:
    return {f.path: f for f in c.files}


def last_commits(s: Session, head: Commit, want: dict[str, str], max_depth: int = 1000) -> dict[str, Commit]:
    """For each path (-> its sha256 at ``head``), the most recent commit that changed it, walking the
    parents of ``head`` (at most ``max_depth``; beyond, the oldest commit seen is given)."""
    want, out, cur = dict(want), {}, head
    for _ in range(max_depth):
        if not want:
            break
        if cur.parent_oid is None:
            break
        rows = dict(s.execute(select(CommitFile.path, CommitFile.blob_sha256)
                              .where(CommitFile.commit_oid == cur.parent_oid, CommitFile.path.in_(list(want)))).all())  # fmt: skip
        for p in [p for p in want if rows.get(p) != want[p]]:
            out[p] = cur
            del want[p]
        cur = s.get(Commit, cur.parent_oid)
    out.update({p: cur for p in want})
    return out


def get_validation(s: Session, commit_oid: str) -> Validation | None:
    return s.get(Validation, commit_oid)


# --- repository creation, branches and tags -----------------------------------------------------------


def create_repo(
    hub: Hub, caller: Caller, repo_id: str, private: bool = False, repo_type: str = "model"
) -> tuple[Repo, bool]:
    """Create ``repo_id`` (``namespace/name``). A bare name goes to the caller's namespace, except for
    administrators, who create canonical ids without a namespace (``bert-base-uncased``: base models that
    legacy adapters name that way). Returns (repo, created); ``created`` is False when it existed already
    (and the caller may see it)."""
    if caller.account is None:
        raise AuthError("authentication required to create a repository", 401)
    if caller.scope != "write":
        raise AuthError("this token is read-only; a write token is needed", 403)
    if "/" not in repo_id and not caller.account.is_admin:
        repo_id = f"{caller.account.name}/{repo_id}"
    if not valid_repo_id(repo_id):
        raise BadRequest(f"invalid repository id {repo_id!r}")
    ns, name = split_repo_id(repo_id)
    with hub.db.session() as s:
        owner = s.scalar(select(Account).where(Account.name == ns)) if ns else caller.account
        if owner is None:
            raise AuthError(f"no user or organisation named {ns!r}", 403)
        existing = find_repo(s, repo_id, repo_type)
        if existing is not None and can_read(caller, existing):
            return existing, False
        if not can_write_namespace(caller, owner):
            raise AuthError(f"you ({caller.account.name}) cannot create repositories in {ns!r}", 403)
        if existing is not None:
            return existing, False
        repo = Repo(
            repo_type=repo_type, namespace=ns, name=name, owner_id=owner.id if ns else None, private=private
        )
        s.add(repo)
        s.flush()
        c = Commit(
            oid=new_commit_oid(repo.id, None, {}, "initial commit"),
            repo_id=repo.id,
            title="initial commit",
            author_id=caller.account.id,
        )
        s.add(c)
        s.flush()
        s.add(Ref(repo_id=repo.id, kind="branch", name="main", commit_oid=c.oid))
        s.add(Validation(commit_oid=c.oid, status="skipped", report={"reason": "empty repository"}))
    return repo, True


def create_ref(
    hub: Hub,
    caller: Caller,
    repo_id: str,
    kind: str,
    name: str,
    start: str | None,
    message: str = "",
    exist_ok: bool = False,
) -> str:
    if not name or name.startswith("/") or ".." in name or name.endswith("/") or COMMIT_RE.match(name):
        raise BadRequest(f"invalid {kind} name {name!r}")
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        c = resolve_revision(s, repo, start or "main")
        clash = s.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.name == name))
        if clash is not None:
            if exist_ok and clash.kind == kind:
                return clash.commit_oid
            raise HubError(
                f"a {clash.kind} named {name!r} already exists in {repo.repo_id}", 409, "RefExists"
            )
        s.add(Ref(repo_id=repo.id, kind=kind, name=name, commit_oid=c.oid, message=message))
        return c.oid


def delete_ref(hub: Hub, caller: Caller, repo_id: str, kind: str, name: str) -> None:
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        if kind == "branch" and name == "main":
            raise HubError("the main branch cannot be deleted", 403, "Forbidden")
        ref = s.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.kind == kind, Ref.name == name))
        if ref is None:
            raise RevisionNotFound(f"no {kind} named {name!r} in {repo.repo_id}")
        s.delete(ref)


def delete_repo(hub: Hub, caller: Caller, repo_id: str) -> None:
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        s.delete(repo)


def update_repo_settings(hub: Hub, caller: Caller, repo_id: str, private: bool | None) -> None:
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        if private is not None:
            repo.private = bool(private)


def blob_readable(s: Session, caller: Caller, sha256: str) -> bool:
    """Whether some commit of a repository ``caller`` may read holds the blob ``sha256``: the rule for every
    path that reuses a stored blob by its hash instead of receiving its content (one user's private blob
    must never become readable through another user's repository)."""
    stmt = (
        select(CommitFile.blob_sha256)
        .join(Commit, Commit.oid == CommitFile.commit_oid)
        .join(Repo, Repo.id == Commit.repo_id)
        .where(CommitFile.blob_sha256 == sha256)
    )
    readable = readable_repos(caller)
    if readable is not None:
        stmt = stmt.where(readable)
    return s.scalar(stmt.limit(1)) is not None


def new_commit_oid(repo_pk: int, parent: str | None, tree: dict[str, str], title: str) -> str:
    """A fresh commit id: the SHA-1 of the commit's content, time and a nonce (never reused)."""
    body = json.dumps(
        {"repo": repo_pk, "parent": parent, "tree": sorted(tree.items()), "title": title,
         "time": utcnow().isoformat(), "nonce": secrets.token_hex(8)},
    )  # fmt: skip
    return hashlib.sha1(body.encode()).hexdigest()


def collect_garbage(hub: Hub, grace_seconds: float = 3600.0) -> tuple[int, int, int]:
    """Remove blobs no commit uses any more (after repositories were deleted), blob files without a
    row (left by a crash between storing a blob and its commit) and the staging folders of killed uploads.
    Only what is older than ``grace_seconds`` is touched, so that commits in flight keep theirs. Returns
    (rows removed, blob files removed, staging folders removed)."""
    import time

    cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
    with hub.db.session() as s:
        used = select(CommitFile.blob_sha256)
        orphans = s.scalars(
            select(Blob.sha256).where(Blob.created_at < cutoff, Blob.sha256.not_in(used))
        ).all()
        if orphans:
            s.execute(Blob.__table__.delete().where(Blob.sha256.in_(orphans)))
        known = set(s.scalars(select(Blob.sha256)).all())
    files = 0
    for sha in orphans:
        hub.store.delete(sha)
        files += 1
    for sha, stored_at in list(hub.store.stored()):
        if sha not in known and stored_at < time.time() - grace_seconds:
            hub.store.delete(sha)
            files += 1
    return len(orphans), files, remove_stale_staging(hub.tmp_dir, grace_seconds)


def serialize_time(t: dt.datetime | None) -> str | None:
    return (
        None
        if t is None
        else t.replace(microsecond=(t.microsecond // 1000) * 1000).isoformat(timespec="milliseconds") + "Z"
    )

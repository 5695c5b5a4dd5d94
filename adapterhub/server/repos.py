"""Repositories, revisions, commits and refs: the operations behind the HF endpoints and the web UI.

The commit pipeline (:func:`commit`) is shared by every upload path: stage new files (``uploads.Staging``),
build the new tree, run the checks before storing, wait for the load check, then store blobs and rows in
one transaction that moves the branch only if nobody else moved it meanwhile.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import posixpath
import re
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapterhub.common.wire import COMMIT_RE
from adapterhub.server import validation as V
from adapterhub.server.auth import (
    AuthError,
    Caller,
    can_read,
    can_write_namespace,
    readable_repos,
    require_write,
)
from adapterhub.server.models import Account, Blob, Commit, CommitFile, Ref, Repo, Validation, utcnow
from adapterhub.server.storage import link_or_copy
from adapterhub.server.uploads import StagedFile, UploadError, check_tree, remove_stale_staging

if TYPE_CHECKING:
    from adapterhub.server.app import Hub

log = logging.getLogger("adapterhub.server")
REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


class HubError(Exception):
    """An error with an HTTP status and an ``X-Error-Code`` (RepoNotFound, RevisionNotFound, ...)."""

    def __init__(self, message: str, status: int, code: str, commit: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.commit = message, status, code, commit


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
        raise HubError(
            f"Repository Not Found for {repo_id}: it does not exist, or it is private and you are not authorised.",
            404,
            "RepoNotFound",
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
    raise HubError(
        f"Invalid rev id: {revision} (no branch, tag or commit of that name in {repo.repo_id})",
        404,
        "RevisionNotFound",
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
            raise HubError(
                f"Entry not found: {path} at revision {revision} of {repo_id}",
                404,
                "EntryNotFound",
                commit=c.oid,
            )
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
        raise HubError(f"invalid repository id {repo_id!r}", 400, "BadRequest")
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
            oid=_commit_oid(repo.id, None, {}, "initial commit"),
            repo_id=repo.id,
            title="initial commit",
            author_id=caller.account.id,
        )
        s.add(c)
        s.flush()
        s.add(Ref(repo_id=repo.id, kind="branch", name="main", commit_oid=c.oid))
        s.add(Validation(commit_oid=c.oid, status="skipped", report={"reason": "empty repository"}))
    return repo, True


def commit_to_new_repo(
    hub: Hub, caller: Caller, repo_id: str, ops: list[Op], title: str, private: bool = False
) -> tuple[str, str, str]:
    """Create ``repo_id`` if needed and commit ``ops`` to its main branch, as one step for upload forms:
    if the commit is refused, a repository created by this call is removed again. Returns
    (repo id, commit oid, validation status)."""
    repo, created = create_repo(hub, caller, repo_id, private=private)
    full_id = repo.repo_id
    try:
        oid, status = commit(hub, caller, full_id, "main", ops, title)
    except BaseException:
        if created:
            with hub.db.session() as s:
                r = find_repo(s, full_id)
                if (
                    r is not None
                    and s.scalar(select(func.count()).select_from(Commit).where(Commit.repo_id == r.id)) == 1
                ):
                    s.delete(r)
        raise
    return full_id, oid, status


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
        raise HubError(f"invalid {kind} name {name!r}", 400, "BadRequest")
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
            raise HubError(f"no {kind} named {name!r} in {repo.repo_id}", 404, "RevisionNotFound")
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


# --- commits ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Op:
    """One change of a commit: ``add`` (``staged`` file, or ``sha256`` of a blob already stored),
    ``delete`` (a file) or ``delete_folder``."""

    kind: str
    path: str
    staged: StagedFile | None = None
    sha256: str | None = None


@dataclasses.dataclass
class CommitEvent:
    """Handed to every post-commit hook once a commit is stored (``hub.post_commit_hooks``)."""

    hub: Hub
    repo_id: str
    repo_pk: int
    commit_oid: str
    branch: str
    files: dict[str, str]  # path -> sha256
    validation_status: str

    def read(self, path: str) -> bytes:
        with self.hub.store.open(self.files[path]) as f:
            return f.read()


@dataclasses.dataclass
class _Entry:
    sha256: str
    size: int
    git_oid: str
    staged: StagedFile | None = None


def _commit_oid(repo_pk: int, parent: str | None, tree: dict[str, str], title: str) -> str:
    body = json.dumps(
        {"repo": repo_pk, "parent": parent, "tree": sorted(tree.items()), "title": title,
         "time": utcnow().isoformat(), "nonce": secrets.token_hex(8)},
    )  # fmt: skip
    return hashlib.sha1(body.encode()).hexdigest()


def commit(
    hub: Hub,
    caller: Caller,
    repo_id: str,
    branch: str,
    ops: list[Op],
    title: str,
    description: str = "",
    parent_commit: str | None = None,
) -> tuple[str, str]:
    """Apply ``ops`` on top of ``branch`` and store the result as a new commit; returns (commit oid,
    validation status). Raises HubError / UploadError / AuthError, in which case nothing was stored."""
    for attempt in range(5):
        try:
            return _commit_once(hub, caller, repo_id, branch, ops, title, description, parent_commit)
        except _BranchMoved:
            if parent_commit is not None:
                raise HubError(
                    f"{branch} moved while committing (expected parent {parent_commit})",
                    412,
                    "ParentMismatch",
                ) from None
            log.info("branch %s of %s moved during commit, retrying (%d)", branch, repo_id, attempt + 1)
    raise HubError(f"too many concurrent commits on {repo_id}@{branch}, try again", 409, "Conflict")


class _BranchMoved(Exception):
    pass


def _commit_once(hub, caller, repo_id, branch, ops, title, description, parent_commit) -> tuple[str, str]:
    with hub.db.session() as s:
        repo = get_repo(s, caller, repo_id)
        require_write(s, caller, repo)
        repo_pk, full_id = repo.id, repo.repo_id
        ref = s.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.kind == "branch", Ref.name == branch))
        if ref is None:
            if s.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.kind == "tag", Ref.name == branch)):
                raise HubError(f"{branch!r} is a tag; commits go to branches", 400, "BadRequest")
            raise HubError(f"Invalid rev id: {branch} (no such branch in {full_id})", 404, "RevisionNotFound")
        head = s.get(Commit, ref.commit_oid)
        if parent_commit is not None and parent_commit != head.oid:
            raise HubError(
                f"parentCommit {parent_commit} is not the head of {branch} ({head.oid})",
                412,
                "ParentMismatch",
            )
        tree = {p: _Entry(f.blob.sha256, f.blob.size, f.blob.git_oid) for p, f in commit_tree(head).items()}
        parent_val = get_validation(s, head.oid)
        parent_report = dict(parent_val.report or {}) if parent_val else {}
        _apply_ops(s, caller, tree, ops)
        adapters, errors = _checks_before_storing(s, hub, caller, tree)
        head_oid = head.oid
    if errors:
        raise UploadError("upload refused:\n- " + "\n- ".join(errors), 422, "ValidationFailed")

    status, report = _load_checks(hub, tree, adapters, parent_report, run=not hub.settings.validation_queue)
    running = report.pop("_futures", [])
    if status == "failed":
        raise UploadError(
            "upload refused, the adapter does not validate:\n- " + "\n- ".join(_report_errors(report)),
            422,
            "ValidationFailed",
        )

    new_blobs = {e.sha256: e for e in tree.values() if e.staged is not None}
    for e in new_blobs.values():  # blobs first, rows after: a row never points to a missing blob
        hub.store.put_file(e.staged.tmp, e.sha256, e.size)  # a no-op for a blob already stored whole
    with hub.db.session() as s:
        # Writing the repo row first serialises the commits of one repo: a row lock on PostgreSQL, the
        # write lock on SQLite. Under it, a branch that moved meanwhile is rebased onto when the other
        # commit did not touch what was validated; otherwise the whole commit is checked again.
        s.execute(update(Repo).where(Repo.id == repo_pk).values(updated_at=utcnow()))
        ref = s.scalar(select(Ref).where(Ref.repo_id == repo_pk, Ref.kind == "branch", Ref.name == branch))
        if ref is None:
            raise HubError(f"branch {branch} was deleted while committing", 409, "Conflict")
        if ref.commit_oid != head_oid:
            if parent_commit is not None:
                raise HubError(
                    f"{branch} moved while committing (expected parent {parent_commit})",
                    412,
                    "ParentMismatch",
                )
            rebased = {
                p: _Entry(f.blob.sha256, f.blob.size, f.blob.git_oid)
                for p, f in commit_tree(s.get(Commit, ref.commit_oid)).items()
            }
            _apply_ops(s, caller, rebased, ops)
            if _validated_part(rebased) != _validated_part(tree):
                raise _BranchMoved()
            tree, head_oid = rebased, ref.commit_oid
        oid = _commit_oid(repo_pk, head_oid, {p: e.sha256 for p, e in tree.items()}, title)
        if new_blobs:
            ins = (postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert)(Blob)
            s.execute(
                ins.on_conflict_do_nothing(index_elements=["sha256"]),
                [
                    {"sha256": e.sha256, "size": e.size, "git_oid": e.git_oid, "created_at": utcnow()}
                    for e in new_blobs.values()
                ],
            )
        s.add(
            Commit(
                oid=oid,
                repo_id=repo_pk,
                parent_oid=head_oid,
                title=title[:500],
                message=description,
                author_id=caller.account.id,
            )
        )
        s.flush()
        s.add_all([CommitFile(commit_oid=oid, path=p, blob_sha256=e.sha256) for p, e in tree.items()])
        s.add(Validation(commit_oid=oid, status=status, report=report, errors=_report_errors(report),
                         method=_first(report, "method"), num_params=_sum_params(report)))  # fmt: skip
        ref.commit_oid, ref.updated_at = oid, utcnow()
    if running:
        _finish_in_background(hub, oid, report, running)
    hub.run_post_commit(
        CommitEvent(hub, full_id, repo_pk, oid, branch, {p: e.sha256 for p, e in tree.items()}, status)
    )
    return oid, status


def _validated_part(tree: dict[str, _Entry]) -> dict[str, str]:
    """What the checks before storing and the load check depend on: the card, every config.json and
    adapter folder (a commit that changes none of these can be rebased onto without checking again)."""
    folders = {posixpath.dirname(p) for p in tree if posixpath.basename(p) == V.ADAPTER_CONFIG}
    out = {}
    for p, e in tree.items():
        d = posixpath.dirname(p)
        if (
            p == "README.md"
            or posixpath.basename(p) == "config.json"
            or any(f == "" or d == f or d.startswith(f + "/") for f in folders)
        ):
            out[p] = e.sha256
    return out


def _apply_ops(s: Session, caller: Caller, tree: dict[str, _Entry], ops: list[Op]) -> None:
    in_tree = {e.sha256 for e in tree.values()}
    for op in ops:
        if op.kind == "add":
            if op.staged is not None:
                st = op.staged
                tree[op.path] = _Entry(st.sha256, st.size, st.git_oid, st)
            else:
                blob = s.get(Blob, op.sha256 or "")
                if blob is None or not (blob.sha256 in in_tree or blob_readable(s, caller, blob.sha256)):
                    raise UploadError(
                        f"{op.path}: no stored blob with sha256 {op.sha256} in a repository you can read; "
                        "this hub takes file content inline (preupload answers 'regular'), LFS uploads are "
                        "not supported",
                        422,
                        "LfsNotSupported",
                    )
                tree[op.path] = _Entry(blob.sha256, blob.size, blob.git_oid)
        elif op.kind == "delete":
            if tree.pop(op.path, None) is None:
                raise HubError(f"cannot delete {op.path}: no such file", 404, "EntryNotFound")
        elif op.kind == "delete_folder":
            prefix = op.path.rstrip("/") + "/"
            gone = [p for p in tree if p.startswith(prefix)]
            if not gone:
                raise HubError(f"cannot delete folder {op.path}: no such folder", 404, "EntryNotFound")
            for p in gone:
                del tree[p]
        else:
            raise UploadError(f"unknown operation {op.kind!r}")
    check_tree(tree)


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


def _read_entry(hub: Hub, e: _Entry) -> bytes:
    if e.staged is not None:
        return e.staged.tmp.read_bytes()
    with hub.store.open(e.sha256) as f:
        return f.read()


def _copy_entry(hub: Hub, e: _Entry, dest: Path) -> None:
    if e.staged is not None:
        link_or_copy(e.staged.tmp, dest)
    else:
        hub.store.copy_to(e.sha256, dest)


def _checks_before_storing(
    s: Session, hub: Hub, caller: Caller, tree: dict[str, _Entry]
) -> tuple[list[dict], list[str]]:
    """Schema, card, safetensors headers and base model of every adapter folder in the new tree."""
    errors: list[str] = []
    for p, e in tree.items():
        if e.staged is not None and p.lower().endswith(".safetensors"):
            errors += V.check_safetensors(e.staged.tmp, p)[1]
        if (
            e.staged is not None
            and p.endswith(".json")
            and posixpath.basename(p) in ("config.json", V.ADAPTER_CONFIG)
        ):
            try:
                json.loads(_read_entry(hub, e))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                errors.append(f"{p}: not valid JSON ({err})")
    card_meta: dict = {}
    if "README.md" in tree:
        card_meta, card_errors = V.parse_card(_read_entry(hub, tree["README.md"]))
        errors += card_errors
    if errors:
        return [], errors
    adapters = []
    for p in sorted(tree):
        if posixpath.basename(p) != V.ADAPTER_CONFIG:
            continue
        folder = posixpath.dirname(p)
        info, errs = V.check_adapter_config(_read_entry(hub, tree[p]), card_meta, folder)
        errors += errs
        if info is None:
            continue
        prefix = folder + "/" if folder else ""
        files = {q[len(prefix) :]: tree[q] for q in tree if q.startswith(prefix)}
        if folder == "":  # nested adapter folders are validated on their own
            nested = {
                posixpath.dirname(q) for q in tree if posixpath.basename(q) == V.ADAPTER_CONFIG and "/" in q
            }
            files = {q: e for q, e in files.items() if not any(q.startswith(n + "/") for n in nested)}
        weights = [q for q in files if q.endswith(".safetensors")]
        if not weights:
            errors.append(f"{p}: no .safetensors weights next to the adapter config")
            continue
        base = _base_config(s, hub, caller, info)
        if isinstance(base, str):
            errors.append(base)
            continue
        base_repo, base_commit, base_cfg = base
        adapters.append({"folder": folder, "dialect": info.dialect, "base_model": info.base_model,
                         "base_repo": base_repo, "base_commit": base_commit, "base_config": base_cfg,
                         "files": files})  # fmt: skip
    return adapters, errors


def _base_config(s: Session, hub: Hub, caller: Caller, info: V.AdapterInfo) -> tuple[str, str, dict] | str:
    where = posixpath.join(info.folder, V.ADAPTER_CONFIG)
    unknown = (
        f"{where}: unknown base model {info.base_model!r}: no repository of that name with a config.json on this hub "
        "(push the base model's config.json to a repository of that name first)"
    )
    if not valid_repo_id(info.base_model):
        return unknown
    repo = find_repo(s, info.base_model)
    if repo is None or not can_read(caller, repo):
        return unknown
    try:
        c = resolve_revision(s, repo, info.base_revision or "main")
    except HubError:
        return f"{where}: base model {info.base_model!r} has no revision {info.base_revision!r}"
    f = commit_tree(c).get("config.json")
    if f is None:
        return unknown
    with hub.store.open(f.blob.sha256) as fh:
        try:
            cfg = json.loads(fh.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{where}: the base model's config.json ({info.base_model}) is not valid JSON"
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        return f"{where}: the base model's config.json ({info.base_model}) has no model_type"
    return repo.repo_id, c.oid, cfg


def _load_checks(
    hub: Hub,
    tree: dict[str, _Entry],
    adapters: list[dict],
    parent_report: dict,
    wait: float | None = None,
    run: bool = True,
) -> tuple[str, dict]:
    """Run (or reuse) the load check of every adapter folder; wait up to ``validation_wait`` seconds (``wait``:
    that many, ``math.inf``: until done). ``run=False`` (uploads to a hub whose checks run in ``adapterhub worker``
    processes) reuses earlier results only and leaves the rest pending. Returns (status, report); status is
    passed, failed, pending (still running, or queued) or skipped (no adapter)."""
    if not adapters:
        kind = "base_model" if "config.json" in tree else "files"
        return "skipped", {"kind": kind, "adapters": []}
    previous = {a.get("fingerprint"): a for a in parent_report.get("adapters", []) if a.get("ok") is not None}
    results: list[dict] = []
    futures: dict[cf.Future, dict] = {}
    for a in adapters:
        fp = V.fingerprint({p: e.sha256 for p, e in a["files"].items()}, a["base_commit"])
        entry = {"folder": a["folder"], "dialect": a["dialect"], "base_model": a["base_model"],
                 "base_repo": a["base_repo"], "base_commit": a["base_commit"], "fingerprint": fp}  # fmt: skip
        if fp in previous:
            entry.update({k: v for k, v in previous[fp].items() if k not in entry})
            results.append(entry)
            continue
        entry["ok"] = None
        results.append(entry)
        if not run:
            continue
        job = hub.validator.new_job_dir()
        for p, e in a["files"].items():
            _copy_entry(hub, e, job / p)
        futures[hub.validator.submit(job, a["base_config"], a["dialect"])] = entry
    if futures:
        timeout = hub.settings.validation_wait if wait is None else wait
        cf.wait(list(futures), timeout=None if timeout == math.inf else timeout)
    pending = []
    for fut, entry in futures.items():
        if fut.done():
            entry.update(fut.result())
        else:
            pending.append((fut, entry))
    report = {"kind": "adapter", "adapters": results}
    if pending:
        report["_futures"] = pending  # taken out by _finish_in_background
        return "pending", report
    return _status_of(results), report


def _status_of(results: list[dict]) -> str:
    """failed > pending > unverified (this server cannot check that kind of adapter) > passed."""
    if any(r.get("ok") is False for r in results):
        return "failed"
    if any(r.get("ok") is None and not r.get("unverified") for r in results):
        return "pending"
    if any(r.get("unverified") for r in results):
        return "unverified"
    return "passed"


def _report_errors(report: dict) -> list[str]:
    out = []
    for a in report.get("adapters", []):
        where = a.get("folder") or "adapter"
        out += [f"{where}: {e}" for e in a.get("errors", [])]
    return out


def _first(report: dict, key: str):
    for a in report.get("adapters", []):
        if a.get(key) is not None:
            return a[key]
    return None


def _sum_params(report: dict) -> int | None:
    vals = [a["num_params"] for a in report.get("adapters", []) if a.get("num_params") is not None]
    return sum(vals) if vals else None


def _finish_in_background(hub: Hub, commit_oid: str, report: dict, pairs: list) -> None:
    """The upload stopped waiting: record the result when the load checks finish (flags failed commits)."""
    lock = threading.Lock()
    left = [len(pairs)]

    def done(fut: cf.Future, entry: dict) -> None:
        res = fut.result() if not fut.cancelled() else {"ok": None, "errors": ["validation cancelled"]}
        with lock:
            entry.update(res)
            left[0] -= 1
            if left[0]:
                return
        try:
            status = hub.record_validation(commit_oid, report)
            log.info("validation of %s finished: %s", commit_oid, status)
        except Exception:  # noqa: BLE001
            log.exception("could not record the validation of %s", commit_oid)

    for fut, entry in pairs:
        fut.add_done_callback(lambda f, e=entry: done(f, e))


def record_validation(hub: Hub, commit_oid: str, report: dict, owner: str | None = None) -> str | None:
    """Store the result of a validation; returns its status. With ``owner`` (a validation worker), only while
    that worker still holds the validation (None otherwise: its claim expired and another worker took it)."""
    report = {k: v for k, v in report.items() if not k.startswith("_")}
    status = _status_of(report.get("adapters", []))
    with hub.db.session() as s:
        v = s.get(Validation, commit_oid, with_for_update=owner is not None)
        if v is None:
            return status
        if owner is not None and v.claimed_by != owner:
            return None
        v.claimed_by, v.lease_until = None, None
        v.status, v.report, v.errors = status, report, _report_errors(report)
        v.method, v.num_params, v.updated_at = _first(report, "method"), _sum_params(report), utcnow()
    return status


def revalidate(hub: Hub, commit_oid: str, wait: float = 0.0, owner: str | None = None) -> str | None:
    """Validate a stored commit again: in the background (``wait=0``, at start-up for unfinished validations),
    or until done (``wait=math.inf``, a validation worker ``owner`` that holds the validation; the status is
    None if its claim was lost meanwhile). Results already in the stored report are reused."""
    with hub.db.session() as s:
        c = s.get(Commit, commit_oid)
        if c is None:
            return "missing"
        stored = get_validation(s, commit_oid)
        earlier = dict(stored.report or {}) if stored is not None else {}
        author = s.get(Account, c.author_id) if c.author_id else None
        caller = Caller(account=author, scope="read")
        if author is not None:
            s.expunge(author)
        tree = {p: _Entry(f.blob.sha256, f.blob.size, f.blob.git_oid) for p, f in commit_tree(c).items()}
        adapters, errors = _checks_before_storing(s, hub, caller, tree)
    if errors:
        return hub.record_validation(
            commit_oid,
            {"kind": "adapter", "adapters": [{"folder": "", "ok": False, "errors": errors}]},
            owner,
        )
    status, report = _load_checks(hub, tree, adapters, earlier, wait=wait)
    running = report.pop("_futures", [])
    if running:
        _finish_in_background(hub, commit_oid, report, running)
        return status
    return hub.record_validation(commit_oid, report, owner)


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

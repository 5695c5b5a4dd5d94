"""The commit pipeline shared by every upload path (the HF commit endpoint, the upload form, the card editor):
stage new files (``uploads.Staging``), build the new tree, run the checks before storing and wait for the load
check (``validation.py``), then store blobs and rows in one transaction that moves the branch only if nobody
else moved it meanwhile, and run the post-commit hooks.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapterhub.server import validation as V
from adapterhub.server.auth import Caller, require_write
from adapterhub.server.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    HubError,
    RevisionNotFound,
    UploadError,
)
from adapterhub.server.models import Blob, Commit, CommitFile, Ref, Repo, Validation, utcnow
from adapterhub.server.repos import (
    blob_readable,
    commit_tree,
    create_repo,
    find_repo,
    get_repo,
    get_validation,
    new_commit_oid,
)
from adapterhub.server.uploads import StagedFile, check_tree

if TYPE_CHECKING:
    from adapterhub.server.hub import Hub

log = logging.getLogger("adapterhub.server")


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
    validation status). Raises a HubError (an UploadError, an AuthError, ...), in which case nothing was stored."""
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
    raise Conflict(f"too many concurrent commits on {repo_id}@{branch}, try again")


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
                raise BadRequest(f"{branch!r} is a tag; commits go to branches")
            raise RevisionNotFound(f"Invalid rev id: {branch} (no such branch in {full_id})")
        head = s.get(Commit, ref.commit_oid)
        if parent_commit is not None and parent_commit != head.oid:
            raise HubError(
                f"parentCommit {parent_commit} is not the head of {branch} ({head.oid})",
                412,
                "ParentMismatch",
            )
        tree = {
            p: V.TreeEntry(f.blob.sha256, f.blob.size, f.blob.git_oid) for p, f in commit_tree(head).items()
        }
        parent_val = get_validation(s, head.oid)
        parent_report = dict(parent_val.report or {}) if parent_val else {}
        _apply_ops(s, caller, tree, ops)
        adapters, errors = V.checks_before_storing(s, hub, caller, tree)
        head_oid = head.oid
    if errors:
        raise UploadError("upload refused:\n- " + "\n- ".join(errors), 422, "ValidationFailed")

    status, report = V.load_checks(hub, tree, adapters, parent_report, run=not hub.settings.validation_queue)
    running = report.pop("_futures", [])
    if status == "failed":
        raise UploadError(
            "upload refused, the adapter does not validate:\n- " + "\n- ".join(V.summary(report)["errors"]),
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
            raise Conflict(f"branch {branch} was deleted while committing")
        if ref.commit_oid != head_oid:
            if parent_commit is not None:
                raise HubError(
                    f"{branch} moved while committing (expected parent {parent_commit})",
                    412,
                    "ParentMismatch",
                )
            rebased = {
                p: V.TreeEntry(f.blob.sha256, f.blob.size, f.blob.git_oid)
                for p, f in commit_tree(s.get(Commit, ref.commit_oid)).items()
            }
            _apply_ops(s, caller, rebased, ops)
            if V.validated_part(rebased) != V.validated_part(tree):
                raise _BranchMoved()
            tree, head_oid = rebased, ref.commit_oid
        oid = new_commit_oid(repo_pk, head_oid, {p: e.sha256 for p, e in tree.items()}, title)
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
        s.add(Validation(commit_oid=oid, status=status, report=report, **V.summary(report)))
        ref.commit_oid, ref.updated_at = oid, utcnow()
    if running:
        V.finish_in_background(hub, oid, report, running)
    hub.run_post_commit(
        CommitEvent(hub, full_id, repo_pk, oid, branch, {p: e.sha256 for p, e in tree.items()}, status)
    )
    return oid, status


def _apply_ops(s: Session, caller: Caller, tree: dict[str, V.TreeEntry], ops: list[Op]) -> None:
    in_tree = {e.sha256 for e in tree.values()}
    for op in ops:
        if op.kind == "add":
            if op.staged is not None:
                st = op.staged
                tree[op.path] = V.TreeEntry(st.sha256, st.size, st.git_oid, st)
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
                tree[op.path] = V.TreeEntry(blob.sha256, blob.size, blob.git_oid)
        elif op.kind == "delete":
            if tree.pop(op.path, None) is None:
                raise EntryNotFound(f"cannot delete {op.path}: no such file")
        elif op.kind == "delete_folder":
            prefix = op.path.rstrip("/") + "/"
            gone = [p for p in tree if p.startswith(prefix)]
            if not gone:
                raise EntryNotFound(f"cannot delete folder {op.path}: no such folder")
            for p in gone:
                del tree[p]
        else:
            raise UploadError(f"unknown operation {op.kind!r}")
    check_tree(tree)

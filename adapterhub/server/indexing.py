"""Storing what ``index.extract_metadata`` finds in the index tables: one :class:`IndexVersion` row per
indexed commit and the repository's :class:`IndexEntry` for the head of ``main`` (what search, the web UI and
identifier resolution read). ``search.setup`` registers :func:`index_commit` as a post-commit hook and
:func:`update_validation` as a post-validation hook.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Mapping

from sqlalchemy import select, update

from adapterhub.server.index import MAX_METADATA_BYTES, FileInfo, extract_metadata
from adapterhub.server.index_models import IndexEntry, IndexVersion
from adapterhub.server.models import Commit, CommitFile, Ref, Repo, Validation


class BlobReader:
    """Reads the files of one commit from the blob store (only small metadata files and safetensors headers)."""

    def __init__(self, store, blobs: Mapping[str, str]):
        self.store, self.blobs = store, blobs  # path -> sha256

    def read(self, path: str) -> bytes | None:
        sha = self.blobs.get(path)
        if sha is None:
            return None
        with self.store.open(sha) as f:
            return f.read(MAX_METADATA_BYTES + 1)

    def header(self, path: str) -> bytes | None:
        sha = self.blobs.get(path)
        if sha is None:
            return None
        with self.store.open(sha) as f:
            first = f.read(8)
            if len(first) < 8:
                return None
            (n,) = struct.unpack("<Q", first)
            if n > 100 * MAX_METADATA_BYTES:
                return None
            return first + f.read(n)


def index_commit(session, repo, commit, store, *, branch: str = "main"):
    """Extracts the metadata of `commit` of `repo` and stores it: always an `IndexVersion` row for the commit,
    and the repository's `IndexEntry` when `branch` is the default branch `main`. Returns the entry. Never
    raises on bad content (problems are stored as warnings)."""
    files = list(commit.files)
    infos = [FileInfo(f.path, f.blob.size, f.blob_sha256) for f in files]
    reader = BlobReader(store, {f.path: f.blob_sha256 for f in files})
    meta = extract_metadata(infos, reader.read, reader.header)
    if meta.is_adapter and meta.model_type is None and meta.base_model:
        meta.model_type = _hub_model_type(session, store, meta.base_model)
    data = meta.to_dict()
    data["files"] = [{"path": i.path, "size": i.size, "sha256": i.sha256} for i in infos]

    entry = session.scalar(select(IndexEntry).where(IndexEntry.repo_pk == repo.id))
    if entry is None:
        entry = session.scalar(select(IndexEntry).where(IndexEntry.full_name == repo.repo_id))
        if entry is not None and entry.source == "legacy":  # a real repository takes over a legacy name
            session.delete(entry)
            session.flush()
            entry = None
    if entry is None:
        entry = IndexEntry(
            repo_pk=repo.id,
            full_name=repo.repo_id,
            namespace=repo.namespace,
            name=repo.name,
            source="hub",
            created_at=commit.created_at,
        )
        session.add(entry)
    version = (
        session.scalar(
            select(IndexVersion).where(IndexVersion.entry_id == entry.id, IndexVersion.version == commit.oid)
        )
        if entry.id
        else None
    )
    is_latest = branch == "main" or entry.commit_oid is None
    if is_latest:
        validation = session.get(Validation, commit.oid)
        entry.namespace, entry.name, entry.author = repo.namespace, repo.name, repo.namespace or None
        entry.source, entry.downloadable, entry.private = "hub", True, bool(repo.private)
        entry.is_adapter, entry.commit_oid, entry.revision = meta.is_adapter, commit.oid, branch
        entry.library, entry.method, entry.method_family = meta.library, meta.method, meta.method_family
        entry.config_hash, entry.base_model = meta.config_hash, meta.base_model
        entry.base_model_revision, entry.model_type = meta.base_model_revision, meta.model_type
        entry.model_class, entry.hidden_size = meta.model_class, meta.hidden_size
        entry.head_type, entry.num_labels = meta.head_type, meta.num_labels
        entry.adapter_type = (
            meta.card.get("adapter_type")
            if isinstance(meta.card.get("adapter_type"), str)
            else ("text_lang" if meta.task and meta.task == meta.language else None)
        )
        entry.task, entry.subtask, entry.language = meta.task, meta.subtask, meta.language
        entry.license, entry.description = meta.license, meta.description
        entry.size_bytes, entry.num_params = meta.size_bytes, meta.num_params
        entry.downloads = repo.downloads or 0
        entry.score = next(iter(meta.metrics.values()), None)
        entry.validation_status = validation.status if validation is not None else "pending"
        entry.data = data
        entry.updated_at = commit.created_at
        entry.search_text = build_search_text(
            entry, extra=[*meta.tags, *meta.languages, meta.adapter_name or ""]
        )
    session.flush()
    if version is None:
        version = IndexVersion(entry_id=entry.id, version=commit.oid)
        session.add(version)
    version.commit_oid, version.config_hash, version.method = commit.oid, meta.config_hash, meta.method
    version.created_at = commit.created_at
    version.data = {"method": meta.method, "base_model": meta.base_model, "warnings": meta.warnings}
    session.flush()
    return entry


def _hub_model_type(session, store, base_model: str) -> str | None:
    """`model_type` from the config.json of a base model that is a repository of this hub, if any."""
    value = (hub_base_config(session, store, base_model) or {}).get("model_type")
    return value if isinstance(value, str) else None


def hub_base_config(session, store, base_model: str) -> dict[str, Any] | None:
    """The config.json of a base model that is a public repository of this hub (main branch), if any."""
    ns, _, name = base_model.rpartition("/")
    repo = session.scalar(select(Repo).where(Repo.namespace == ns, Repo.name == name))
    if repo is None or repo.private:
        return None
    ref = session.scalar(select(Ref).where(Ref.repo_id == repo.id, Ref.kind == "branch", Ref.name == "main"))
    f = session.get(CommitFile, (ref.commit_oid, "config.json")) if ref is not None else None
    if f is None or f.blob.size > MAX_METADATA_BYTES:
        return None
    try:
        with store.open(f.blob_sha256) as fh:
            value = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def update_validation(session, commit_oid: str, status: str) -> None:
    """Copies a validation result into the index row of the repository whose indexed commit it is."""
    session.execute(
        update(IndexEntry).where(IndexEntry.commit_oid == commit_oid).values(validation_status=status)
    )


def build_search_text(e: IndexEntry, extra: list[str] | None = None) -> str:
    parts = [
        e.full_name,
        e.name,
        e.author,
        e.description,
        e.base_model,
        e.model_type,
        e.method,
        e.task,
        e.subtask,
        e.language,
        e.license,
        e.head_type,
        e.adapter_type,
        e.library,
        *(extra or []),
    ]
    return " ".join(str(p) for p in parts if p).lower()


def reindex_all(db, store) -> int:
    """Indexes the head of `main` of every repository again (after an upgrade of the extractor, or for a
    database written before the index existed). Returns the number of repositories indexed."""
    with db.session() as s:
        heads = s.execute(
            select(Ref.repo_id, Ref.commit_oid).where(Ref.kind == "branch", Ref.name == "main")
        ).all()
    for repo_pk, oid in heads:
        with db.session() as s:
            index_commit(s, s.get(Repo, repo_pk), s.get(Commit, oid), store, branch="main")
    return len(heads)

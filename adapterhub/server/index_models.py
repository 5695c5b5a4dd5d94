"""Tables of the adapter index and of the taxonomy.

* ``index_entries``: one row per repository (its latest indexed commit on the default branch), or per
  legacy AdapterHub card (``source='legacy'``, metadata only: the weights cannot be downloaded here).
  Facet columns have covering indexes (column, is_adapter, private); ``search_text`` is a lower-cased
  concatenation of the text fields, searched with LIKE: on SQLite through an FTS5 trigram table
  (``index_fts``), on PostgreSQL through a pg_trgm GIN index (both made by migration 0003) or, for plain words,
  through a GIN index of its words and the table of words ``index_words`` (migration 0009).
* ``index_versions``: one row per indexed commit of a repository (or per version of a legacy card), so a
  pinned revision resolves with its own config hash.
* ``taxonomy_tasks`` / ``taxonomy_subtasks`` / ``taxonomy_languages``: the task -> subtask tree and the
  languages, seeded from the legacy AdapterHub index (see ``taxonomy.py``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from adapterhub.server.db import Base
from adapterhub.server.models import utcnow


#: facet columns; each gets an index (column, is_adapter, private) that covers the facet count queries (on
#: PostgreSQL with the other facet columns included: :func:`facet_include`)
FACET_COLUMNS = (
    "base_model",
    "model_type",
    "task",
    "subtask",
    "language",
    "method",
    "head_type",
    "license",
    "author",
    "library",
    "source",
)


def facet_include(col: str) -> list[str]:
    """PostgreSQL: what the index of facet ``col`` carries besides its key (migration 0007): the other facet
    columns and ``repo_pk``, so that counting facets under filters is an index-only scan."""
    return [c for c in FACET_COLUMNS if c != col] + ["repo_pk"]


class IndexEntry(Base):
    __tablename__ = "index_entries"
    __table_args__ = tuple(
        Index(f"ixf_index_entries_{c}", c, "is_adapter", "private", postgresql_include=facet_include(c))
        for c in FACET_COLUMNS
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_pk: Mapped[int | None] = mapped_column(
        ForeignKey("repos.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    full_name: Mapped[str] = mapped_column(String(300), unique=True)  # "namespace/name"
    namespace: Mapped[str] = mapped_column(String(96), default="")
    name: Mapped[str] = mapped_column(String(200))
    author: Mapped[str | None] = mapped_column(String(96), nullable=True)  # owner / org
    source: Mapped[str] = mapped_column(String(8), default="hub")  # hub | legacy
    downloadable: Mapped[bool] = mapped_column(Boolean, default=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    is_adapter: Mapped[bool] = mapped_column(Boolean, default=False)
    commit_oid: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revision: Mapped[str | None] = mapped_column(String(255), nullable=True)  # branch or legacy version

    library: Mapped[str | None] = mapped_column(String(16), nullable=True)
    method: Mapped[str | None] = mapped_column(String(40), nullable=True)
    method_family: Mapped[str | None] = mapped_column(String(40), nullable=True)
    config_hash: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    base_model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    base_model_revision: Mapped[str | None] = mapped_column(String(255), nullable=True)
    model_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_class: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hidden_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    head_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    num_labels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    adapter_type: Mapped[str | None] = mapped_column(String(32), nullable=True)  # text_task | text_lang
    task: Mapped[str | None] = mapped_column(String(128), nullable=True)
    subtask: Mapped[str | None] = mapped_column(String(128), nullable=True)
    language: Mapped[str | None] = mapped_column(String(32), nullable=True)
    license: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    num_params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    validation_status: Mapped[str | None] = mapped_column(String(10), nullable=True)
    search_text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # the full extracted metadata
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)

    versions: Mapped[list[IndexVersion]] = relationship(
        back_populates="entry",
        cascade="all, delete-orphan",
        order_by="IndexVersion.created_at.desc()",
        lazy="selectin",
    )


class IndexVersion(Base):
    __tablename__ = "index_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version", name="uq_index_versions_entry_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("index_entries.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(255))  # commit oid (hub) or version name (legacy)
    commit_oid: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    config_hash: Mapped[str | None] = mapped_column(String(40), nullable=True)
    method: Mapped[str | None] = mapped_column(String(40), nullable=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    entry: Mapped[IndexEntry] = relationship(back_populates="versions")


class TaxonomyTask(Base):
    __tablename__ = "taxonomy_tasks"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="text_task")  # text_task | text_lang
    displayname: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")


class TaxonomySubtask(Base):
    __tablename__ = "taxonomy_subtasks"
    __table_args__ = (UniqueConstraint("task", "name", name="uq_taxonomy_subtasks_task_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32), default="text_task")
    displayname: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(32), nullable=True)
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    higher_is_better: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    url: Mapped[str | None] = mapped_column(String(500), nullable=True)


class TaxonomyLanguage(Base):
    __tablename__ = "taxonomy_languages"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")

"""Core tables of the hub: accounts (users and organisations), tokens, repositories, immutable commits,
content-addressed blobs, the files of each commit, refs (branches and tags) and validation results.

A commit row never changes once written: it lists every file of the repository at that commit
(``CommitFile``), each pointing to a ``Blob`` (sha256 of the content, also the blob-store key). Branches
move, tags pin; both are ``Ref`` rows. Validation results live in their own table because they arrive
after the commit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from adapterhub.server.db import Base


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Account(Base):
    """A user (``kind='user'``) or an organisation (``kind='org'``); both own repositories under ``name``."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(8), default="user")
    fullname: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Membership(Base):
    """A user belongs to an organisation with a role (``admin``, ``write`` or ``read``)."""

    __tablename__ = "memberships"
    org_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(8), default="write")


class Token(Base):
    """An access token; only its sha256 is stored. ``scope`` is ``read`` or ``write``."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scope: Mapped[str] = mapped_column(String(8), default="read")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    account: Mapped[Account] = relationship(lazy="joined")


class Repo(Base):
    """A repository ``namespace/name`` (namespace may be empty for canonical ids like ``bert-base-uncased``)."""

    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("repo_type", "namespace", "name", name="uq_repos_type_ns_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_type: Mapped[str] = mapped_column(String(16), default="model")
    namespace: Mapped[str] = mapped_column(String(96), default="", index=True)
    name: Mapped[str] = mapped_column(String(96))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class Blob(Base):
    """Content-addressed file content: ``sha256`` is also the key in the blob store."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    git_oid: Mapped[str] = mapped_column(String(40))  # git blob sha1, what HF calls blobId / oid
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Commit(Base):
    """An immutable commit: its id is a 40-hex sha1 over parent, files and message."""

    __tablename__ = "commits"
    oid: Mapped[str] = mapped_column(String(40), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    parent_oid: Mapped[str | None] = mapped_column(String(40), nullable=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)

    files: Mapped[list[CommitFile]] = relationship(
        back_populates="commit", order_by="CommitFile.path", lazy="select"
    )


class CommitFile(Base):
    """One file of one commit (the full tree is stored per commit)."""

    __tablename__ = "commit_files"
    commit_oid: Mapped[str] = mapped_column(ForeignKey("commits.oid", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)

    commit: Mapped[Commit] = relationship(back_populates="files")
    blob: Mapped[Blob] = relationship(lazy="joined")


class Ref(Base):
    """A branch (``kind='branch'``, moves with each commit) or a tag (``kind='tag'``, pins one commit)."""

    __tablename__ = "refs"
    __table_args__ = (UniqueConstraint("repo_id", "kind", "name", name="uq_refs_repo_kind_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(255))
    commit_oid: Mapped[str] = mapped_column(ForeignKey("commits.oid"))
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Validation(Base):
    """Result of validating one commit: ``status`` is pending, running, passed, failed or skipped."""

    __tablename__ = "validations"
    commit_oid: Mapped[str] = mapped_column(ForeignKey("commits.oid", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    method: Mapped[str | None] = mapped_column(String(40), nullable=True)
    num_params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    errors: Mapped[list] = mapped_column(JSON, default=list)
    report: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # the validation queue (``adapterhub worker``, queue.py): who holds it, until when, how often it was taken
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

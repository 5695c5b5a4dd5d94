"""File hashes the hub protocol lists: sha256 (LFS files, blob names) and git blob ids (``blobId``/``oid``)."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_hasher(size: int):
    """A sha1 already fed git's ``blob <size>\\0`` header: feed it the ``size`` bytes of the content."""
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


def git_blob_id(path: str | os.PathLike) -> str:
    """The git object id of a file's content (what the hub lists as ``blobId`` for small, non-LFS files)."""
    digest = git_blob_hasher(os.stat(path).st_size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

"""Blob storage behind a small interface. ``LocalBlobStore`` keeps content-addressed files on disk
(``<root>/<aa>/<bb>/<sha256>``); an object store would implement the same five methods.

Blobs enter the store only through :meth:`BlobStore.put_file`, which takes a finished temporary file whose
sha256 the caller computed while writing it; the store re-checks the size, then moves it into place
atomically (rename), so a reader never sees a partial blob.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def put_file(self, tmp_path: Path, sha256: str, size: int) -> bool:
        """Move ``tmp_path`` into the store as ``sha256``; returns False if it was already there."""

    def open(self, sha256: str) -> BinaryIO: ...

    def local_path(self, sha256: str) -> Path | None:
        """A file path to serve from directly, or None (an object store streams through :meth:`open`)."""

    def delete(self, sha256: str) -> None: ...


class LocalBlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def put_file(self, tmp_path: Path, sha256: str, size: int) -> bool:
        dest = self._path(sha256)
        if dest.is_file() and dest.stat().st_size == size:
            Path(tmp_path).unlink(missing_ok=True)
            return False
        actual = os.path.getsize(tmp_path)
        if actual != size:
            raise ValueError(f"blob {sha256}: temporary file has {actual} bytes, expected {size}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
        return True

    def open(self, sha256: str) -> BinaryIO:
        return open(self._path(sha256), "rb")

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

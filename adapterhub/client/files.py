"""File primitives of the cache: atomic writes (through the common writer) and symlinks, JSON files remembered by
their identity on disk, a cheap inter-process lock."""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from ..common import files

try:
    import fcntl
except ImportError:  # Windows: the cache uses filelock's own locks
    fcntl = None  # type: ignore[assignment]

CACHE_MODE = 0o644  # cache files are readable by others, as the folder allows (tokens live elsewhere)


def ensure_dir(folder: str | os.PathLike) -> None:
    os.makedirs(folder, exist_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """The common atomic writer (:mod:`adapterhub.common.files`) for a cache file. No fsync (it cost ~7 ms a file
    here): whatever a crash leaves is re-checked, since a manifest or ref that does not parse counts as missing and
    a blob is hashed again whenever its identity on disk is not the one recorded."""
    path = os.fspath(path)
    files.atomic_write_bytes(path, data, mode=CACHE_MODE)
    _JSON_MEMO.pop(path, None)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, sort_keys=True).encode())  # no indent: the C encoder


_JSON_MEMO: dict[str, tuple[tuple, Any]] = {}


def file_identity(path: str) -> tuple | None:
    """(inode, size, mtime, ctime) of a file, None if it is missing: every write here replaces the file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed content of a JSON file, None if it is missing or unreadable. Parsed files are remembered by
    their identity on disk (inode, size, mtime, ctime; every write here replaces the file), so reading an
    unchanged manifest again costs one ``stat``. The answer is shared: callers must not modify it."""
    p = os.fspath(path)
    identity = file_identity(p)
    if identity is None:
        _JSON_MEMO.pop(
            p, None
        )  # a file made at this path later may reuse the inode: never compare with this one
        return None
    known = _JSON_MEMO.get(p)
    if known is not None and known[0] == identity:
        return known[1]
    try:
        with open(p, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if len(_JSON_MEMO) >= 4096:
        _JSON_MEMO.clear()
    _JSON_MEMO[p] = (identity, data)
    return data


def atomic_symlink(target: str, link: str | os.PathLike) -> None:
    """Make ``link`` point to ``target``; a link is never seen half-made (``symlink`` itself is atomic, and an
    existing link to elsewhere is replaced by renaming a new one over it)."""
    link = os.fspath(link)
    try:
        os.symlink(target, link)
        return
    except FileExistsError:
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                return
    except FileNotFoundError:  # no folder yet (or it went away)
        ensure_dir(os.path.dirname(link))
        with contextlib.suppress(FileExistsError):  # else replaced below
            os.symlink(target, link)
            return
    tmp = files.temp_path(link, ".lnk")
    try:
        os.symlink(target, tmp)
    except FileExistsError:  # left by a killed process with the same pid
        os.unlink(tmp)
        os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FlockLock:
    """An exclusive lock between processes and threads on a lock file (``flock``, which ``filelock`` uses on POSIX
    too, so both exclude each other) at a fraction of ``filelock``'s cost: one open, one flock, one close."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout
        self._fd: int | None = None

    def __enter__(self) -> FlockLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(
                        f"the cache lock {self.path} was held by another process for {self.timeout:.0f} s"
                    ) from None
                time.sleep(0.005)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file releases the lock

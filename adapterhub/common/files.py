"""Writing a file so that a reader sees the old content or the whole new one, never part of it: the one atomic
writer of the project (the library's saved adapters, the client's cache and settings, the programs' outputs).

The new content goes to a temporary file beside the target, which then replaces the target by a rename. The
temporary name is this process's own (``.<name>.<pid>.<counter><suffix>``); a file that a killed process with the
same pid left under that name (containers repeat pids) is overwritten, not an error, and never through a
symlink (``O_NOFOLLOW``). If anything fails, the temporary file is removed and the target is as it was.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator

TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
_TMP_COUNTER = itertools.count()


def temp_path(final: str | os.PathLike, suffix: str = ".tmp") -> str:
    """A name beside ``final`` that no other process or thread uses: ``.<name>.<pid>.<n><suffix>``."""
    folder, name = os.path.split(os.fspath(final))
    return os.path.join(folder, f".{name}.{os.getpid()}.{next(_TMP_COUNTER)}{suffix}")


def _open_temp(tmp: str, mode: int) -> int:
    """Open ``tmp`` for writing (made, or emptied if a stale file has the name), making its folder if it is
    missing; a stale file more open than ``mode`` is narrowed to it."""
    try:
        fd = os.open(tmp, TEMP_FLAGS, mode)
    except FileNotFoundError:  # no folder (yet, or any more: e.g. `adapterhub cache rm`)
        os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
        fd = os.open(tmp, TEMP_FLAGS, mode)
    try:
        have = os.fstat(fd).st_mode & 0o777
        if have & ~mode:
            os.fchmod(fd, have & mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike, *, mode: int = 0o600, suffix: str = ".tmp"
) -> Iterator[tuple[str, int]]:
    """Write a new ``path``: yields (the temporary file's name, a descriptor open for writing to it). When the
    block ends without an error the descriptor is closed and the file renamed to ``path``; otherwise it is removed
    and the error raised. ``mode``: the permissions of a new file (owner only by default; the umask applies)."""
    path = os.fspath(path)
    tmp = temp_path(path, suffix)
    fd = _open_temp(tmp, mode)
    try:
        try:
            yield tmp, fd
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to the descriptor ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, mode: int = 0o600) -> None:
    """``write(tmp)`` fills a temporary file beside ``path`` (by its name), which then replaces ``path``."""
    with replacing(path, mode=mode) as (tmp, _fd):
        write(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int = 0o600) -> None:
    """:func:`atomic_write` of ``data``, through the descriptor (no buffered file object)."""
    with replacing(path, mode=mode) as (_tmp, fd):
        write_all(fd, data)


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int = 0o600) -> None:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)

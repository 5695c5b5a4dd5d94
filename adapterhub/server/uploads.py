"""Checks shared by every way content enters the hub (the HF commit endpoint and the web upload form):
safe relative paths, size limits, no pickle files, safe zip extraction, and a staging area in which new
files are written and hashed before anything is stored.

Everything here raises :class:`UploadError` with a message meant for the uploader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import pickletools
import posixpath
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from adapterhub.common.hashing import git_blob_hasher
from adapterhub.server.errors import UploadError
from adapterhub.server.settings import Settings

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".npy", ".npz")
CHUNK = 1024 * 1024


@dataclasses.dataclass
class Limits:
    max_file_size: int
    max_commit_size: int
    max_files: int
    max_zip_ratio: float

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(s.max_file_size, s.max_commit_size, s.max_files, s.max_zip_ratio)


MAX_NAME_BYTES = 255  # one path component, in UTF-8: the limit of ext4, APFS, NTFS (in UTF-16 units)
MAX_PATH_CHARS = 1000


def clean_path(path: str) -> str:
    """The normalised relative path, or UploadError for anything a client could not write as it is named
    or that would mislead a reader: absolute paths, ``..``, backslashes, ``.git`` in any letter case,
    control, format (bidi overrides, zero-width) and separator characters, over-long names."""
    if not isinstance(path, str) or not path:
        raise UploadError("empty file path")
    if "\x00" in path or "\\" in path:
        raise UploadError(f"invalid file path {path!r}: no backslashes or NUL characters allowed")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UploadError(f"invalid file path {path!r}: absolute paths are not allowed")
    bad = next((c for c in path if unicodedata.category(c) in UNSAFE_CATEGORIES), None)
    if bad is not None:
        raise UploadError(
            f"invalid file path {path!r}: character U+{ord(bad):04X} ({unicodedata.name(bad, 'a control character')}) "
            "is not allowed (control, invisible and text-direction characters hide a file's real name)"
        )
    parts = path.split("/")
    if any(p == ".." for p in parts):
        raise UploadError(f"invalid file path {path!r}: '..' is not allowed")
    norm = posixpath.normpath(path)
    if norm in (".", "") or norm.startswith("../"):
        raise UploadError(f"invalid file path {path!r}")
    if len(norm) > MAX_PATH_CHARS:
        raise UploadError(f"file path too long ({len(norm)} characters, at most {MAX_PATH_CHARS})")
    for part in norm.split("/"):
        if part.rstrip(". ").lower() == ".git":
            raise UploadError(f"invalid file path {path!r}: '.git' is reserved (in any letter case)")
        odd = sorted(set(part) & WINDOWS_FORBIDDEN)
        if odd or part != part.rstrip(". ") or part.split(".")[0].rstrip(" ").upper() in WINDOWS_DEVICES:
            why = f"the characters {' '.join(odd)}" if odd else "a device name or a trailing dot or space"
            raise UploadError(
                f"invalid file path {path!r}: {part!r} has {why}, which Windows clients cannot write"
            )
        if len(part.encode()) > MAX_NAME_BYTES:
            raise UploadError(
                f"invalid file path: the name {part[:40]!r}... is {len(part.encode())} bytes long "
                f"(at most {MAX_NAME_BYTES} bytes per file or folder name)"
            )
    return norm


WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))]
)
# Cc control, Cf format (bidi overrides, zero-width characters), Cs lone surrogates, Zl/Zp line separators
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_tree(paths) -> None:
    """Refuse a tree that a client cannot write to a case-insensitive or case-sensitive file system: a file
    and a folder of the same name, or two names that differ only in letter case."""
    seen: dict[str, str] = {}
    for p in sorted(paths):
        key = p.casefold()
        if key in seen:
            raise UploadError(
                f"{p} and {seen[key]} differ only in letter case (clients on macOS and Windows cannot "
                "hold both)",
                422,
                "UnsafeTree",
            )
        seen[key] = p
    for p in sorted(paths):
        parts = p.casefold().split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in seen:
                raise UploadError(
                    f"{seen[folder]} is a file, and {p} needs a folder of that name", 422, "UnsafeTree"
                )


def refuse_pickle_name(path: str) -> None:
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise UploadError(
            f"{path}: pickle-based files ({', '.join(PICKLE_SUFFIXES)}) are refused because loading them can "
            "run arbitrary code; save the weights with safetensors instead (e.g. adapter.safetensors)",
            status=422,
            code="PickleRefused",
        )


#: the largest single argument (a string or bytes an opcode carries) read while scanning content as a pickle
PICKLE_ARGUMENT_LIMIT = 64 * 1024 * 1024


class _Scanned:
    """A read-only view of ``size`` bytes of ``stream`` for :func:`pickletools.dis`: a read past the end or of
    more than :data:`PICKLE_ARGUMENT_LIMIT` bytes ends the scan (as a truncated pickle ends an unpickler)
    without reading, so that a length field in other data never makes the scan hold gigabytes."""

    def __init__(self, stream: BinaryIO, size: int):
        self.stream, self.size, self.pos = stream, size, 0

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.size - self.pos or n > PICKLE_ARGUMENT_LIMIT:
            raise EOFError("past the end of the content")
        data = self.stream.read(n)
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        line = self.stream.readline(min(self.size - self.pos, PICKLE_ARGUMENT_LIMIT))
        self.pos += len(line)
        return line


def looks_like_pickle(stream: BinaryIO, size: int) -> bool:
    """Whether the ``size`` bytes of ``stream`` are a pickle of protocol 2 or later, or one of any protocol that
    gets to import something (and so call it) when loaded. The content is read as an unpickler reads it, opcode by opcode with ``pickletools.dis``' checks
    (stack, memo, argument sizes), until it stops, breaks or ends; it counts if an opcode that imports or calls
    was reached before that, since an unpickler runs each opcode as it reads it. Other formats and random bytes
    break within a few opcodes, whatever length fields they happen to hold; a call after megabytes of padding
    (a long string first) is still reached, up to arguments of :data:`PICKLE_ARGUMENT_LIMIT` bytes."""
    scanned = _Scanned(stream, size)
    while scanned.pos < size:  # pickles one after another (torch.save's legacy format writes five)
        listing = io.StringIO()
        try:
            pickletools.dis(scanned, out=listing)
            passed, complete = listing.getvalue().splitlines(), True
        except Exception as error:  # noqa: BLE001 - the pickle breaks here (or is not one): what ran counts
            passed, complete = listing.getvalue().splitlines(), False
            if isinstance(error, ValueError) and any(s in str(error) for s in _CHECKED_AFTER_LISTING):
                passed = passed[:-1]  # dis lists an opcode before its stack / memo check: this one failed it
        # each line of the listing is one opcode: "  pos: code NAME argument"
        listed = [parts[2:] for parts in map(str.split, passed) if len(parts) > 2]
        names = [entry[0] for entry in listed]
        if any(_imports(names, i) for i in range(len(names))):
            return True
        if len(listed) > 1 and listed[0] in (
            ["PROTO", str(p)] for p in range(2, pickle.HIGHEST_PROTOCOL + 1)
        ):
            return True  # a pickle of protocol 2 or later, whatever it holds
        if not complete:
            return False
    return False


#: the errors of ``pickletools.dis`` raised after it listed the opcode that fails (its stack and memo checks)
_CHECKED_AFTER_LISTING = (
    "tries to pop",
    "no MARK exists",
    "memo key",
    "stack is empty",
    "markobject in the memo",
)


#: the opcodes through which a pickle reaches code: importing a module attribute by name. Calls (REDUCE, OBJ,
#: NEWOBJ, BUILD) need an object that one of these produced; EXT1/2/4 reach only the copyreg extension registry
#: and PERSID/BINPERSID only the loader's persistent_load (a plain unpickler refuses both), so random bytes
#: that happen to start with those opcodes do not count. torch.save's pickles always import their classes.
CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
#: what STACK_GLOBAL's module and attribute names come from (an unpickler takes only strings there)
_STRING_PUSHES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                            "SHORT_BINSTRING", "GET", "BINGET", "LONG_BINGET"})  # fmt: skip
_MEMO_STORES = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})


def _imports(names: list[str], i: int) -> bool:
    """Whether opcode ``i`` of a listing imports: GLOBAL and INST always, STACK_GLOBAL when the two values
    before it (memo stores aside) can be strings."""
    if names[i] != "STACK_GLOBAL":
        return names[i] in CODE_OPCODES
    pushes = [name for name in names[:i] if name not in _MEMO_STORES][-2:]
    return len(pushes) == 2 and all(name in _STRING_PUSHES for name in pushes)


def refuse_pickle_content(path: str, stream: BinaryIO, size: int) -> None:
    """Refuse content that is a pickle (any protocol), whatever the file is called."""
    if looks_like_pickle(stream, size):
        raise UploadError(
            f"{path}: the content is a Python pickle; pickle files are refused because loading them can run "
            "arbitrary code, use safetensors",
            status=422,
            code="PickleRefused",
        )


def refuse_pickle_file(path: str, file: Path) -> None:
    """:func:`refuse_pickle_content` on a staged file, and for a zip archive (``torch.save``'s format) on
    each member: a member named ``*.pkl`` or holding a pickle is refused wherever it sits in the archive."""
    with open(file, "rb") as f:
        refuse_pickle_content(path, f, os.path.getsize(file))
        f.seek(0)
        if f.read(2) != b"PK":
            return
    try:
        with zipfile.ZipFile(file) as zf:
            for m in zf.infolist():
                if m.is_dir():
                    continue
                if m.filename.lower().endswith((".pkl", ".pickle")):
                    raise UploadError(
                        f"{path}: the archive holds {m.filename!r}, a pickle (torch.save format); pickle files "
                        "are refused, use safetensors",
                        422,
                        "PickleRefused",
                    )
                with zf.open(m) as member:
                    refuse_pickle_content(f"{path}:{m.filename}", member, m.file_size)
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, zlib.error):
        return  # not a readable zip: nothing loads it as one


STAGING_PREFIXES = ("stage-", "validate-")  # the temporary folders of uploads and of load checks


def remove_stale_staging(tmp_root: Path, grace_seconds: float = 3600.0) -> int:
    """Remove the temporary folders that killed uploads and load checks left in ``tmp_root``: those in which
    nothing changed for ``grace_seconds`` (a folder in use is written to, so another process's upload in
    flight keeps its own). Returns how many were removed."""
    import time

    cutoff = time.time() - grace_seconds
    removed = 0
    for d in Path(tmp_root).glob("*"):
        if not d.is_dir() or d.is_symlink() or not d.name.startswith(STAGING_PREFIXES):
            continue
        try:
            newest = max([d.lstat().st_mtime] + [p.lstat().st_mtime for p in d.rglob("*")])
        except FileNotFoundError:  # removed meanwhile by its own upload
            continue
        if newest < cutoff:
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


@dataclasses.dataclass
class StagedFile:
    path: str
    tmp: Path
    sha256: str
    git_oid: str
    size: int


def git_blob_oid(tmp: Path, size: int) -> str:
    h = git_blob_hasher(size)
    with open(tmp, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Staging:
    """A private temporary folder for the new files of one upload. Use as a context manager: the folder
    and everything not moved into the blob store is deleted on exit, whatever happened."""

    def __init__(self, tmp_root: Path, limits: Limits):
        Path(tmp_root).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="stage-", dir=tmp_root))
        self.limits = limits
        self.files: dict[str, StagedFile] = {}
        self.total = 0
        self._n = 0

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _check_count(self, path: str) -> None:
        if path not in self.files and len(self.files) >= self.limits.max_files:
            raise UploadError(
                f"too many files in one upload (at most {self.limits.max_files})", 413, "TooManyFiles"
            )

    def add_bytes(self, path: str, data: bytes) -> StagedFile:
        path = clean_path(path)
        refuse_pickle_name(path)
        self._check_count(path)
        self._check_size(path, len(data), self.total + len(data))
        tmp = self._tmp()
        with open(tmp, "wb") as f:
            f.write(data)
        refuse_pickle_file(path, tmp)
        sha = hashlib.sha256(data).hexdigest()
        oid = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        return self._record(path, tmp, sha, oid, len(data))

    def add_stream(self, path: str, src: BinaryIO, declared_size: int | None = None) -> StagedFile:
        """Copy ``src`` into staging, enforcing the limits on the bytes actually read."""
        path = clean_path(path)
        refuse_pickle_name(path)
        self._check_count(path)
        if declared_size is not None:
            self._check_size(path, declared_size, self.total + declared_size)
        tmp = self._tmp()
        h = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                self._check_size(path, size, self.total + size)
                h.update(chunk)
                out.write(chunk)
        refuse_pickle_file(path, tmp)
        return self._record(path, tmp, h.hexdigest(), git_blob_oid(tmp, size), size)

    def _check_size(self, path: str, size: int, total: int) -> None:
        if size > self.limits.max_file_size:
            raise UploadError(
                f"{path}: file too large ({size} bytes; the limit is {self.limits.max_file_size} bytes)",
                413,
                "FileTooLarge",
            )
        if total > self.limits.max_commit_size:
            raise UploadError(
                f"upload too large (more than {self.limits.max_commit_size} bytes in one commit)",
                413,
                "CommitTooLarge",
            )

    def _tmp(self) -> Path:
        self._n += 1
        return self.dir / f"f{self._n}"

    def _record(self, path: str, tmp: Path, sha: str, oid: str, size: int) -> StagedFile:
        old = self.files.get(path)
        if old is not None:
            self.total -= old.size
            old.tmp.unlink(missing_ok=True)
        sf = StagedFile(path, tmp, sha, oid, size)
        self.files[path] = sf
        self.total += size
        return sf


def extract_zip(
    src: str | os.PathLike | BinaryIO, staging: Staging, strip_common_root: bool = True
) -> list[str]:
    """Stage every file of a zip archive after checking all members first: no absolute paths, no ``..``,
    no symlinks, bounded file count, sizes and compression ratio (counted on the bytes actually inflated,
    not on the archive's own claims). Returns the staged paths."""
    limits = staging.limits
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(f"not a valid zip archive: {e}", 400, "BadZip") from e
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > limits.max_files:
            raise UploadError(
                f"zip has {len(members)} files (at most {limits.max_files})", 413, "TooManyFiles"
            )
        names = []
        declared_total = 0
        for m in members:
            raw = m.filename
            if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or raw.startswith("\\"):
                raise UploadError(f"zip member {raw!r}: absolute paths are not allowed", 400, "UnsafeZip")
            if ".." in raw.replace("\\", "/").split("/"):
                raise UploadError(f"zip member {raw!r}: '..' paths are not allowed", 400, "UnsafeZip")
            if stat.S_ISLNK(m.external_attr >> 16):
                raise UploadError(f"zip member {raw!r}: symbolic links are not allowed", 400, "UnsafeZip")
            if m.flag_bits & 0x1:
                raise UploadError(f"zip member {raw!r}: encrypted archives are not supported", 400, "BadZip")
            clean_path(raw)
            refuse_pickle_name(raw)
            declared_total += m.file_size
            if m.file_size > limits.max_file_size or declared_total > limits.max_commit_size:
                raise UploadError(
                    f"zip member {raw!r}: uncompressed size over the limit "
                    f"({limits.max_file_size} bytes per file, {limits.max_commit_size} per upload)",
                    413,
                    "FileTooLarge",
                )
            if m.file_size > CHUNK and m.file_size > limits.max_zip_ratio * max(m.compress_size, 1):
                raise UploadError(
                    f"zip member {raw!r}: compression ratio {m.file_size / max(m.compress_size, 1):.0f}:1 "
                    f"is over {limits.max_zip_ratio:.0f}:1 (zip bomb?)",
                    413,
                    "ZipBomb",
                )
            names.append(raw)
        root = ""
        if strip_common_root and names:
            firsts = {n.split("/", 1)[0] for n in names}
            if len(firsts) == 1 and all("/" in n for n in names):
                root = firsts.pop() + "/"
        staged = []
        for m in members:
            with zf.open(m) as f:
                guarded = _RatioGuard(f, m, limits)
                staged.append(staging.add_stream(m.filename[len(root) :], guarded).path)
        return staged


class _RatioGuard:
    """Wraps a zip member stream and stops as soon as it inflates past its declared size or ratio limit."""

    def __init__(self, f: BinaryIO, info: zipfile.ZipInfo, limits: Limits):
        self.f, self.info, self.limits, self.n = f, info, limits, 0
        self.cap = max(info.file_size, 0)

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.n += len(chunk)
        if self.n > self.cap or (
            self.n > CHUNK and self.n > self.limits.max_zip_ratio * max(self.info.compress_size, 1)
        ):
            raise UploadError(
                f"zip member {self.info.filename!r} inflates beyond its declared size (zip bomb?)",
                413,
                "ZipBomb",
            )
        return chunk

"""Reading a bundle, the hub's answer to ``/api/adapters/bundle`` (see ``adapterhub.server.bundle``), into the
cache: a tar whose first member lists the resolved commit and its files with their sha256, followed by the
files. One request instead of a resolution, a file list and one request per file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, NamedTuple, cast

from .cache import Cache, ExpectedFile, RepoCache, check_bytes, ensure_dir
from ..common.files import replacing, write_all
from ..common.wire import BUNDLE_MANIFEST_NAME, COMMIT_RE
from .download import CHUNK_SIZE, expected_files, fetch_file
from .errors import HubHTTPError, IntegrityError
from .files import CACHE_MODE
from .http import HubClient
from .progress import progress_bar

MAX_FILE = (
    16 * 1024 * 1024
)  # the client asks the hub to leave out larger files: they come one by one (resumable)
IN_MEMORY = 64 * 1024 * 1024  # answers up to this size are read whole and parsed without copying the files
WHOLE = (
    4 * 1024 * 1024
)  # ... and up to this size read in one piece (larger ones in chunks, for the progress bar)

Chunks = Iterable[bytes | memoryview]


def read_bundle(
    client: HubClient,
    cache: Cache,
    endpoint: str,
    response,
    *,
    label: str = "bundle",
    progress: bool | None = None,
    full_check: bool = False,
) -> tuple[dict, Path]:
    """Put the commit a bundle answer carries into the cache; returns (its manifest, which holds the hub's
    resolve answer, and the snapshot folder). Each file is hashed while it is written to a temporary name and
    gets its blob name only if size and sha256 match; the files the hub left out are fetched one by one; the
    manifest that makes the snapshot usable is written last. A snapshot already complete and intact
    (:meth:`RepoCache.check_snapshot`, with ``full_check`` for ADAPTERHUB_VERIFY=full) is kept."""
    total = int(response.headers.get("content-length") or 0)
    with progress_bar(progress if total else False, total, label) as advance:
        members = _members(response, total, advance)
        manifest, files = _manifest(members, endpoint)
        repo_id, commit = manifest["repo_id"], manifest["commit"]
        rc = cache.repo(endpoint, repo_id)
        where = f"{repo_id}@{commit[:12]} (bundle from {endpoint})"
        with rc.lock(f"snapshot-{commit}"):
            if rc.check_snapshot(commit, full=full_check) == []:
                return manifest, rc.snapshot_dir(commit)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rc.manifest_path(commit))
            expected = {f.path: f for f in files if f.path not in manifest["omitted"]}
            written: dict[str, dict] = {}
            ensure_dir(rc.blobs)
            partials = {n for n in os.listdir(rc.blobs) if n.endswith(".incomplete")}
            for member, chunks in members:
                exp = expected.pop(member.name, None)
                if exp is None or not member.isfile():
                    raise IntegrityError(f"{where}: unexpected member {member.name!r} in the bundle")
                digest = _write_blob(rc, exp, chunks, where)
                if f"{exp.key}.incomplete" in partials:  # an interrupted per-file download of it is done
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(rc.partial_path(exp))
                rc.link_file(commit, exp.path, digest)
                written[exp.path] = {"sha256": digest, "size": exp.size}
            if expected:
                raise IntegrityError(f"{where}: the bundle ended without {', '.join(sorted(expected))}")
            for exp in files:
                if exp.path in manifest["omitted"]:
                    digest = fetch_file(client, rc, commit, exp)
                    rc.link_file(commit, exp.path, digest)
                    written[exp.path] = {"sha256": digest, "size": exp.size}
            rc.write_manifest(commit, endpoint, dict(sorted(written.items())))
    return manifest, rc.snapshot_dir(commit)


def _members(
    response, total: int, advance: Callable[[int], None]
) -> Iterator[tuple[tarfile.TarInfo | _Member, Chunks]]:
    """(header, data) of each member. An answer of known, moderate size is read whole and its members are views
    into it; any other is read as a stream."""
    try:
        if 0 < total <= IN_MEMORY:
            if total <= WHOLE:
                body = response.read()  # one piece: no join, which would copy the files once more
                advance(len(body))
            else:
                body = b"".join(_advancing(response.iter_bytes(), advance))
            yield from _tar_members(body)
        else:
            reader = cast(IO[bytes], _ResponseReader(response, advance))  # stream mode only calls read()
            tar = tarfile.open(fileobj=reader, mode="r|")
            while (member := tar.next()) is not None:
                yield member, (_tar_chunks(tar.extractfile(member)) if member.isfile() else ())
    except tarfile.TarError as error:
        raise _not_a_tar(error) from None


def _not_a_tar(error: tarfile.TarError) -> IntegrityError:
    return IntegrityError(f"the bundle from the hub is not a complete tar archive ({error})")


class _Member(NamedTuple):
    """What :func:`read_bundle` reads of a tar member: the ``name``, ``size`` and ``isfile()`` of a ``TarInfo``."""

    name: str
    type: bytes
    size: int

    def isfile(self) -> bool:
        return self.type in tarfile.REGULAR_TYPES


def _tar_members(body: bytes) -> Iterator[tuple[_Member, Chunks]]:
    """The members of a tar held in memory, each with a view of its bytes (no copy). Reads ustar headers, the pax
    extended headers that ``tarfile`` writes (``path``, ``size``) and GNU long names: ~20x faster than ``tarfile``
    here, which counts when a cold load of a small adapter takes a few milliseconds. Header checksums and numbers
    are checked (sizes are plain digits, so every header moves forward); the files' bytes are checked against the
    manifest's sha256 by the caller."""
    view, offset = memoryview(body), 0
    pax: dict[str, str] = {}
    while offset + tarfile.BLOCKSIZE <= len(body):
        header = body[offset : offset + tarfile.BLOCKSIZE]
        if header.count(0) == tarfile.BLOCKSIZE:
            return  # the end-of-archive blocks
        if _checksum(header) != _octal(header[148:156], offset):
            raise tarfile.ReadError(f"bad header checksum at byte {offset}")
        kind = header[156:157]
        size = _octal(header[124:136], offset)
        if "size" in pax and kind not in _EXTENSIONS:
            size = _decimal(pax["size"], offset)
        start = offset + tarfile.BLOCKSIZE
        end = start + size
        if end > len(body):
            raise tarfile.ReadError(f"member at byte {offset} is cut short")
        offset = end + (-size % tarfile.BLOCKSIZE)
        if kind == tarfile.XHDTYPE:  # pax header of the next member
            pax = _pax_records(body[start:end])
            continue
        if kind == tarfile.XGLTYPE:  # pax global header: nothing the bundle uses
            continue
        if kind == tarfile.GNUTYPE_LONGNAME:  # GNU tar's long name of the next member
            pax = {**pax, "path": body[start:end].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")}
            continue
        name = pax.get("path")
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix and header[257:265] == tarfile.POSIX_MAGIC:
                name = prefix.decode("utf-8", "surrogateescape") + "/" + name
        pax = {}
        yield _Member(name.rstrip("/") if kind == tarfile.DIRTYPE else name, kind, size), (view[start:end],)


_EXTENSIONS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME)


def _checksum(header: bytes) -> int:
    """A tar header's checksum: the sum of its bytes, the checksum field itself counted as eight spaces."""
    return sum(header[:148]) + 8 * 0x20 + sum(header[156:])


def _octal(field: bytes, offset: int) -> int:
    digits = field.strip(b"\0 ") or b"0"
    if not _OCTAL.fullmatch(digits):  # int() would also take "-", "_" and "0o": a size must be plain digits
        raise tarfile.ReadError(f"bad number {field!r} in the header at byte {offset}")
    return int(digits, 8)


def _decimal(value: str, offset: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise tarfile.ReadError(f"bad pax size {value!r} in the header at byte {offset}")
    return int(value)


_OCTAL = re.compile(rb"[0-7]+")


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<length> <key>=<value>\\n"`` records of a pax extended header."""
    records, pos = {}, 0
    while pos < len(data):
        length, _, rest = data[pos : pos + 32].partition(b" ")
        try:
            n = int(length)
        except ValueError:
            raise tarfile.ReadError("malformed pax header") from None
        record = data[pos : pos + n]
        if n <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise tarfile.ReadError("malformed pax header")
        key, _, value = record[len(length) + 1 : -1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += n
    return records


def _tar_chunks(data) -> Iterator[bytes]:
    """The bytes of a member of a streamed tar, with a cut-short archive reported like one in :func:`_members`."""
    try:
        while chunk := data.read(CHUNK_SIZE):
            yield chunk
    except tarfile.TarError as error:
        raise _not_a_tar(error) from None


def _advancing(chunks: Iterable[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        advance(len(chunk))
        yield chunk


class _ResponseReader:
    """A file-like ``read(n)`` over a streamed response, for ``tarfile`` in stream mode."""

    def __init__(self, response, advance: Callable[[int], None]):
        self._chunks = _advancing(response.iter_bytes(), advance)
        self._buffer = bytearray()  # deleting from the front of a bytearray does not copy the rest

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0 or n > len(self._buffer):
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def _manifest(
    members: Iterator[tuple[tarfile.TarInfo | _Member, Chunks]], endpoint: str
) -> tuple[dict, list[ExpectedFile]]:
    first, chunks = next(members, (None, ()))
    if (
        first is None
        or first.name != BUNDLE_MANIFEST_NAME
        or not first.isfile()
        or first.size > 16 * 1024 * 1024
    ):
        raise HubHTTPError(f"the bundle from {endpoint} does not start with {BUNDLE_MANIFEST_NAME}")
    try:
        manifest = json.loads(b"".join(chunks))
        repo_id, commit, listed = manifest["repo_id"], manifest["commit"], manifest["files"]
        siblings = [
            {"rfilename": f["path"], "size": f["size"], "lfs": {"sha256": f["sha256"]}} for f in listed
        ]
        omitted = set(manifest.get("omitted") or [])
    except (ValueError, KeyError, TypeError) as error:
        raise HubHTTPError(f"the bundle from {endpoint} has an unreadable manifest ({error})") from None
    if not isinstance(repo_id, str) or not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise HubHTTPError(f"the bundle from {endpoint} names no repository and commit")
    files = expected_files({"id": repo_id, "sha": commit, "siblings": siblings})
    if any(not f.sha256 for f in files) or len({f.path for f in files}) != len(files):
        raise HubHTTPError(
            f"the bundle of {repo_id}@{commit} from {endpoint} lists a file twice or without sha256"
        )
    manifest["omitted"] = omitted
    return manifest, files


def _write_blob(rc: RepoCache, exp: ExpectedFile, chunks: Chunks, where: str) -> str:
    """Write ``chunks`` to the blob of ``exp`` through the common atomic writer, checking the bytes before the
    blob gets its name; returns their sha256 (the one ``exp`` expects: every file of a bundle lists one)."""
    sha, size = hashlib.sha256(), 0
    with replacing(rc.blob_file(exp.key), mode=CACHE_MODE, suffix=".part") as (_tmp, fd):
        for chunk in chunks:
            write_all(fd, chunk)
            sha.update(chunk)
            size += len(chunk)
        check_bytes(exp, size, sha.hexdigest(), None, f"{where}: {exp.path}")
    return sha.hexdigest()

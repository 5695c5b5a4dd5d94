"""The local cache of hub files, keyed by endpoint and commit.

Layout (one folder per hub, so ``org/x`` from two hubs never mixes)::

    <cache>/hubs/<host_port>-<hash8>/
        endpoint.txt                          the hub's URL
        models--<org>--<name>/
            blobs/<sha256>                    verified content, named by its sha256
            blobs/<sha256|git-sha1>.incomplete    a download in progress (resumed by the next call)
            snapshots/<commit>/<path>         relative symlinks to ../../blobs/<sha256>
            manifests/<commit>.json           written last: the snapshot is complete (path -> sha256, size)
            refs/<revision>                   commit of a branch or tag when it was last looked up
        resolutions/<key>.json                identifier (+ model_name, config, version) -> repo + commit
        .locks/...                            file locks (``filelock``), safe across processes
    <cache>/urls/<sha256 of url>/             archives downloaded by URL (``archive``, ``folder/``, ``manifest.json``)

A file only ever gets its final name by ``os.replace`` after its bytes were checked against the sha256 (or
git blob id) the hub lists, so a killed process leaves at most an ``.incomplete`` file (resumed later) and
a snapshot without a manifest (never used).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from filelock import FileLock

from ..common.hashing import sha256_file
from .errors import IntegrityError
from .files import (
    FlockLock,
    atomic_symlink,
    atomic_write_bytes,
    atomic_write_json,
    ensure_dir,
    fcntl,  # noqa: F401
    file_identity,  # noqa: F401  (re-exported for resolve)
    read_json,
)
from .settings import normalize_endpoint

LOCK_TIMEOUT = 900.0
TOUCH_EVERY_S = 3600.0


@functools.lru_cache(maxsize=64)
def hub_key(endpoint: str) -> str:
    endpoint = normalize_endpoint(endpoint)
    host = urlsplit(endpoint).netloc.replace(":", "_")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in host)
    return f"{safe}-{hashlib.sha256(endpoint.encode()).hexdigest()[:8]}"


def repo_folder_name(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


RACY_NS = 100_000_000  # file timestamps this close to the moment they were recorded are not trusted (0.1 s)


def _stat_list(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _identity(st: os.stat_result) -> dict:
    """A blob's identity on disk as ``st`` shows it, and the time it was taken (``st`` must be fresh)."""
    return {"stat": _stat_list(st), "checked_ns": time.time_ns()}


def _trusted(meta: dict, st: os.stat_result) -> bool:
    """Whether ``st`` is the identity recorded in ``meta``, recorded at least one clock tick after the file's
    last change (see ``RepoCache.verify_snapshot``)."""
    recorded, checked = meta.get("stat"), meta.get("checked_ns")
    return (
        recorded == _stat_list(st)
        and isinstance(checked, int)
        and max(st.st_mtime_ns, st.st_ctime_ns) < checked - RACY_NS
    )


@dataclasses.dataclass(frozen=True)
class ExpectedFile:
    """A file of a commit as the hub lists it: at least one of ``sha256`` / ``git_oid`` must be known."""

    path: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None

    @property
    def key(self) -> str:
        return self.sha256 or f"git-{self.git_oid}"


class RepoCache:
    """One repository of one hub in the cache."""

    def __init__(self, hub_dir: Path, repo_id: str):
        self.hub_dir, self.repo_id = hub_dir, repo_id
        self.root = hub_dir / repo_folder_name(repo_id)
        self.blobs = self.root / "blobs"
        self.locks = hub_dir / ".locks" / repo_folder_name(repo_id)
        self._root = os.fspath(
            self.root
        )  # string paths on the warm path: pathlib joins cost microseconds each
        self._blobs = os.path.join(self._root, "blobs")

    def lock(self, name: str) -> FileLock | FlockLock:
        ensure_dir(self.locks)
        path = os.path.join(self.locks, name + ".lock")
        return FlockLock(path, LOCK_TIMEOUT) if fcntl is not None else FileLock(path, timeout=LOCK_TIMEOUT)

    def blob_path(self, sha256: str) -> Path:
        return Path(self.blob_file(sha256))

    def blob_file(self, key: str) -> str:
        """The blob named ``key`` (its sha256) as a string path, for the hot paths."""
        return os.path.join(self._blobs, key)

    def partial_path(self, expected: ExpectedFile) -> Path:
        return self.blobs / f"{expected.key}.incomplete"

    def snapshot_dir(self, commit: str) -> Path:
        return Path(os.path.join(self._root, "snapshots", commit))

    def manifest_path(self, commit: str) -> Path:
        return Path(self._manifest_file(commit))

    def _manifest_file(self, commit: str) -> str:
        return os.path.join(self._root, "manifests", commit + ".json")

    def manifest(self, commit: str) -> dict | None:
        data = read_json(self._manifest_file(commit))
        return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None

    def link_file(self, commit: str, path: str, sha256: str) -> None:
        ups = path.count("/") + 2  # from snapshots/<commit>/<dirs of path> up to the repo folder
        target = os.path.join(*([".."] * ups), "blobs", sha256)
        atomic_symlink(target, os.path.join(self._root, "snapshots", commit, path))

    def write_manifest(
        self, commit: str, endpoint: str, files: dict[str, dict], identities: dict[str, dict] | None = None
    ) -> None:
        """Record ``commit`` as complete: ``files`` maps each path to its verified ``sha256`` and ``size``; the
        blob's identity on disk is recorded with it (see :meth:`verify_snapshot`): as given in ``identities``
        (taken when the bytes were checked), else as it is now, just after they were written and checked."""
        identities = identities or {}
        files = {
            path: {
                "sha256": m["sha256"],
                "size": m["size"],
                **(identities.get(path) or _identity(os.stat(self.blob_file(m["sha256"])))),
            }
            for path, m in files.items()
        }
        atomic_write_json(
            self._manifest_file(commit),
            {
                "repo_id": self.repo_id,
                "commit": commit,
                "endpoint": endpoint,
                "files": files,
                "completed_at": time.time(),
            },
        )

    def verify_snapshot(self, commit: str, manifest: dict, full: bool = False) -> list[str]:
        """Problems of a complete snapshot (missing or altered files); [] when every file checks out.

        Every blob was checked against its sha256 when it was written, and the manifest records the blob's
        identity on disk (size, inode, mtime and ctime) as seen at a time ``checked_ns``. Any later write or
        replacement of the file changes that identity, provided the file's timestamps were already a clock
        tick older than ``checked_ns`` (else a change within the same tick could keep them: "racy" entries,
        as git calls them). A blob whose identity is unchanged and not racy is not read again; any other blob,
        and every blob with ``full=True`` (``ADAPTERHUB_VERIFY=full``), is hashed, and when all check out the
        manifest is rewritten with the identities just verified, so the next use is fast."""
        problems, rehashed, identities = [], False, {}
        snap = os.path.join(self._root, "snapshots", commit)
        for path, meta in manifest["files"].items():
            blob = self.blob_file(meta["sha256"])
            try:
                st = os.stat(blob)
                linked = os.path.samestat(os.stat(os.path.join(snap, path)), st)
            except OSError:
                linked = False
            if not linked:
                problems.append(f"{path}: missing from the cache")
            elif st.st_size != meta["size"]:
                problems.append(f"{path}: cached file has {st.st_size} bytes, not {meta['size']}")
            elif full or not _trusted(meta, st):
                rehashed = True
                identities[path] = _identity(st)  # as seen before the bytes are read
                if sha256_file(blob) != meta["sha256"]:
                    problems.append(f"{path}: cached bytes do not match sha256 {meta['sha256']}")
                elif _stat_list(os.stat(blob)) != identities[path]["stat"]:
                    problems.append(f"{path}: changed on disk while it was being checked")
            else:
                identities[path] = {"stat": meta["stat"], "checked_ns": meta["checked_ns"]}
        if rehashed and not problems:
            self.write_manifest(commit, manifest.get("endpoint", ""), manifest["files"], identities)
        return sorted(problems)

    def check_snapshot(self, commit: str, full: bool = False) -> list[str] | None:
        """None when ``commit`` is not complete here (no manifest); [] when it is complete and intact (see
        :meth:`verify_snapshot`), and then marked as used; else the problems found."""
        manifest = self.manifest(commit)
        if manifest is None:
            return None
        problems = self.verify_snapshot(commit, manifest, full=full)
        if not problems:
            self.touch(commit)
        return problems

    def touch(self, commit: str) -> None:
        """Mark ``commit`` as used now (its manifest's mtime, which ``prune`` and ``entries`` read), at most once
        an hour: a warm load then writes nothing."""
        path = self._manifest_file(commit)
        try:
            if time.time() - os.stat(path).st_mtime > TOUCH_EVERY_S:
                os.utime(path)
        except OSError:
            pass

    def set_ref(self, revision: str, commit: str) -> None:
        if revision != commit:
            atomic_write_bytes(self.root / "refs" / quote(revision, safe=""), commit.encode())

    def ref(self, revision: str) -> str | None:
        try:
            return (self.root / "refs" / quote(revision, safe="")).read_text().strip() or None
        except OSError:
            return None

    def refs(self) -> dict[str, str]:
        folder = self.root / "refs"
        out = {}
        if folder.is_dir():
            for p in folder.iterdir():
                if not p.name.startswith("."):
                    out[unquote(p.name)] = p.read_text().strip()
        return out

    def commits(self) -> list[str]:
        folder = self.root / "manifests"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


@functools.lru_cache(maxsize=256)
def _repo_cache(hub_dir: Path, repo_id: str) -> RepoCache:
    return RepoCache(hub_dir, repo_id)  # holds only paths: one per repository and process


class Cache:
    """The whole cache (all hubs); see the module docstring for the layout."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._checked: dict[
            str, Path
        ] = {}  # hub folders this object found in place (one use: a load, a command)

    def hub_dir(self, endpoint: str) -> Path:
        d = self._checked.get(endpoint)
        if d is not None:
            return d
        d = self.root / "hubs" / hub_key(endpoint)
        if not (d / "endpoint.txt").is_file():
            atomic_write_bytes(d / "endpoint.txt", normalize_endpoint(endpoint).encode())
        self._checked[endpoint] = d
        return d

    def repo(self, endpoint: str, repo_id: str) -> RepoCache:
        return _repo_cache(self.hub_dir(endpoint), repo_id)

    # ---------------------------------------------------------------------------- identifier resolutions
    @staticmethod
    def _resolution_key(
        identifier: str, model_name: str | None, config: str | None, version: str | None
    ) -> str:
        raw = json.dumps([identifier, model_name, config, version])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def resolution_path(self, endpoint: str, identifier: str, model_name, config, version) -> str:
        key = self._resolution_key(identifier, model_name, config, version)
        return os.path.join(self.hub_dir(endpoint), "resolutions", key + ".json")

    def save_resolution(
        self, endpoint: str, identifier: str, model_name, config, version, answer: dict
    ) -> None:
        atomic_write_json(
            self.resolution_path(endpoint, identifier, model_name, config, version),
            {
                "identifier": identifier,
                "model_name": model_name,
                "config": config,
                "version": version,
                **answer,
                "resolved_at": time.time(),
            },
        )

    def resolution(self, endpoint: str, identifier: str, model_name, config, version) -> dict | None:
        return read_json(self.resolution_path(endpoint, identifier, model_name, config, version))

    def forget_resolutions(self, endpoint: str, repo_id: str) -> None:
        """Drop the remembered resolutions that point to ``repo_id`` (after a push moved one of its refs)."""
        folder = self.hub_dir(endpoint) / "resolutions"
        if folder.is_dir():
            for path in folder.glob("*.json"):
                data = read_json(path)
                if not isinstance(data, dict) or data.get("repo_id") == repo_id:
                    path.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------- listing and cleaning
    def hubs(self) -> Iterator[tuple[str, Path]]:
        folder = self.root / "hubs"
        if not folder.is_dir():
            return
        for d in sorted(folder.iterdir()):
            endpoint_file = d / "endpoint.txt"
            if endpoint_file.is_file():
                yield endpoint_file.read_text().strip(), d

    def entries(self) -> list[dict]:
        """One row per cached snapshot: endpoint, repo, commit, refs pointing at it, size, last use."""
        rows = []
        for endpoint, d in self.hubs():
            for repo_dir in sorted(d.glob("models--*")):
                repo_id = repo_dir.name[len("models--") :].replace("--", "/")
                rc = RepoCache(d, repo_id)
                refs = rc.refs()
                for commit in rc.commits():
                    manifest = rc.manifest(commit) or {"files": {}}
                    rows.append(
                        {
                            "endpoint": endpoint,
                            "repo_id": repo_id,
                            "commit": commit,
                            "refs": sorted(r for r, c in refs.items() if c == commit),
                            "files": len(manifest["files"]),
                            "size": sum(int(m.get("size", 0)) for m in manifest["files"].values()),
                            "last_used": rc.manifest_path(commit).stat().st_mtime,
                        }
                    )
                partial = (
                    sum(p.stat().st_size for p in rc.blobs.glob("*.incomplete")) if rc.blobs.is_dir() else 0
                )
                if partial:
                    rows.append(
                        {
                            "endpoint": endpoint,
                            "repo_id": repo_id,
                            "commit": None,
                            "refs": ["(incomplete)"],
                            "files": len(list(rc.blobs.glob("*.incomplete"))),
                            "size": partial,
                            "last_used": max(p.stat().st_mtime for p in rc.blobs.glob("*.incomplete")),
                        }
                    )
        return rows

    def remove(self, repo_id: str, commit: str | None = None, endpoint: str | None = None) -> int:
        """Remove a repository (or one commit of it) from the cache; returns the snapshots removed."""
        removed = 0
        for ep, d in self.hubs():
            if endpoint and normalize_endpoint(endpoint) != ep:
                continue
            rc = RepoCache(d, repo_id)
            if not rc.root.is_dir():
                continue
            commits = [c for c in rc.commits() if commit is None or c.startswith(commit)]
            for c in commits:
                with rc.lock(f"snapshot-{c}"):
                    rc.manifest_path(c).unlink(missing_ok=True)
                    shutil.rmtree(rc.snapshot_dir(c), ignore_errors=True)
                removed += 1
            if commit is None:
                with rc.lock("repo"):
                    shutil.rmtree(rc.root, ignore_errors=True)
                self.forget_resolutions(ep, repo_id)
            else:
                for name, c in rc.refs().items():
                    if c not in rc.commits():
                        (rc.root / "refs" / quote(name, safe="")).unlink(missing_ok=True)
                self._drop_unused_blobs(rc, 0.0)
        return removed

    def prune(
        self, older_than_days: float | None = None, partial_older_than_s: float = 3600.0
    ) -> dict[str, int]:
        """Drop snapshots not used for ``older_than_days`` (if given) and snapshots no ref points to any more,
        then blobs no snapshot uses and ``.incomplete`` files older than ``partial_older_than_s``."""
        now = time.time()
        stats = {"snapshots": 0, "blobs": 0, "bytes": 0}
        for _, d in self.hubs():
            for repo_dir in d.glob("models--*"):
                rc = RepoCache(d, repo_dir.name[len("models--") :].replace("--", "/"))
                referenced = set(rc.refs().values())
                for c in rc.commits():
                    age_days = (now - rc.manifest_path(c).stat().st_mtime) / 86400
                    stale = older_than_days is not None and age_days > older_than_days
                    if stale or (referenced and c not in referenced and older_than_days is None):
                        with rc.lock(f"snapshot-{c}"):
                            rc.manifest_path(c).unlink(missing_ok=True)
                            shutil.rmtree(rc.snapshot_dir(c), ignore_errors=True)
                        stats["snapshots"] += 1
                n, size = self._drop_unused_blobs(rc, partial_older_than_s)
                stats["blobs"] += n
                stats["bytes"] += size
        return stats

    @staticmethod
    def _drop_unused_blobs(rc: RepoCache, partial_older_than_s: float) -> tuple[int, int]:
        if not rc.blobs.is_dir():
            return 0, 0
        used = set()
        for c in rc.commits():
            used |= {m["sha256"] for m in (rc.manifest(c) or {"files": {}})["files"].values()}
        snaps = rc.root / "snapshots"
        if snaps.is_dir():
            for d in snaps.iterdir():
                if not rc.manifest_path(d.name).exists():  # an unfinished or removed snapshot
                    shutil.rmtree(d, ignore_errors=True)
        n = size = 0
        now = time.time()
        for blob in rc.blobs.iterdir():
            partial = blob.name.endswith((".incomplete", ".part"))  # resumable, or being written by a process
            if partial and now - blob.stat().st_mtime < partial_older_than_s:
                continue
            if partial or blob.name not in used:
                with rc.lock(f"blob-{blob.name.split('.')[0]}"):
                    if blob.exists():
                        size += blob.stat().st_size
                        blob.unlink()
                        n += 1
        return n, size


def check_bytes(expected: ExpectedFile, size: int, sha256: str, git_oid: str | None, where: str) -> None:
    """Raise IntegrityError unless the downloaded bytes are those the hub lists."""
    problems = []
    if size != expected.size:
        problems.append(f"{size} bytes instead of {expected.size}")
    if expected.sha256 and sha256 != expected.sha256:
        problems.append(f"sha256 {sha256} instead of {expected.sha256}")
    if expected.git_oid and git_oid is not None and git_oid != expected.git_oid:
        problems.append(f"git blob id {git_oid} instead of {expected.git_oid}")
    if problems:
        raise IntegrityError(
            f"{where}: the downloaded bytes do not match what the hub lists ({'; '.join(problems)}); "
            "the file was discarded and nothing was cached"
        )

"""Downloading a commit of a hub repository into the cache, every byte checked before use."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from ..common.hashing import git_blob_hasher, sha256_file
from ..common.wire import COMMIT_RE
from .cache import Cache, ExpectedFile, RepoCache, check_bytes, ensure_dir
from .errors import HubHTTPError, IntegrityError, OfflineError
from .http import HubClient
from .progress import progress_bar

CHUNK_SIZE = 256 * 1024
PARALLEL = 4  # files of one snapshot fetched at once
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
OnBytes = Callable[[str, int], None]  # (path, bytes just written)


def expected_files(info: dict) -> list[ExpectedFile]:
    """The files of a commit with their hashes, from ``/api/models/{repo}/revision/{commit}?blobs=true``
    (``siblings``: ``rfilename``, ``size``, ``blobId``, ``lfs.sha256``) or from the tree listing (``files``:
    ``path``, ``size``, ``oid``, ``lfs.oid``)."""
    out = []
    entries = info.get("siblings")
    if entries is None:
        entries = [
            {"rfilename": f.get("path"), "size": f.get("size"), "blobId": f.get("oid"), "lfs": f.get("lfs")}
            for f in info.get("files") or []
        ]
    for sib in entries:
        path = sib.get("rfilename")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise HubHTTPError(f"the hub listed an unsafe file name {path!r} in {info.get('id')}")
        lfs = sib.get("lfs") if isinstance(sib.get("lfs"), dict) else {}
        sha256 = str(lfs.get("sha256") or lfs.get("oid") or "").lower() or None
        git_oid = str(sib.get("blobId") or "").lower() or None
        size = sib.get("size", lfs.get("size"))
        if sha256 and not _HEX64.match(sha256):
            sha256 = None
        if git_oid and not COMMIT_RE.match(git_oid):
            git_oid = None
        if size is None or not (sha256 or git_oid):
            raise HubHTTPError(
                f"{info.get('id')}@{info.get('sha')}: the hub lists no size and hash for {path}; this client "
                "verifies every file before use and needs `size` and `lfs.sha256` or `blobId` in the model info"
            )
        out.append(ExpectedFile(path, int(size), sha256, git_oid))
    return out


def fetch_file(
    client: HubClient,
    rc: RepoCache,
    commit: str,
    exp: ExpectedFile,
    advance: Callable[[int], None] = lambda n: None,
    on_bytes: OnBytes | None = None,
) -> str:
    """Make ``blobs/<sha256>`` hold the verified content of ``exp``; resumes an ``.incomplete`` file left by
    an interrupted download. Returns the sha256."""
    where = f"{rc.repo_id}@{commit[:12]}: {exp.path} (hub {client.endpoint})"
    with rc.lock(f"blob-{exp.key}"):
        if exp.sha256 and rc.blob_path(exp.sha256).is_file():
            if sha256_file(rc.blob_path(exp.sha256)) == exp.sha256:
                rc.partial_path(exp).unlink(missing_ok=True)  # completed meanwhile (e.g. by a bundle)
                advance(exp.size)
                return exp.sha256
            rc.blob_path(exp.sha256).unlink()  # altered on disk: fetch it again
        part = rc.partial_path(exp)
        ensure_dir(part.parent)
        start = part.stat().st_size if part.exists() else 0
        if start > exp.size:
            part.unlink()
            start = 0
        sha, git = hashlib.sha256(), git_blob_hasher(exp.size)
        if start:
            with open(part, "rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    sha.update(chunk)
                    git.update(chunk)
            advance(start)
        if start < exp.size or exp.size == 0:
            with client.stream_file(rc.repo_id, commit, exp.path, start=start) as response:
                if start and (response.status_code != 206 or not _range_starts_at(response, start)):
                    start = 0  # the hub sent the whole file: start over
                    sha, git = hashlib.sha256(), git_blob_hasher(exp.size)
                etag = response.headers.get("x-linked-etag") or response.headers.get("etag") or ""
                etag = etag.removeprefix("W/").strip('"').lower()
                if _HEX64.match(etag) and exp.sha256 and etag != exp.sha256:
                    raise IntegrityError(f"{where}: the hub serves sha256 {etag} but listed {exp.sha256}")
                if _HEX64.match(etag) and not exp.sha256:
                    exp = ExpectedFile(exp.path, exp.size, etag, exp.git_oid)
                with open(part, "ab" if start else "wb") as f:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        f.write(chunk)
                        sha.update(chunk)
                        git.update(chunk)
                        advance(len(chunk))
                        if on_bytes is not None:
                            f.flush()
                            on_bytes(exp.path, len(chunk))
        size = part.stat().st_size  # no fsync: every use re-checks the sha256, so a torn write is never used
        digest = sha.hexdigest()
        try:
            check_bytes(exp, size, digest, git.hexdigest() if size == exp.size else None, where)
        except IntegrityError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, rc.blob_path(digest))
        return digest


def _range_starts_at(response, start: int) -> bool:
    m = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return m is not None and int(m.group(1)) == start


def snapshot(
    client: HubClient | None,
    cache: Cache,
    endpoint: str,
    repo_id: str,
    commit: str,
    *,
    info: dict | None = None,
    offline: bool = False,
    progress: bool | None = None,
    on_bytes: OnBytes | None = None,
    full_check: bool = False,
) -> Path:
    """The snapshot folder of ``repo_id`` at ``commit``: from the cache if complete and intact, else downloaded
    (only the missing files), verified, and recorded as complete."""
    rc = cache.repo(endpoint, repo_id)
    problems = rc.check_snapshot(commit, full=full_check)
    if problems == []:
        return rc.snapshot_dir(commit)
    if problems and (offline or client is None):
        raise IntegrityError(
            f"{repo_id}@{commit} in the cache ({rc.root}) is damaged: {'; '.join(problems)}; "
            "run again online to repair it, or `adapterhub cache rm " + repo_id + "`"
        )
    if offline or client is None:
        raise OfflineError(
            f"offline mode: {repo_id}@{commit} from {endpoint} is not in the cache ({cache.root}); "
            "run once online (without ADAPTERHUB_OFFLINE=1) to download it"
        )
    with rc.lock(f"snapshot-{commit}"):
        if rc.check_snapshot(commit, full=full_check) == []:
            return rc.snapshot_dir(commit)  # another process finished it while we waited
        rc.manifest_path(commit).unlink(missing_ok=True)
        if info is None or info.get("sha") != commit or not _has_hashes(info):
            info = {"id": repo_id, "sha": commit, "files": client.list_tree(repo_id, commit)}
        files = expected_files(info)
        done: dict[str, dict] = {}

        def one(exp: ExpectedFile) -> None:
            digest = fetch_file(client, rc, commit, exp, advance, on_bytes)
            rc.link_file(commit, exp.path, digest)
            done[exp.path] = {"sha256": digest, "size": exp.size}

        with progress_bar(progress, sum(f.size for f in files), f"{repo_id}@{commit[:8]}") as advance:
            if len(files) > 1 and on_bytes is None and PARALLEL > 1:
                futures = [worker_pool().submit(one, exp) for exp in files]
                wait(futures)  # all settled before anything is raised: no download goes on behind the caller
                for future in futures:
                    future.result()  # the first failure is raised; the manifest is not written
            else:
                for exp in files:
                    one(exp)
        rc.write_manifest(commit, endpoint, dict(sorted(done.items())))
    return rc.snapshot_dir(commit)


@functools.lru_cache(maxsize=1)
def worker_pool() -> ThreadPoolExecutor:
    """Download threads, started once per process (starting threads for every load costs milliseconds)."""
    return ThreadPoolExecutor(PARALLEL, thread_name_prefix="adapterhub-download")


os.register_at_fork(after_in_child=worker_pool.cache_clear)  # a forked child has none of the parent's threads


def _has_hashes(info: dict) -> bool:
    entries = info.get("siblings") if info.get("siblings") is not None else info.get("files")
    return bool(entries) and all("size" in e for e in entries or ())

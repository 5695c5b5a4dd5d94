"""Adapters published at a URL outside a hub (the original AdapterHub way).

* A ``.zip``: downloaded once into the cache, checked against a sha256 when one is given (``sha256=`` or
  ``#sha256=<hex>`` in the URL), extracted safely (no absolute paths, no ``..``, no links, size limits) and
  renamed into place only when complete.
* A plain folder of files (``https://host/path/adapter/``): the AdapterHub file names are fetched
  (``adapter_config.json`` and ``adapter.safetensors`` required, the head files if present). Such a server
  lists no hashes, so the sha256 of each file is recorded on download and checked on every later use.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..version import __version__
from .cache import Cache, atomic_write_json, read_json
from .errors import HubHTTPError, IdentifierError, IntegrityError, NotFoundError, OfflineError
from .progress import progress_bar
from .settings import HubSettings

MAX_UNPACKED = 4 * 1024**3
MAX_RATIO = 200.0
MAX_MEMBERS = 10_000


def _split_hash(url: str, sha256: str | None) -> tuple[str, str | None]:
    parts = urlsplit(url)
    m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", parts.fragment or "")
    clean = urlunsplit(parts._replace(fragment=""))
    given = m.group(1).lower() if m else None
    if sha256 and given and sha256.lower() != given:
        raise IdentifierError(f"{url!r}: sha256= and the URL's #sha256= disagree")
    if sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise IdentifierError(f"sha256={sha256!r} is not 64 hex digits")
    wanted = sha256 or given
    return clean, wanted.lower() if wanted else None


def _adapter_root(folder: Path) -> Path:
    if (folder / "adapter_config.json").is_file():
        return folder
    found = sorted(p.parent for p in folder.rglob("adapter_config.json"))
    if len(found) == 1:
        return found[0]
    return folder


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract ``archive`` into ``dest``, refusing anything that could escape it or blow up."""
    names = []
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise IntegrityError(f"{archive.name} is not a valid zip archive: {error}") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise IntegrityError(f"the archive has {len(members)} entries (limit {MAX_MEMBERS})")
        total = 0
        for info in members:
            name = info.filename
            pure = PurePosixPath(name)
            if (
                name.startswith(("/", "\\"))
                or pure.is_absolute()
                or ".." in pure.parts
                or ":" in pure.parts[0]
                or "\\" in name
            ):
                raise IntegrityError(f"the archive holds an unsafe path {name!r}; refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise IntegrityError(f"the archive holds a symbolic link {name!r}; refused")
            total += info.file_size
            if total > MAX_UNPACKED or (
                info.compress_size and info.file_size / info.compress_size > MAX_RATIO
            ):
                raise IntegrityError(f"the archive unpacks to too much data at {name!r} (zip bomb?); refused")
        for info in members:
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                written = 0
                while chunk := src.read(1024 * 1024):
                    written += len(chunk)
                    if written > info.file_size:
                        raise IntegrityError(
                            f"{info.filename} unpacks to more than its declared size; refused"
                        )
                    out.write(chunk)
            names.append(info.filename)
    return names


def archive_folder(
    url: str, settings: HubSettings, cache: Cache, sha256: str | None = None, progress: bool | None = None
) -> Path:
    url, expected = _split_hash(url, sha256)
    root = cache.root / "urls" / hashlib.sha256(url.encode()).hexdigest()[:32]
    manifest_path = root / "manifest.json"
    manifest = read_json(manifest_path)
    if manifest and (expected is None or manifest.get("sha256") == expected) and (root / "folder").is_dir():
        os.utime(manifest_path)
        return _adapter_root(root / "folder")
    if settings.offline:
        raise OfflineError(
            f"offline mode: the archive {url} is not in the cache ({cache.root}); run once online"
        )
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock"), timeout=900):
        manifest = read_json(manifest_path)
        if (
            manifest
            and (expected is None or manifest.get("sha256") == expected)
            and (root / "folder").is_dir()
        ):
            return _adapter_root(root / "folder")
        headers = {"user-agent": f"adapterhub/{__version__}"}
        if settings.token and url.startswith(settings.endpoint + "/"):
            headers["authorization"] = f"Bearer {settings.token}"
        part = root / "archive.incomplete"
        digest = hashlib.sha256()
        try:
            with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60.0) as response:
                if response.status_code == 404:
                    raise NotFoundError(f"no archive at {url} (HTTP 404)")
                if response.status_code >= 400:
                    raise HubHTTPError(
                        f"downloading {url}: HTTP {response.status_code}", response.status_code
                    )
                size = int(response.headers.get("content-length") or 0)
                with open(part, "wb") as f, progress_bar(progress, size, url.rsplit("/", 1)[-1]) as advance:
                    for chunk in response.iter_bytes(256 * 1024):
                        f.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
        except httpx.TransportError as error:
            part.unlink(missing_ok=True)
            raise HubHTTPError(f"downloading {url} failed: {error}") from None
        got = digest.hexdigest()
        if expected and got != expected:
            part.unlink(missing_ok=True)
            raise IntegrityError(f"{url}: sha256 {got} instead of {expected}; the archive was discarded")
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
        try:
            names = safe_extract(part, staging)
            shutil.rmtree(root / "folder", ignore_errors=True)
            os.replace(staging, root / "folder")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            part.unlink(missing_ok=True)
        atomic_write_json(
            manifest_path,
            {
                "url": url,
                "sha256": got,
                "verified": bool(expected),
                "files": names,
                "completed_at": time.time(),
            },
        )
    return _adapter_root(root / "folder")


FOLDER_FILES = (
    ("adapter_config.json", True),
    ("adapter.safetensors", True),
    ("head_config.json", False),
    ("model_head.safetensors", False),
    ("README.md", False),
)


def static_folder(url: str, settings: HubSettings, cache: Cache) -> Path:
    base = url.split("#")[0].rstrip("/") + "/"
    root = cache.root / "urls" / hashlib.sha256(base.encode()).hexdigest()[:32]
    manifest = read_json(root / "manifest.json")
    if manifest and _intact(root / "folder", manifest):
        os.utime(root / "manifest.json")
        return root / "folder"
    if settings.offline:
        raise OfflineError(
            f"offline mode: the adapter folder {base} is not in the cache ({cache.root}); run once online"
        )
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock"), timeout=900):
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            files = {}
            with httpx.Client(
                headers={"user-agent": f"adapterhub/{__version__}"}, follow_redirects=True, timeout=60.0
            ) as http:
                for name, required in FOLDER_FILES:
                    try:
                        response = http.get(base + name)
                    except httpx.TransportError as error:
                        raise HubHTTPError(f"downloading {base}{name} failed: {error}") from None
                    if response.status_code == 404 and not required:
                        continue
                    if response.status_code >= 400:
                        raise NotFoundError(
                            f"{base} does not hold an adapter: {name} answered HTTP {response.status_code}"
                        )
                    (staging / name).write_bytes(response.content)
                    files[name] = hashlib.sha256(response.content).hexdigest()
            shutil.rmtree(root / "folder", ignore_errors=True)
            os.replace(staging, root / "folder")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        atomic_write_json(
            root / "manifest.json",
            {"url": base, "files": files, "verified": False, "completed_at": time.time()},
        )
    return root / "folder"


def _intact(folder: Path, manifest: dict) -> bool:
    files = manifest.get("files") or {}
    return bool(files) and all(
        (folder / name).is_file() and hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha
        for name, sha in files.items()
    )

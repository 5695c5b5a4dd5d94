"""Blob storage behind a small interface: ``LocalBlobStore`` keeps content-addressed files on disk
(``<root>/<aa>/<bb>/<sha256>``); ``S3BlobStore`` keeps them as objects ``<prefix><sha256>`` in an
S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, ...). :func:`open_store` picks one from the settings.

Blobs enter a store only through :meth:`BlobStore.put_file`, which takes a finished temporary file whose
sha256 the caller computed while writing it; the store re-checks it, then makes the blob appear whole
(a rename on disk; a single PUT or a completed multipart upload in S3), so a reader never sees a partial blob.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from adapterhub.common.hashing import sha256_file

if TYPE_CHECKING:
    from adapterhub.server.settings import Settings

log = logging.getLogger("adapterhub.server")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MiB = 1024 * 1024


def _check_sha(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return sha256


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def put_file(self, tmp_path: Path, sha256: str, size: int) -> bool:
        """Move ``tmp_path`` into the store as ``sha256`` (the file is gone afterwards); returns False if it was
        already there. Raises ValueError, storing nothing, if the file's size or sha256 is not the one given."""

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        """The blob's content from byte ``start`` on."""

    def local_path(self, sha256: str) -> Path | None:
        """A file path to serve from directly, or None (an object store streams through :meth:`open`)."""

    def copy_to(self, sha256: str, dest: Path) -> None:
        """Make ``dest`` a file with the blob's content (a hard link where possible)."""

    def delete(self, sha256: str) -> None: ...

    def stored(self) -> Iterator[tuple[str, float]]:
        """Every blob in the store: (sha256, time it was stored, as a Unix timestamp)."""


def read_head(store: BlobStore, sha256: str, limit: int, what: str) -> bytes | None:
    """The first ``limit`` bytes of blob ``sha256``, or None when it is missing from ``store`` (an operator's
    mistake, a lost bucket prefix), which is logged as the loss of ``what`` (e.g. ``"repo alice/x: README.md"``):
    one lost blob must not break a listing or a page that only shows it."""
    try:
        with store.open(sha256) as fh:
            return fh.read(limit)
    except FileNotFoundError as e:
        log_lost(what, e)
        return None


def log_lost(what: str, error: FileNotFoundError) -> None:
    """Log that the blob of ``what`` is missing from the store (see :func:`read_head`)."""
    log.error("%s is missing from the blob store (%s)", what, error)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it readable by the server's user only: the
    hub's data dir holds private repositories' content, the database and tokens' hashes."""
    Path(path).mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return Path(path)


class LocalBlobStore:
    """Blobs as files readable by the server's user only, in folders of mode 0700."""

    def __init__(self, root: Path):
        self.root = private_dir(Path(root))

    def _path(self, sha256: str) -> Path:
        _check_sha(sha256)
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
        for d in (dest.parent.parent, dest.parent):
            d.mkdir(mode=0o700, exist_ok=True)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o600)
        os.replace(tmp_path, dest)
        return True

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        f = open(self._path(sha256), "rb")
        if start:
            f.seek(start)
        return f

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)

    def copy_to(self, sha256: str, dest: Path) -> None:
        link_or_copy(self._path(sha256), dest)

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, float]]:
        for p in self.root.glob("??/??/*"):
            if _SHA256.match(p.name):
                try:
                    yield p.name, p.stat().st_mtime
                except FileNotFoundError:
                    continue


def link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


class S3BlobStore:
    """Blobs as objects ``<prefix><sha256>`` in an S3 bucket, through boto3 (the ``s3`` extra). Credentials and
    region come from the standard AWS sources (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
    ``~/.aws``, instance roles, ``AWS_REGION``); ``endpoint_url`` names an S3-compatible server (MinIO, Ceph RGW,
    R2, ...), ``public_endpoint_url`` the address clients reach it at, if different (for presigned redirects).
    Files from ``multipart_threshold`` bytes on go up in parts of ``multipart_chunk`` bytes."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        multipart_threshold: int = 64 * MiB,
        multipart_chunk: int = 16 * MiB,
    ):
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError as e:
            raise RuntimeError(
                f"an s3:// blob store needs boto3: pip install 'adapterhub[s3]' ({e})"
            ) from None
        if not bucket:
            raise ValueError("the S3 blob store needs a bucket name (s3://BUCKET/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        session = boto3.session.Session()
        region = session.region_name or "us-east-1"
        config = Config(
            signature_version="s3v4",
            max_pool_connections=64,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        self.client = session.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config
        )
        self.presigner = (
            session.client("s3", endpoint_url=public_endpoint_url, region_name=region, config=config)
            if public_endpoint_url
            else self.client
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunk, use_threads=False
        )
        from botocore.exceptions import ClientError

        self._ClientError = ClientError
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as e:
            raise RuntimeError(
                f"S3 bucket {bucket!r} at {endpoint_url or 'AWS'} is not accessible: {_s3_error(e)}"
            ) from None

    def key(self, sha256: str) -> str:
        return self.prefix + _check_sha(sha256)

    def _head(self, sha256: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._ClientError as e:
            if _s3_status(e) == 404:
                return None
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def put_file(self, tmp_path: Path, sha256: str, size: int) -> bool:
        tmp_path = Path(tmp_path)
        head = self._head(sha256)
        if head is not None and head["ContentLength"] == size:
            tmp_path.unlink(missing_ok=True)
            return False
        actual = os.path.getsize(tmp_path)
        if actual != size:
            raise ValueError(f"blob {sha256}: temporary file has {actual} bytes, expected {size}")
        digest = sha256_file(tmp_path)
        if digest != sha256:
            raise ValueError(f"blob {sha256}: temporary file has sha256 {digest}")
        self.client.upload_file(
            str(tmp_path),
            self.bucket,
            self.key(sha256),
            ExtraArgs={"ChecksumAlgorithm": "SHA256", "ContentType": "application/octet-stream"},
            Config=self.transfer,
        )  # the server checks each part's sha256 (or the whole object's) as it arrives
        tmp_path.unlink(missing_ok=True)
        return True

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256), **extra)["Body"]
        except self._ClientError as e:
            if _s3_status(e) == 404:
                raise FileNotFoundError(
                    f"blob {sha256} is missing from s3://{self.bucket}/{self.prefix}"
                ) from None
            raise

    def local_path(self, sha256: str) -> Path | None:
        return None

    def copy_to(self, sha256: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, self.key(sha256), str(dest), Config=self.transfer)

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def stored(self) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix) :]
                if _SHA256.match(name):
                    yield name, obj["LastModified"].timestamp()

    def presigned_url(self, sha256: str, expires: int, filename: str | None = None) -> str:
        """A URL that answers GET (and Range requests) for this blob for ``expires`` seconds, without credentials."""
        params = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if filename:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[-200:] or "file"
            params["ResponseContentDisposition"] = f'attachment; filename="{safe}"'
        return self.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))


def _s3_status(e) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _s3_error(e) -> str:
    err = e.response.get("Error", {})
    return f"{err.get('Code') or _s3_status(e)}: {err.get('Message') or e}"


def parse_blob_store(url: str) -> tuple[str, str, str]:
    """``""`` -> ("local", "", ""); ``s3://bucket/prefix`` -> ("s3", bucket, prefix). Anything else: ValueError."""
    if not url:
        return "local", "", ""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if not re.match(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", bucket):
            raise ValueError(f"blob store {url!r}: {bucket!r} is not a valid S3 bucket name")
        return "s3", bucket, prefix.strip("/")
    raise ValueError(
        f"blob store {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX (or nothing, for <data-dir>/blobs)"
    )


def open_store(settings: Settings) -> BlobStore:
    """The blob store that ``settings.blob_store`` names: a folder under the data dir, or an S3 bucket."""
    kind, bucket, prefix = parse_blob_store(settings.blob_store)
    if kind == "local":
        return LocalBlobStore(Path(settings.data_dir) / "blobs")
    return S3BlobStore(
        bucket,
        prefix,
        endpoint_url=settings.s3_endpoint_url or None,
        public_endpoint_url=settings.s3_public_endpoint_url or None,
    )

"""Server settings: every field can be set from the command line (``adapterhub serve --help``) or from an
``ADAPTERHUB_<FIELD>`` environment variable."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MiB = 1024 * 1024


@dataclasses.dataclass
class Settings:
    data_dir: Path = Path(".adapterhub/hub")
    database_url: str = ""  # empty: SQLite file <data_dir>/hub.sqlite
    public_url: str = ""  # empty: taken from each request's Host header
    max_file_size: int = 512 * MiB  # one file of a commit
    max_commit_size: int = 2048 * MiB  # all new content of one commit (decoded)
    max_files: int = 10_000  # files in one commit or one zip
    max_zip_ratio: float = 200.0  # uncompressed/compressed, per zip member
    validation_wait: float = 60.0  # seconds an upload waits for its validation before it is stored as pending
    validation_workers: int = 1  # threads for load checks in each server (or worker) process
    validation_queue: bool = False  # load checks run in `adapterhub worker` processes, not in the server
    validation_lease: float = (
        60.0  # seconds a worker's claim lasts without a heartbeat (then another takes it)
    )
    allow_anonymous_read: bool = True
    blob_store: str = ""  # empty: <data_dir>/blobs; s3://BUCKET[/PREFIX]: an S3-compatible bucket
    s3_endpoint_url: str = ""  # empty: AWS (or AWS_ENDPOINT_URL); e.g. http://minio:9000
    s3_public_endpoint_url: str = (
        ""  # where clients reach the S3 server for redirects (empty: s3_endpoint_url)
    )
    blob_redirect: bool = False  # answer file downloads with a presigned redirect to the object store
    blob_redirect_ttl: int = 300  # seconds a presigned download URL stays valid
    blob_redirect_min_size: int = 1 * MiB  # smaller files (configs, cards) are still sent by the hub itself
    secret_key: str = ""  # signs the web forms' CSRF tokens; empty: <data_dir>/secret_key, made once
    login_attempts: int = 10  # failed web logins allowed per client address in 15 minutes, then 429

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'hub.sqlite').resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Defaults, then ``ADAPTERHUB_*`` environment variables, then ``overrides`` (None values ignored)."""
        s = cls()
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"ADAPTERHUB_{f.name.upper()}")
            if raw is not None:
                setattr(s, f.name, _parse(f.name, f.type, raw))
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        s.data_dir = Path(s.data_dir)
        return s


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _parse(name: str, kind: str, raw: str):
    """The value of ``ADAPTERHUB_<NAME>``; a value that does not parse raises ValueError naming it."""
    try:
        if kind == "Path":
            return Path(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"ADAPTERHUB_{name.upper()}={raw!r} is not a valid {kind}") from None
    if kind == "bool":
        v = raw.strip().lower()
        if v not in TRUE + FALSE:
            raise ValueError(
                f"ADAPTERHUB_{name.upper()}={raw!r}: expected one of {', '.join(TRUE + FALSE[:-1])}"
            )
        return v in TRUE
    return raw

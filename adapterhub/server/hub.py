"""The composition root of the server: the :class:`Hub` that one server process shares (settings, database,
blob store, validation worker, download counts, limits, hooks) and the modules that extend it.

* **Hooks.** ``hub.post_commit_hooks`` (each called with a ``commits.CommitEvent`` after a commit is stored),
  ``hub.post_validation_hooks`` (``(hub, commit_oid, status)`` when a background validation ends) and
  ``hub.model_info_hooks`` (``(info_dict, repo, commit)`` to add fields to ``/api/models/...`` answers).
  A failing hook is logged and never fails the request.
* **Extensions.** :func:`load_extensions` imports each module of ``EXTENSIONS`` that is installed and calls its
  ``setup(hub)`` once, e.g. to append to the hook lists; ``app.create_app`` then mounts their routers, and
  ``adapterhub worker`` (no web app) gets their hooks the same way.
* Inside a request handler the hub is ``request.app.state.hub`` (:func:`get_hub`).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING
from pathlib import Path
from types import ModuleType

from fastapi import Request
from sqlalchemy import select

from adapterhub.server import migrate, security, validation
from adapterhub.server.auth import LoginThrottle
from adapterhub.server.counts import DownloadCounts
from adapterhub.server.db import Database
from adapterhub.server.models import Validation
from adapterhub.server.settings import Settings
from adapterhub.server.storage import BlobStore, open_store, private_dir
from adapterhub.server.uploads import Limits, remove_stale_staging
from adapterhub.server.validation import Validator

if TYPE_CHECKING:
    from adapterhub.server.commits import CommitEvent

log = logging.getLogger("adapterhub.server")
EXTENSIONS = (
    "adapterhub.server.search",
    "adapterhub.server.bundle",
    "adapterhub.server.tokens",
    "adapterhub.server.apidocs",
    "adapterhub.server.analysis",
    "adapterhub.server.repo_pages",
    "adapterhub.server.manage",
    "adapterhub.server.ui",
)


class Hub:
    """Everything one server process shares: settings, database, blob store, validation worker, hooks."""

    def __init__(self, settings: Settings, store: BlobStore | None = None, run_migrations: bool = True):
        self.settings = settings
        data = Path(settings.data_dir)
        private_dir(data)
        # the CSRF signing key first: a bad ADAPTERHUB_SECRET_KEY fails before anything else is opened
        self.secret = security.load_secret(settings.secret_key, data)
        self.tmp_dir = data / "tmp"  # same file system as a local blob store: staged files are renamed in
        private_dir(self.tmp_dir)
        remove_stale_staging(self.tmp_dir)
        if not settings.database_url:  # the SQLite file (its -wal and -shm files take its mode)
            db_file = data / "hub.sqlite"
            os.close(os.open(db_file, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(db_file, 0o600)
        self.db = Database(settings.db_url)
        if run_migrations:
            migrate.upgrade(self.db.engine)
        self.store: BlobStore = store if store is not None else open_store(settings)
        self.validator = Validator(settings.validation_workers, self.tmp_dir)
        self.downloads = DownloadCounts(self.db)
        self.limits = Limits.from_settings(settings)
        self.login_throttle = LoginThrottle(settings.login_attempts)
        self.post_commit_hooks: list[Callable[[CommitEvent], None]] = []
        self.post_validation_hooks: list[Callable[[Hub, str, str], None]] = []
        self.model_info_hooks: list[Callable] = []

    def run_post_commit(self, event: CommitEvent) -> None:
        for hook in list(self.post_commit_hooks):
            try:
                hook(event)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook %r failed for %s@%s", hook, event.repo_id, event.commit_oid)

    def record_validation(self, commit_oid: str, report: dict, owner: str | None = None) -> str | None:
        """Store a validation result and run the post-validation hooks (see ``validation.record_validation``)."""
        status = validation.record_validation(self, commit_oid, report, owner)
        if status is None:
            return None
        for hook in list(self.post_validation_hooks):
            try:
                hook(self, commit_oid, status)
            except Exception:  # noqa: BLE001
                log.exception("post-validation hook %r failed for %s", hook, commit_oid)
        return status

    def requeue_pending(self) -> None:
        """At start-up: commits whose validation never finished (server stopped) are validated again (unless
        ``adapterhub worker`` processes do the load checks: they take unfinished validations themselves)."""
        if self.settings.validation_queue:
            return
        with self.db.session() as s:
            oids = s.scalars(
                select(Validation.commit_oid).where(Validation.status.in_(("pending", "running")))
            ).all()
        for oid in oids:
            try:
                validation.revalidate(self, oid)
            except Exception:  # noqa: BLE001
                log.exception("could not requeue the validation of %s", oid)

    def close(self) -> None:
        self.validator.shutdown()
        self.downloads.close()
        self.db.dispose()


def get_hub(request: Request) -> Hub:
    """The hub serving ``request`` (also usable as ``Depends(get_hub)``)."""
    return request.app.state.hub


def load_extensions(hub: Hub) -> list[ModuleType]:
    """Import every module of ``EXTENSIONS`` that is installed and call its ``setup(hub)`` (hooks)."""
    mods = []
    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        if hasattr(mod, "setup"):
            mod.setup(hub)
        mods.append(mod)
    return mods

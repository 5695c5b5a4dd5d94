"""Download counts, added up in memory and written to ``repos.downloads`` in one transaction at most every
``interval`` seconds (and when the hub closes), instead of one ``UPDATE`` per download.

Each ``UPDATE`` of ``repos.downloads`` also rewrites the repository's search entry (a database trigger copies it
into ``index_entries``, whose full-text index follows): about a millisecond of writing per download, which
competed with the next requests and made their reads of the same pages slower. Counts are statistics: a count
shows up in the API within ``interval`` seconds; a process that is killed loses at most that many seconds of
counts. Several server processes each add their own increments (``downloads = downloads + n``), so none is lost.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from sqlalchemy import select, update

from adapterhub.server.models import Repo

log = logging.getLogger(__name__)


class DownloadCounts:
    def __init__(self, db, interval: float = 1.0):
        self.db, self.interval = db, interval
        self._pending: Counter[int | str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, repo: int | str, n: int = 1) -> None:
        """Count ``n`` downloads of a model repository: its row id, or its id ``namespace/name``."""
        with self._lock:
            self._pending[repo] += n
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="download-counts", daemon=True)
                self._thread.start()
        if self._closed:
            self.flush()

    def flush(self) -> None:
        """Write the pending counts now (one transaction); on failure they stay pending for the next try."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            with self.db.session() as s:
                by_id: Counter[int] = Counter()
                for repo, n in pending.items():
                    if isinstance(
                        repo, str
                    ):  # an id namespace/name: its row id (a repo deleted since: dropped)
                        ns, _, name = repo.partition("/")
                        repo = s.scalar(
                            select(Repo.id).where(
                                Repo.namespace == ns, Repo.name == name, Repo.repo_type == "model"
                            )
                        )
                    if repo is not None:
                        by_id[repo] += n
                for pk, n in sorted(by_id.items()):  # rows locked in id order: no deadlock between processes
                    s.execute(update(Repo).where(Repo.id == pk).values(downloads=Repo.downloads + n))
        except Exception:
            with self._lock:
                self._pending.update(pending)
            raise

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - kept pending; logged, retried at the next interval
                log.exception("writing download counts failed; retrying")

    def close(self) -> None:
        """Stop the background writer and write what is pending."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()

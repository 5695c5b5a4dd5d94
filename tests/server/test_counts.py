"""Download counts added up in memory and written in batches (``adapterhub.server.counts``): exact totals from
many threads, by row id and by ``namespace/name``, written by the background writer, on ``close`` and after it,
and kept pending (not lost) when a write fails. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from adapterhub.server.counts import DownloadCounts
from adapterhub.server.db import Database
from adapterhub.server.migrate import upgrade
from adapterhub.server.models import Account, Repo


@pytest.fixture(scope="module")
def db(db_url):
    database = Database(db_url)
    upgrade(database.engine)
    with database.session() as s:
        owner = Account(name="counter", kind="user")
        s.add(owner)
        s.flush()
        for name in ("a", "b"):
            s.add(Repo(namespace="counter", name=name, owner_id=owner.id, downloads=0))
    yield database
    database.dispose()


def downloads(db) -> dict[str, int]:
    with db.session() as s:
        return dict(s.execute(select(Repo.name, Repo.downloads).where(Repo.namespace == "counter")).all())


def repo_pk(db, name: str) -> int:
    with db.session() as s:
        return s.scalar(select(Repo.id).where(Repo.namespace == "counter", Repo.name == name))


def test_counts_from_many_threads_add_up(db):
    before = downloads(db)
    counts = DownloadCounts(db, interval=0.05)
    pk = repo_pk(db, "b")

    def count(i):
        for _ in range(200):
            counts.add("counter/a")
            counts.add(pk, 2)

    threads = [threading.Thread(target=count, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts.close()
    assert downloads(db) == {"a": before["a"] + 1600, "b": before["b"] + 3200}


def test_the_background_writer_writes_without_a_flush(db):
    before = downloads(db)
    counts = DownloadCounts(db, interval=0.05)
    try:
        counts.add("counter/a", 5)
        deadline = time.time() + 10
        while downloads(db)["a"] != before["a"] + 5 and time.time() < deadline:
            time.sleep(0.02)
        assert downloads(db)["a"] == before["a"] + 5
    finally:
        counts.close()
    counts.add("counter/b", 3)  # after close: written at once
    assert downloads(db) == {"a": before["a"] + 5, "b": before["b"] + 3}


def test_a_failed_write_keeps_the_counts(db, monkeypatch):
    before = downloads(db)
    counts = DownloadCounts(db, interval=3600)  # only explicit flushes
    counts.add("counter/a", 4)
    original = db.session

    def broken():
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(db, "session", broken)
    with pytest.raises(RuntimeError, match="unavailable"):
        counts.flush()
    counts.add("counter/a")
    monkeypatch.setattr(db, "session", original)
    counts.close()
    assert downloads(db)["a"] == before["a"] + 5

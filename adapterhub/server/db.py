"""SQLAlchemy base class, engine and session set-up shared by every server table.

Other modules add tables by subclassing :class:`Base` (for example ``index_models.py``); the Alembic
migrations in ``migrations/`` create them. ``Database`` wraps one engine and its session factory.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names, so that migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so threads can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


#: PostgreSQL errors after which a transaction is run again: serialization failure, deadlock detected
RETRY_CODES = ("40001", "40P01")
WRITE_ATTEMPTS = 8
T = TypeVar("T")


class Database:
    """One engine plus a session factory. ``with db.session() as s:`` commits on success, rolls back on error."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self._loop_reader: sqlite3.Connection | None = None
        self._loop_reader_lock = threading.Lock()

    @contextlib.contextmanager
    def loop_read(self) -> Iterator[sqlite3.Connection | None]:
        """:meth:`loop_reader` for one read, or None when there is none or it is in use right now (an app served
        by two event loops at once, e.g. in tests): never waits."""
        reader = self.loop_reader()
        if reader is None or not self._loop_reader_lock.acquire(blocking=False):
            yield None
            return
        try:
            yield reader
        finally:
            self._loop_reader_lock.release()

    def loop_reader(self) -> sqlite3.Connection | None:
        """A connection of its own for short reads on the server's event loop, for a SQLite file database (None for
        any other): outside the pool, so the loop never waits for a pooled connection that a streaming answer holds;
        it never waits for a lock either (``timeout=0``: a busy database raises at once and the caller hands the
        request to a worker thread) and cannot write (``query_only``). One per database, used by the loop's thread
        only."""
        if self._loop_reader is None:
            url = self.engine.url
            if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
                return None
            conn = sqlite3.connect(url.database, timeout=0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            self._loop_reader = conn
        return self._loop_reader

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        s = self.Session()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def write(self, fn: Callable[[Session], T], attempts: int = WRITE_ATTEMPTS) -> T:
        """``fn(session)`` in one transaction, committed; run again from the start (in a new transaction) when
        PostgreSQL aborts it for a deadlock or a serialization failure, which concurrent writers can cause (the
        stored facet counts' triggers lock count rows in each statement's order, not across a transaction's
        statements), up to ``attempts`` times. ``fn`` must not keep state between attempts."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as s:
                    return fn(s)
            except DBAPIError as e:
                if attempt == attempts or getattr(e.orig, "pgcode", None) not in RETRY_CODES:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))  # apart, so that they do not meet again
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None
        self.engine.dispose()

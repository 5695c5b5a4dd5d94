"""The validation queue: ``adapterhub worker`` processes take pending validations from the database and run
the load check, so that no web process spends its time on one (``Settings.validation_queue``).

A validation row is the queue entry. A worker *claims* one whose status is ``pending``, or ``running`` with an
expired lease (its worker stopped), by setting ``status='running'``, ``claimed_by`` and ``lease_until``; on
PostgreSQL the candidate row is locked with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait for
each other nor take the same row; on SQLite (one writer at a time) the claim is a compare-and-set ``UPDATE``
that only succeeds while the row is still claimable. While it checks, the worker extends its lease every third
of ``validation_lease`` seconds; its result is stored only while it still holds the claim. A validation taken
``MAX_ATTEMPTS`` times without a result (each worker died during it) is recorded as failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import secrets
import socket
import threading
import time

from sqlalchemy import or_, select, text, update

from adapterhub.server import validation
from adapterhub.server.models import Validation, utcnow

log = logging.getLogger("adapterhub.server.worker")
MAX_ATTEMPTS = 3


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _claimable(now: dt.datetime):
    return or_(
        Validation.status == "pending",
        (Validation.status == "running")
        & (Validation.lease_until.is_not(None))
        & (Validation.lease_until < now),
    )


_PG_CLAIM = text(
    "UPDATE validations SET status = 'running', claimed_by = :me, lease_until = :until, "
    "attempts = attempts + 1 WHERE commit_oid = ("
    "  SELECT commit_oid FROM validations WHERE status = 'pending' "
    "  OR (status = 'running' AND lease_until IS NOT NULL AND lease_until < :now) "
    "  ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING commit_oid, attempts"
)


def claim(hub, me: str, lease: float) -> tuple[str, int] | None:
    """Take the oldest claimable validation for worker ``me``: (commit oid, attempts so far), or None."""
    now = utcnow()
    until = now + dt.timedelta(seconds=lease)
    with hub.db.session() as s:
        if s.bind.dialect.name == "postgresql":
            row = s.execute(_PG_CLAIM, {"me": me, "until": until, "now": now}).first()
            return (row.commit_oid, row.attempts) if row else None
        candidates = s.scalars(
            select(Validation.commit_oid).where(_claimable(now)).order_by(Validation.updated_at).limit(8)
        ).all()
    for oid in candidates:
        with hub.db.session() as s:
            done = s.execute(
                update(Validation)
                .where(Validation.commit_oid == oid, _claimable(now))
                .values(status="running", claimed_by=me, lease_until=until, attempts=Validation.attempts + 1)
            )
            if done.rowcount == 1:
                return oid, s.scalar(select(Validation.attempts).where(Validation.commit_oid == oid))
    return None


def extend(hub, oid: str, me: str, lease: float) -> bool:
    """Renew worker ``me``'s claim on ``oid``; False if it no longer holds it."""
    with hub.db.session() as s:
        done = s.execute(
            update(Validation)
            .where(Validation.commit_oid == oid, Validation.claimed_by == me, Validation.status == "running")
            .values(lease_until=utcnow() + dt.timedelta(seconds=lease))
        )
        return done.rowcount == 1


def release(hub, oid: str, me: str) -> None:
    """Give a claimed validation back (the worker is stopping): pending again, for the next worker."""
    with hub.db.session() as s:
        s.execute(
            update(Validation)
            .where(Validation.commit_oid == oid, Validation.claimed_by == me, Validation.status == "running")
            .values(status="pending", claimed_by=None, lease_until=None)
        )


def run_one(hub, oid: str, attempts: int, me: str, lease: float) -> str | None:
    """Validate the claimed commit ``oid`` until done, renewing the lease meanwhile; its status (None: the
    claim was lost and the result dropped)."""
    if attempts > MAX_ATTEMPTS:
        n = attempts - 1
        error = f"the load check was started {n} times and never finished (its worker stopped each time)"
        report = {"kind": "adapter", "adapters": [{"folder": "", "ok": False, "errors": [error]}]}
        return hub.record_validation(oid, report, me)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease / 3):
            try:
                if not extend(hub, oid, me, lease):
                    log.warning("lost the claim on the validation of %s", oid)
                    return
            except Exception:  # noqa: BLE001 - a missed heartbeat only shortens the lease
                log.exception("could not renew the claim on %s", oid)

    beat = threading.Thread(target=heartbeat, name="validation-lease", daemon=True)
    beat.start()
    try:
        return validation.revalidate(hub, oid, wait=math.inf, owner=me)
    finally:
        stop.set()
        beat.join()


def run_worker(hub, me: str | None = None, poll: float = 1.0, until_idle: bool = False) -> int:
    """Take and run validations until stopped (SIGTERM / Ctrl-C: the one in hand is given back), or with
    ``until_idle`` until none is left. Returns how many were run."""
    me = me or worker_id()
    lease = hub.settings.validation_lease
    done = 0
    log.info("validation worker %s started (lease %.0f s)", me, lease)
    while True:
        got = claim(hub, me, lease)
        if got is None:
            if until_idle:
                return done
            time.sleep(poll)
            continue
        oid, attempts = got
        try:
            status = run_one(hub, oid, attempts, me, lease)
        except Exception:  # noqa: BLE001 - e.g. the database went away for a moment: give it back, go on
            log.exception("validation of %s broke off", oid)
            release(hub, oid, me)
            time.sleep(poll)
            continue
        except BaseException:  # stopped: the next worker takes it at once
            release(hub, oid, me)
            raise
        done += 1
        log.info("validation of %s: %s", oid, status or "dropped (claim lost)")

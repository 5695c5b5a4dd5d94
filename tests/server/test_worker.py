"""Validation workers: a hub served with ``validation_queue`` stores uploads at once (validation pending) and
``adapterhub worker`` processes (their own data folders, the same database and S3 bucket) run the load checks;
claims are exclusive under concurrency, expire without a heartbeat, and a killed worker's validation is
taken over by another."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import pytest

hf = pytest.importorskip("huggingface_hub")
pytest.importorskip("boto3")
from s3_support import new_bucket  # noqa: E402
from test_s3 import Replica, _push_adapter  # noqa: E402
from test_uploads import _adapter_files, needs_fixtures  # noqa: E402

from adapterhub.server import queue  # noqa: E402
from adapterhub.server.models import Account, Commit, Repo, Validation, utcnow  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


# --- the queue itself ------------------------------------------------------------------------------------


@pytest.fixture()
def queued(db_url):
    """A bare database (``hub.db``) with 24 commits whose validations are pending."""
    from adapterhub.server.db import Database
    from adapterhub.server.migrate import upgrade

    db = Database(db_url)
    upgrade(db.engine)
    name = f"q{secrets.token_hex(4)}"
    oids = [secrets.token_hex(20) for _ in range(24)]
    with db.session() as s:
        acc = Account(name=name, kind="user")
        s.add(acc)
        s.flush()
        repo = Repo(namespace=name, name="queue", owner_id=acc.id)
        s.add(repo)
        s.flush()
        s.add_all([Commit(oid=o, repo_id=repo.id, title="x") for o in oids])
        s.flush()
        s.add_all([Validation(commit_oid=o, status="pending", report={}) for o in oids])
    hub = types.SimpleNamespace(db=db, record_validation=None)
    yield hub, set(oids)
    with db.session() as s:
        s.query(Validation).filter(Validation.commit_oid.in_(oids)).delete()
    db.dispose()


def test_concurrent_claims_take_each_validation_once(queued):
    hub, oids = queued
    taken: dict[str, list[str]] = {}

    def work(me: str) -> None:
        mine = taken.setdefault(me, [])
        while (got := queue.claim(hub, me, 60)) is not None:
            mine.append(got[0])

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [o for mine in taken.values() for o in mine]
    assert sorted(claimed) == sorted(oids)  # every one, none twice
    with hub.db.session() as s:
        rows = s.query(Validation).filter(Validation.commit_oid.in_(oids)).all()
        assert {(v.status, v.attempts) for v in rows} == {("running", 1)}
        assert {v.commit_oid: v.claimed_by for v in rows} == {
            o: me for me, mine in taken.items() for o in mine
        }


def test_an_expired_claim_is_taken_over_and_the_old_owner_cannot_record(queued):
    from adapterhub.server import validation

    hub, oids = queued
    hub.record_validation = lambda oid, report, owner=None: validation.record_validation(
        hub, oid, report, owner
    )
    first, attempts = queue.claim(hub, "dead", 0.3)
    assert attempts == 1
    assert queue.extend(hub, first, "dead", 0.3) and not queue.extend(hub, first, "someone-else", 60)
    time.sleep(0.5)
    took = {queue.claim(hub, "alive", 60) for _ in range(len(oids))}
    assert (first, 2) in took  # the expired claim, taken over (second attempt)
    report = {"kind": "adapter", "adapters": [{"folder": "", "ok": True, "errors": []}]}
    assert validation.record_validation(hub, first, report, owner="dead") is None  # lost its claim: dropped
    assert not queue.extend(hub, first, "dead", 60)
    assert validation.record_validation(hub, first, report, owner="alive") == "passed"
    with hub.db.session() as s:
        v = s.get(Validation, first)
        assert (v.status, v.claimed_by, v.lease_until, v.attempts) == ("passed", None, None, 2)
    # taken too often without a result: recorded as failed with the reason
    second = next(o for o, _ in took if o != first)
    with hub.db.session() as s:
        s.get(Validation, second).attempts = queue.MAX_ATTEMPTS + 1
    assert queue.run_one(hub, second, queue.MAX_ATTEMPTS + 1, "alive", 60) == "failed"
    with hub.db.session() as s:
        assert "started 3 times and never finished" in s.get(Validation, second).errors[0]
    queue.release(hub, next(o for o, _ in took if o not in (first, second)), "alive")
    with hub.db.session() as s:
        assert s.query(Validation).filter(Validation.status == "pending").count() == 1


# --- hubs and worker processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def queued_hub(db_url, s3_endpoint, tmp_path_factory):
    """A hub with validation_queue on S3 (in this process), a write token for alice, the worker command."""
    if not db_url.startswith("postgresql"):
        pytest.skip("worker processes run against PostgreSQL, as deployed (SQLite claims: the tests above)")
    from adapterhub.server import auth
    from adapterhub.server.settings import Settings

    store = f"s3://{new_bucket(s3_endpoint)}/blobs"
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), database_url=db_url, blob_store=store,
                        s3_endpoint_url=s3_endpoint, validation_queue=True)  # fmt: skip
    hub = Replica(settings)
    with hub.hub.db.session() as s:
        token = auth.create_token(s, auth.create_account(s, "alice"), "write")

    def worker(*args: str) -> subprocess.Popen:
        data = tmp_path_factory.mktemp("w")
        cmd = [sys.executable, "-m", "adapterhub.cli", "worker", "--data-dir", str(data), "--database-url", db_url,
               "--blob-store", store, "--s3-endpoint-url", s3_endpoint, "--poll", "0.1", *args]  # fmt: skip
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    yield hub, token, worker
    hub.stop()


def _validation(hub, repo_id: str) -> dict:
    return httpx.get(f"{hub.url}/api/models/{repo_id}/validation").json()


def _broken(files: dict[str, bytes]) -> dict[str, bytes]:
    from safetensors.torch import load, save

    weights = load(files["adapter.safetensors"])
    weights.pop(sorted(weights)[-1])
    return {**files, "adapter.safetensors": save(weights)}


@needs_fixtures
def test_uploads_are_stored_pending_and_a_worker_validates_them(queued_hub):
    from adapterhub.server.index_models import IndexEntry

    hub, token, worker = queued_hub
    good, _ = _push_adapter(hub.url, token, "alice/queued-good")
    api = hf.HfApi(endpoint=hub.url, token=token)
    api.create_repo("alice/queued-bad")
    bad = api.create_commit(
        "alice/queued-bad",
        operations=[hf.CommitOperationAdd(p, d) for p, d in _broken(_adapter_files("seq_bn")).items()],
        commit_message="missing a tensor",
    ).oid  # stored: the check that would refuse it has not run yet
    assert _validation(hub, "alice/queued-good")["status"] == "pending"
    assert _validation(hub, "alice/queued-bad")["status"] == "pending"
    assert list((Path(hub.settings.data_dir) / "tmp").iterdir()) == []  # no load check in the web process
    proc = worker("--until-idle")
    assert proc.wait(300) == 0
    v = _validation(hub, "alice/queued-good")
    assert (v["commit"], v["status"]) == (good, "passed") and v["report"]["adapters"][0]["num_params"] > 0, v
    v = _validation(hub, "alice/queued-bad")
    assert (v["commit"], v["status"]) == (bad, "failed") and any("missing" in e for e in v["errors"]), v
    with hub.hub.db.session() as s:  # the worker ran the search index's post-validation hook
        status = dict(s.query(IndexEntry.full_name, IndexEntry.validation_status).all())
    assert status["alice/queued-good"] == "passed" and status["alice/queued-bad"] == "failed"


@needs_fixtures
def test_a_killed_workers_validation_is_taken_over_by_another(queued_hub):
    hub, token, worker = queued_hub
    repos = [f"alice/takeover-{i}" for i in range(3)]
    for r in repos:
        _push_adapter(hub.url, token, r)
    doomed = worker("--lease", "2")
    held = None
    try:
        deadline = time.time() + 240
        while held is None and time.time() < deadline and doomed.poll() is None:
            row = _running(hub)
            if row is None:
                time.sleep(0.01)
                continue
            os.kill(doomed.pid, signal.SIGSTOP)  # frozen mid-check: no heartbeat, no result
            if _running(hub) == row:
                held = row
            else:  # it finished that one between the two looks: let it go on
                os.kill(doomed.pid, signal.SIGCONT)
    finally:
        doomed.kill()
        doomed.wait(30)
    assert held is not None, "the first worker was never caught holding a validation"
    oid, holder, lease_until = held
    while utcnow() <= lease_until:  # its lease runs out (no heartbeat from a dead worker)
        time.sleep(0.1)
    rescuer = worker("--until-idle", "--lease", "2")
    assert rescuer.wait(300) == 0
    with hub.hub.db.session() as s:
        v = s.get(Validation, oid)
        assert (v.status, v.claimed_by, v.attempts) == ("passed", None, 2)  # taken a second time, finished
    assert [_validation(hub, r)["status"] for r in repos] == ["passed"] * 3


def _running(hub) -> tuple[str, str, dt.datetime] | None:
    with hub.hub.db.session() as s:
        v = s.query(Validation).filter(Validation.status == "running").first()
        return (v.commit_oid, v.claimed_by, v.lease_until) if v is not None else None

"""Fixtures for the hub server tests: a database per module (SQLite, and PostgreSQL when
ADAPTERHUB_TEST_DATABASE_URL is set), and a live server on 127.0.0.1 (uvicorn in a thread) with users."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

PG_URL = os.environ.get("ADAPTERHUB_TEST_DATABASE_URL", "")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path_factory):
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.sqlite'}"
        return
    if not PG_URL:
        pytest.skip('ADAPTERHUB_TEST_DATABASE_URL is not set (run: eval "$(bash scripts/services.sh)")')
    import sqlalchemy as sa

    name = f"ah_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclasses.dataclass
class LiveHub:
    url: str
    hub: object  # adapterhub.server.hub.Hub
    tokens: dict[str, str]  # "alice" (write), "alice-read", "bob" (write)
    data_dir: Path

    def api(self, who: str | None = "alice"):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.tokens[who] if who else False)

    def blob_files(self) -> set[str]:
        return {p.name for p in (self.data_dir / "blobs").rglob("*") if p.is_file()}

    def count(self, model) -> int:
        from sqlalchemy import func, select

        with self.hub.db.session() as s:
            return s.scalar(select(func.count()).select_from(model))


import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # also when tests/client/conftest.py loads this file by path
from server_support import start_server  # noqa: E402  (shared with tests that start a second server)


@pytest.fixture(scope="module")
def live_hub(db_url, tmp_path_factory):
    from adapterhub.server import auth
    from adapterhub.server.app import create_app
    from adapterhub.server.hub import Hub
    from adapterhub.server.settings import Settings

    data = tmp_path_factory.mktemp("hub")
    settings = Settings(data_dir=data, database_url=db_url, validation_wait=30.0)
    hub = Hub(settings)
    tokens = {}
    with hub.db.session() as s:
        alice = auth.create_account(s, "alice")
        bob = auth.create_account(s, "bob")
        acme = auth.create_account(s, "acme", kind="org")
        auth.add_member(s, acme, alice, "write")
        tokens["alice"] = auth.create_token(s, alice, "write")
        tokens["alice-read"] = auth.create_token(s, alice, "read")
        tokens["bob"] = auth.create_token(s, bob, "write")
    url, server, thread = start_server(create_app(hub=hub))
    yield LiveHub(url, hub, tokens, data)
    server.should_exit = True
    thread.join(10)
    hub.close()


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of a moto S3 server for this test session, with fake AWS credentials set for boto3."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from s3_support import FAKE_AWS, start_moto

    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    url, proc = start_moto()
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


INTEROP = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "interop"


@pytest.fixture(scope="module")
def base_repo(live_hub):
    """alice/bert-tiny: a base model repository holding only config.json (the interop BERT)."""
    if not INTEROP.is_dir():
        pytest.skip("../shared/fixtures/interop is missing")
    api = live_hub.api("alice")
    api.create_repo("alice/bert-tiny")
    api.upload_file(
        path_or_fileobj=INTEROP / "bert/base/config.json",
        path_in_repo="config.json",
        repo_id="alice/bert-tiny",
    )
    return "alice/bert-tiny"

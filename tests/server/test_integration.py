"""The hub with other clients and set-ups: transformers through HF_ENDPOINT, two server processes sharing
one database and blob folder, the `serve` admin options, canonical base-model ids, and migrations that
match the models."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

hf = pytest.importorskip("huggingface_hub")


def test_transformers_loads_a_model_through_hf_endpoint(live_hub, tmp_path):
    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("a client-side check: run once, on SQLite (a fresh transformers process takes seconds)")
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path / "m")
    api = live_hub.api("alice")
    api.create_repo("alice/tiny-bert-full")
    api.upload_folder(repo_id="alice/tiny-bert-full", folder_path=tmp_path / "m")
    script = (
        "import sys, torch, transformers\n"
        "m = transformers.AutoModel.from_pretrained('alice/tiny-bert-full')\n"
        "print(sum(float(p.double().sum()) for p in m.state_dict().values()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=live_hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    local = transformers.AutoModel.from_pretrained(tmp_path / "m")
    expected = sum(float(p.double().sum()) for p in local.state_dict().values())
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-12)


def test_two_servers_share_one_database_and_blob_folder(live_hub, db_url):
    """A second server process (here: a second Hub and uvicorn server) on the same database and data dir."""
    from server_support import start_server

    from adapterhub.server.app import create_app
    from adapterhub.server.hub import Hub

    second = Hub(live_hub.hub.settings)
    url2, server, thread = start_server(create_app(hub=second))
    try:
        api1, api2 = live_hub.api("alice"), hf.HfApi(endpoint=url2, token=live_hub.tokens["alice"])
        api1.create_repo("alice/shared-db")
        c1 = api1.upload_file(
            path_or_fileobj=b"from server one", path_in_repo="one.txt", repo_id="alice/shared-db"
        ).oid
        assert httpx.get(f"{url2}/alice/shared-db/resolve/main/one.txt").content == b"from server one"
        c2 = api2.upload_file(
            path_or_fileobj=b"from server two", path_in_repo="two.txt", repo_id="alice/shared-db"
        ).oid
        api2.create_tag("alice/shared-db", tag="both", revision=c2)
        assert httpx.get(f"{live_hub.url}/alice/shared-db/resolve/both/two.txt").content == b"from server two"
        assert [c.commit_id for c in api1.list_repo_commits("alice/shared-db")][:2] == [c2, c1]
    finally:
        server.should_exit = True
        thread.join(10)
        second.close()


def test_serve_admin_options_create_users_orgs_and_tokens(db_url, tmp_path):
    from typer.testing import CliRunner

    import typer

    from adapterhub.server.cli import serve

    app = typer.Typer()
    app.command()(serve)
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--database-url", db_url]
    r = runner.invoke(app, base + ["--create-user", "carol"])
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    assert token.startswith("ah_")
    r = runner.invoke(app, base + ["--create-user", "carol", "--scope", "read"])
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1] != token
    r = runner.invoke(app, base + ["--create-org", "lab", "--member", "carol"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, base + ["--create-org", "lab2", "--member", "nobody"])
    assert r.exit_code != 0 and "nobody" in r.output

    from sqlalchemy import select

    from adapterhub.server import auth
    from adapterhub.server.db import Database
    from adapterhub.server.models import Account

    db = Database(db_url)
    with db.session() as s:
        caller = auth.caller_from_header(s, f"Bearer {token}")
        lab = s.scalar(select(Account).where(Account.name == "lab"))
        assert caller.name == "carol" and caller.scope == "write" and caller.orgs == {lab.id: "write"}
        with pytest.raises(auth.AuthError):
            auth.caller_from_header(s, "Bearer ah_not-a-token")
    db.dispose()


def test_admin_creates_canonical_base_model_ids(live_hub, tmp_path):
    from adapterhub.server import auth

    with live_hub.hub.db.session() as s:
        root = auth.create_account(s, "root", is_admin=True)
        token = auth.create_token(s, root, "write")
    # (huggingface_hub 2.x cannot parse a one-segment repo URL, so the repo is created with a plain POST)
    r = httpx.post(
        f"{live_hub.url}/api/repos/create",
        json={"name": "bert-canonical"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200 and r.json()["url"] == f"{live_hub.url}/bert-canonical"
    # (nor a one-segment commit URL: the commit is sent as NDJSON directly, as the 0.3x client does)
    content = base64.b64encode(json.dumps({"model_type": "bert"}).encode()).decode()
    body = "\n".join(json.dumps(x) for x in ({"key": "header", "value": {"summary": "base"}},
                      {"key": "file", "value": {"path": "config.json", "encoding": "base64", "content": content}}))  # fmt: skip
    r = httpx.post(
        f"{live_hub.url}/api/models/bert-canonical/commit/main",
        content=body,
        headers={"authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    got = hf.hf_hub_download(
        "bert-canonical", "config.json", endpoint=live_hub.url, token=False, cache_dir=tmp_path
    )
    assert json.loads(open(got).read()) == {"model_type": "bert"}
    r = httpx.get(f"{live_hub.url}/bert-canonical/resolve/main/config.json")
    assert r.status_code == 200 and r.json() == {"model_type": "bert"}
    assert hf.HfApi(endpoint=live_hub.url).model_info("bert-canonical").sha == r.headers["x-repo-commit"]
    # a plain user's bare name still goes to the user's namespace, and canonical repos are admin-only
    assert live_hub.api("alice").create_repo("plain").repo_id == "alice/plain"
    with pytest.raises(hf.errors.HfHubHTTPError) as e:
        live_hub.api("alice").upload_file(
            path_or_fileobj=b"{}", path_in_repo="x.json", repo_id="bert-canonical"
        )
    assert e.value.response.status_code == 403


def test_migrations_match_the_models(db_url):
    """Every table of every module (core and index) is created by the migrations, with nothing missing."""
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    from adapterhub.server import migrate
    from adapterhub.server.db import Database

    db = Database(db_url)
    migrate.upgrade(db.engine)
    try:
        command.check(migrate.alembic_config(db_url))
    except AutogenerateDiffsDetected as e:  # pragma: no cover - the message says what differs
        pytest.fail(f"models and migrations differ: {e}")
    finally:
        db.dispose()


def test_adapterhub_serve_command_starts_and_serves(tmp_path):
    """`adapterhub serve` as a user runs it, with the embedded defaults (SQLite file and blob folder under
    --data-dir): a round trip. (PostgreSQL through --database-url: the tests above, in process.)"""
    import shutil
    import time

    from adapterhub.client.local import free_port

    exe = shutil.which("adapterhub", path=str(Path(sys.executable).parent)) or "adapterhub"
    args = [exe, "serve", "--data-dir", str(tmp_path / "data")]
    db_url = f"sqlite:///{tmp_path / 'data' / 'hub.sqlite'}"
    (tmp_path / "data").mkdir()
    from adapterhub.server import auth, migrate
    from adapterhub.server.db import Database

    db = Database(db_url)
    migrate.upgrade(db.engine)
    with db.session() as s:
        token = auth.create_token(s, auth.create_account(s, "dave"), "write")
    db.dispose()
    port = free_port()
    proc = subprocess.Popen(
        args + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if (
                    httpx.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"})
                    .json()
                    .get("name")
                    == "dave"
                ):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "adapterhub serve did not answer"
            time.sleep(0.2)
        api = hf.HfApi(endpoint=url, token=token)
        api.create_repo("dave/x")
        api.upload_file(path_or_fileobj=b"served", path_in_repo="s.txt", repo_id="dave/x")
        assert httpx.get(f"{url}/dave/x/resolve/main/s.txt").content == b"served"
        assert len([p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]) == 1
    finally:
        proc.terminate()
        proc.wait(20)


def test_garbage_collection_after_repo_deletion(live_hub):
    from adapterhub.server.repos import collect_garbage

    api = live_hub.api("alice")
    for name in ("gc-a", "gc-b"):
        api.create_repo(f"alice/{name}")
        api.upload_file(path_or_fileobj=b"shared bytes", path_in_repo="s.txt", repo_id=f"alice/{name}")
    api.upload_file(path_or_fileobj=b"only in a", path_in_repo="a.txt", repo_id="alice/gc-a")
    before = live_hub.blob_files()
    stray = live_hub.data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)  # a file without a row
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    assert collect_garbage(live_hub.hub, grace_seconds=3600) == (0, 0, 0)  # everything is recent: kept
    api.delete_repo("alice/gc-a")
    rows, files, _ = collect_garbage(live_hub.hub, grace_seconds=0)
    assert (rows, files) == (1, 2)  # "only in a" (row and file) and the stray file
    assert live_hub.blob_files() == before - {hashlib.sha256(b"only in a").hexdigest()}
    assert httpx.get(f"{live_hub.url}/alice/gc-b/resolve/main/s.txt").content == b"shared bytes"


INTEROP = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "interop"


@pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")
def test_transformers_and_peft_load_base_and_lora_from_the_hub(live_hub, tmp_path):
    """transformers + peft, unchanged, with HF_ENDPOINT at the hub: the base model and a PEFT LoRA pushed
    to the hub reproduce the reference output saved by peft 0.21.2."""
    pytest.importorskip("peft")
    if live_hub.hub.db.engine.dialect.name != "sqlite":
        pytest.skip("a client-side check: run once, on SQLite (a fresh transformers process takes seconds)")
    api = live_hub.api("alice")
    api.create_repo("alice/bert-interop")
    api.upload_folder(repo_id="alice/bert-interop", folder_path=INTEROP / "bert" / "base")
    api.create_repo("alice/bert-interop-lora")
    lora = INTEROP / "bert" / "peft" / "lora_qv"
    ops = [hf.CommitOperationAdd(n, lora / n) for n in ("adapter_config.json", "adapter_model.safetensors")]
    ops.append(
        hf.CommitOperationAdd(
            "README.md", b"---\nbase_model: alice/bert-interop\nlibrary_name: peft\n---\n# LoRA\n"
        )
    )
    api.create_commit("alice/bert-interop-lora", operations=ops, commit_message="lora")
    assert (
        httpx.get(f"{live_hub.url}/api/models/alice/bert-interop-lora/validation").json()["status"]
        == "passed"
    )
    script = (
        "import sys, torch, transformers, peft\n"
        "from safetensors.torch import load_file\n"
        "ref = load_file(sys.argv[1])\n"
        "m = transformers.AutoModel.from_pretrained('alice/bert-interop', attn_implementation='eager').eval()\n"
        "pm = peft.PeftModel.from_pretrained(m, 'alice/bert-interop-lora').eval()\n"
        "with torch.no_grad():\n"
        "    out = pm(input_ids=ref['input_ids'], attention_mask=ref['attention_mask']).last_hidden_state\n"
        "print((out - ref['output']).abs().max().item())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=live_hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    out = subprocess.run([sys.executable, "-c", script, str(lora / "expected.safetensors")], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5

"""``adapterhub token list / create / revoke`` against the live hub: a made token works, is listed without its
value, and stops working once revoked; a read token cannot make tokens."""

from __future__ import annotations

import json

import httpx
import typer
from typer.testing import CliRunner

from adapterhub.client import cli as client_cli


def test_token_list_create_revoke(live_hub, tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setenv("ADAPTERHUB_ENDPOINT", live_hub.url)
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERHUB_TOKEN", live_hub.tokens["alice"])
    monkeypatch.setattr(client_cli, "console", Console(width=250))
    app = typer.Typer()
    client_cli.register(app)
    runner = CliRunner()

    def run(*args):
        out = runner.invoke(app, list(args), catch_exceptions=False)
        return out.exit_code, out.stdout

    code, out = run("token", "create", "ci-runner", "--scope", "read")
    assert code == 0
    made = out.strip().splitlines()[-1]
    assert made.startswith("ah_")
    who = httpx.get(f"{live_hub.url}/api/whoami-v2", headers={"Authorization": f"Bearer {made}"}).json()
    assert who["name"] == "alice" and who["auth"]["accessToken"]["role"] == "read"
    code, out = run("token", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["ci-runner"]["scope"] == "read" and not rows["ci-runner"]["revoked"]
    assert made not in out
    code, out = run("token", "list")
    assert code == 0 and "ci-runner" in out and "(this one)" in out
    # the read token may not make a token; a bad scope is refused before asking the hub
    code, _ = run("token", "create", "x", "--token", made)
    assert code == 1
    code, _ = run("token", "create", "x", "--scope", "admin")
    assert code == 1
    code, out = run("token", "revoke", str(rows["ci-runner"]["id"]))
    assert code == 0 and "revoked token" in out
    r = httpx.get(f"{live_hub.url}/api/whoami-v2", headers={"Authorization": f"Bearer {made}"})
    assert r.status_code == 401
    code, out = run("token", "list", "--json")
    assert {r["name"]: r for r in json.loads(out)}["ci-runner"]["revoked"] is True
    code, _ = run("token", "revoke", "999999")
    assert code == 1

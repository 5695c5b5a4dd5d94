"""Push, card, search, info, private repositories, huggingface_hub interoperability and the CLI, against the
live hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from client_support import BASE, adapter_model, fresh_model
from tiny_models import inputs, output_of
import typer
from typer.testing import CliRunner

from adapterhub.client import cli as client_cli
from adapterhub.client import (
    AuthError,
    Cache,
    IdentifierError,
    NotFoundError,
    adapter_info,
    list_adapters,
    search_adapters,
)


@pytest.fixture(scope="module")
def pushed(client_hub):
    model = adapter_model(11)
    result = model.push_adapter_to_hub(
        "acme/publish-nli",
        "sst",
        task="nli",
        subtask="rte-publish",
        language=["en", "de"],
        dataset="glue/rte",
        metrics={"accuracy": 0.73, "f1": 0.7},
        license="mit",
        tags=["demo"],
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    return result, model


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])


def test_push_writes_adapter_head_and_card_and_waits_for_validation(client_hub, pushed, env, tmp_path):
    result, model = pushed
    assert result.validation == "passed" and len(result.commit) == 40
    assert result.url == f"{client_hub.url}/acme/publish-nli"
    from adapterhub.client import adapter_folder

    snap = adapter_folder("acme/publish-nli")
    assert {p.name for p in snap.iterdir()} == {
        "README.md",
        "adapter_config.json",
        "adapter.safetensors",
        "head_config.json",
        "model_head.safetensors",
    }
    meta = _front_matter((snap / "README.md").read_text())
    assert meta["base_model"] == BASE and meta["task"] == "nli" and meta["subtask"] == "rte-publish"
    assert meta["language"] == ["en", "de"] and meta["datasets"] == ["glue/rte"] and meta["license"] == "mit"
    assert meta["metrics"] == {"accuracy": 0.73, "f1": 0.7}
    assert {"adapterhub", "adapters", "bottleneck", "adapterhub:nli/rte-publish", "demo"} <= set(meta["tags"])
    assert json.loads((snap / "adapter_config.json").read_text())["model_name"] == BASE
    local = tmp_path / "local"
    model.save_adapter(local, "sst")
    assert (snap / "adapter.safetensors").read_bytes() == (local / "adapter.safetensors").read_bytes()
    assert (snap / "model_head.safetensors").read_bytes() == (local / "model_head.safetensors").read_bytes()


def test_search_and_info_from_python(client_hub, pushed, env):
    result, _ = pushed
    hits = list_adapters(task="nli", base_model=BASE)
    assert [h.id for h in hits] == ["acme/publish-nli"]
    assert hits[0].commit == result.commit and hits[0].language == "en" and hits[0].validation == "passed"
    assert list_adapters("publish", subtask="rte-publish", license="mit")[0].id == "acme/publish-nli"
    assert list_adapters(task="nli", base_model="nobody/none") == []
    page = search_adapters(base_model=BASE, task="nli")
    assert page.total == 1 and ("nli", 1) in page.facets["task"]
    info = adapter_info("nli/rte-publish@acme", model_name=BASE)
    assert info["commit"] == result.commit and info["validation"]["status"] == "passed"
    assert {f["path"] for f in info["files"]} >= {"adapter.safetensors", "adapter_config.json"}
    with pytest.raises(IdentifierError, match="unknown search filter"):
        list_adapters(colour="blue")


def test_private_repository_needs_the_owners_token(client_hub, env, monkeypatch):
    model = adapter_model(12)
    result = model.push_adapter_to_hub(
        "alice/secret", "sst", private=True, endpoint=client_hub.url, token=client_hub.tokens["alice"]
    )
    with pytest.raises(NotFoundError, match="private"):
        fresh_model().load_adapter("alice/secret")
    with pytest.raises(NotFoundError):
        fresh_model().load_adapter("alice/secret", token=client_hub.tokens["bob"])
    loaded = fresh_model()
    loaded.load_adapter("alice/secret", token=client_hub.tokens["alice"], set_active=True)
    assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))
    # a token from the environment works too, and is shown nowhere
    monkeypatch.setenv("ADAPTERHUB_TOKEN", client_hub.tokens["alice"])
    assert fresh_model().load_adapter(f"alice/secret@{result.commit}") == "sst"
    with pytest.raises(AuthError):
        adapter_model(13).push_adapter_to_hub(
            "alice/secret", "sst", endpoint=client_hub.url, token=client_hub.tokens["alice-read"]
        )


def test_push_refuses_what_the_hub_would_not_validate(client_hub, env):
    model = adapter_model(14)
    model.config.name_or_path = str(Path.cwd())  # a local path is not a hub id
    with pytest.raises(IdentifierError, match="base_model"):
        model.push_adapter_to_hub("alice/nope", "sst", token=client_hub.tokens["alice"])
    with pytest.raises(IdentifierError, match="needs a write token"):
        adapter_model(14).push_adapter_to_hub("alice/nope", "sst")
    with pytest.raises(IdentifierError, match="no adapter named"):
        adapter_model(14).push_adapter_to_hub("alice/nope", "missing", token=client_hub.tokens["alice"])


def test_adapter_pushed_with_huggingface_hub_loads_by_identifier(client_hub, env, tmp_path):
    from huggingface_hub import HfApi

    model = adapter_model(21)
    model.save_adapter(tmp_path / "a", "sst")
    api = HfApi(endpoint=client_hub.url, token=client_hub.tokens["alice"])
    api.create_repo("alice/hf-pushed", exist_ok=True)
    api.upload_folder(repo_id="alice/hf-pushed", folder_path=str(tmp_path / "a"))
    loaded = fresh_model()
    assert loaded.load_adapter("alice/hf-pushed", set_active=True) == "sst"
    assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))


def test_adapter_pushed_by_us_downloads_with_snapshot_download(client_hub, pushed, env, tmp_path):
    from huggingface_hub import snapshot_download

    result, model = pushed
    path = Path(
        snapshot_download(
            "acme/publish-nli",
            endpoint=client_hub.url,
            cache_dir=str(tmp_path / "hf"),
            revision=result.commit,
        )
    )
    from adapterhub.client import adapter_folder

    snap = adapter_folder(f"acme/publish-nli@{result.commit}")
    names = sorted(p.name for p in snap.iterdir())
    assert names == sorted(p.name for p in path.iterdir())
    for name in names:
        assert (path / name).read_bytes() == (snap / name).read_bytes(), name
    loaded = fresh_model()
    loaded.load_adapter(str(path), set_active=True)
    assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))


def test_push_setup(client_hub, env, monkeypatch, tmp_path):
    from adapterhub import Stack

    model = adapter_model(31, name="lang")
    model.add_adapter("task", config="seq_bn")
    with torch.no_grad():
        for p in model.adapterhub_state.adapter_parameters("task").values():
            p.add_(0.1)
    model.set_active_adapters(Stack("lang", "task"))
    result = model.push_adapter_setup_to_hub(
        "acme/stacked",
        Stack("lang", "task"),
        task="nli",
        subtask="setup-test",
        token=client_hub.tokens["alice"],
    )
    assert result.validation == "passed"
    loaded = fresh_model()
    setup, _ = loaded.load_adapter_setup("acme/stacked", set_active=True)
    assert setup.names() == ["lang", "task"]
    assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))
    # the hub options go through to the download: a private copy, endpoint and token as arguments, none in env
    model.push_adapter_setup_to_hub(
        "alice/stacked-private", Stack("lang", "task"), private=True, token=client_hub.tokens["alice"]
    )
    monkeypatch.delenv("ADAPTERHUB_ENDPOINT")
    with pytest.raises(NotFoundError):
        fresh_model().load_adapter_setup("alice/stacked-private", endpoint=client_hub.url, token=False)
    private = fresh_model()
    private.load_adapter_setup(
        "alice/stacked-private",
        set_active=True,
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
        cache_dir=tmp_path / "setup-cache",
    )
    assert torch.allclose(output_of(private, inputs()), output_of(model, inputs()))
    assert list((tmp_path / "setup-cache").rglob("manifests/*.json"))


def test_cli_search_info_pull_push_login_and_cache(client_hub, pushed, env, tmp_path, monkeypatch):
    from rich.console import Console

    result, model = pushed
    monkeypatch.setattr(client_cli, "console", Console(width=250))
    runner = CliRunner()
    app = typer.Typer()  # the commands as adapterhub/cli.py registers them
    client_cli.register(app)

    def run(*args):
        out = runner.invoke(app, list(args), catch_exceptions=False)
        return out.exit_code, out.output

    code, out = run("search", "--task", "nli", "--base-model", BASE)
    assert code == 0 and "acme/publish-nli" in out and "passed" in out
    code, out = run("search", "--task", "nli", "--subtask", "rte-publish", "--json")
    assert code == 0 and json.loads(out)["items"][0]["id"] == "acme/publish-nli"
    code, out = run("info", "acme/publish-nli")
    assert code == 0 and result.commit in out and "adapter.safetensors" in out
    code, out = run("pull", "acme/publish-nli", "--to", str(tmp_path / "copy"))
    assert code == 0 and (tmp_path / "copy" / "adapter.safetensors").is_file()
    assert not (tmp_path / "copy" / "adapter.safetensors").is_symlink()
    code, out = run("pull", "acme/does-not-exist")
    assert code == 1
    # push a saved folder from the command line (no token yet: refused), then log in and push
    model.save_adapter(tmp_path / "saved", "sst")
    code, out = run(
        "push", str(tmp_path / "saved"), "alice/cli-pushed", "--task", "nli", "--metric", "accuracy=0.5"
    )
    assert code == 1
    code, out = run("login", "--token", "ah_not-a-token")
    assert code == 1 and not (Path(os.environ["ADAPTERHUB_HOME"]) / "tokens.json").exists()
    code, out = run("login", "--token", client_hub.tokens["alice"])
    assert code == 0 and "alice" in out
    saved = json.loads((Path(os.environ["ADAPTERHUB_HOME"]) / "tokens.json").read_text())
    assert saved == {client_hub.url: client_hub.tokens["alice"]}
    assert (Path(os.environ["ADAPTERHUB_HOME"]) / "tokens.json").stat().st_mode & 0o077 == 0
    code, out = run(
        "push",
        str(tmp_path / "saved"),
        "alice/cli-pushed",
        "--task",
        "nli",
        "--subtask",
        "cli",
        "--metric",
        "accuracy=0.5",
        "--tag",
        "v1",
    )
    assert code == 0 and "passed" in out, out
    loaded = fresh_model()
    loaded.load_adapter("alice/cli-pushed@v1", set_active=True)
    assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))
    # a folder saved from a model loaded from disk names a local path as its base: --base-model renames it
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    config["model_name"] = str(tmp_path / "some-local-model")
    (tmp_path / "saved" / "adapter_config.json").write_text(json.dumps(config))
    code, out = run("push", str(tmp_path / "saved"), "alice/cli-renamed", "--base-model", BASE, "--no-wait")
    assert code == 0, out
    from adapterhub.client import adapter_folder

    pushed_config = json.loads((adapter_folder("alice/cli-renamed") / "adapter_config.json").read_text())
    assert pushed_config["model_name"] == BASE
    assert (
        json.loads((tmp_path / "saved" / "adapter_config.json").read_text())["model_name"] != BASE
    )  # untouched
    # cache ls / rm / prune
    code, out = run("cache", "ls", "--json")
    rows = json.loads(out)
    assert {r["repo_id"] for r in rows} == {"acme/publish-nli", "alice/cli-pushed", "alice/cli-renamed"}
    code, out = run("cache", "rm", "acme/publish-nli")
    assert code == 0
    assert {e["repo_id"] for e in Cache(env).entries()} == {"alice/cli-pushed", "alice/cli-renamed"}
    code, out = run("cache", "rm", "acme/publish-nli")
    assert code == 1


def test_prune_drops_superseded_snapshots_and_unused_blobs(client_hub, env):
    token = client_hub.tokens["alice"]
    adapter_model(41).push_adapter_to_hub("alice/prune-me", "sst", token=token)
    fresh_model().load_adapter("alice/prune-me")
    adapter_model(42).push_adapter_to_hub("alice/prune-me", "sst", token=token)
    fresh_model().load_adapter("alice/prune-me")  # main moved: a second snapshot
    cache = Cache(env)
    assert len(cache.entries()) == 2
    blobs_before = {p.name for p in env.rglob("blobs/*")}
    stats = cache.prune()
    assert stats["snapshots"] == 1 and stats["blobs"] >= 1
    (kept,) = cache.entries()
    assert kept["refs"] == ["main"]
    assert {p.name for p in env.rglob("blobs/*")} < blobs_before
    fresh_model().load_adapter("alice/prune-me")  # still complete and verified


def test_branch_identifiers_are_asked_again_after_the_ttl_or_a_push(client_hub, env, monkeypatch, tmp_path):
    from adapterhub.client import adapter_folder

    token = client_hub.tokens["alice"]
    first = adapter_model(51).push_adapter_to_hub("alice/ttl", "sst", token=token)
    assert adapter_folder("alice/ttl").name == first.commit
    # pushed from elsewhere (another cache): within the TTL the cached snapshot of main is used ...
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "elsewhere"))
    second = adapter_model(52).push_adapter_to_hub("alice/ttl", "sst", token=token)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(env))
    assert adapter_folder("alice/ttl").name == first.commit
    # ... and with ADAPTERHUB_REF_TTL=0 the hub is always asked
    monkeypatch.setenv("ADAPTERHUB_REF_TTL", "0")
    assert adapter_folder("alice/ttl").name == second.commit
    monkeypatch.delenv("ADAPTERHUB_REF_TTL")
    # a push from this cache is seen at once
    third = adapter_model(53).push_adapter_to_hub("alice/ttl", "sst", token=token)
    assert adapter_folder("alice/ttl").name == third.commit

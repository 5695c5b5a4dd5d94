"""Every identifier form, against the live hub: resolved to the right commit, loaded with the right weights;
ambiguous, unknown and malformed identifiers give clear errors."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
import torch
from client_support import BASE, adapter_model, fresh_model
from tiny_models import inputs, output_of

from adapterhub.client import (
    AmbiguousIdentifierError,
    IdentifierError,
    NotFoundError,
    parse_identifier,
    push_folder,
    resolve,
)


@pytest.fixture(scope="module")
def versions(client_hub, tmp_path_factory):
    """acme/sst-tiny: commit v1 (tagged "v1"), then commit v2 on main; outputs of each."""
    token = client_hub.tokens["alice"]
    out = {}
    for seed, tag in ((1, "v1"), (2, None)):
        model = adapter_model(seed)
        result = model.push_adapter_to_hub(
            "acme/sst-tiny",
            "sst",
            task="sentiment",
            subtask="sst-2",
            language="en",
            metrics={"accuracy": 0.5 + seed / 10},
            tag=tag,
            endpoint=client_hub.url,
            token=token,
        )
        assert result.validation == "passed", result
        out[tag or "v2"] = (result.commit, output_of(model, inputs()))
        local = tmp_path_factory.mktemp(f"local-{seed}")
        model.save_adapter(local, "sst")
        out[f"local-{tag or 'v2'}"] = local
    # the same adapter as a zip inside another repository, reached by URL
    folder = out["local-v1"]
    archive = tmp_path_factory.mktemp("zip") / "sst.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"sst/{f.name}")
    staging = tmp_path_factory.mktemp("zip-repo")
    (staging / "sst.zip").write_bytes(archive.read_bytes())
    push_folder(staging, "alice/archives", endpoint=client_hub.url, token=token)
    out["zip-sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert out["v1"][0] != out["v2"][0]
    assert not torch.allclose(out["v1"][1], out["v2"][1])
    return out


def _forms(url, v1, v2):
    return [  # (identifier, options, expected version)
        ("acme/sst-tiny", {}, "v2"),
        ("acme/sst-tiny@main", {}, "v2"),
        ("acme/sst-tiny@v1", {}, "v1"),
        ("acme/sst-tiny", {"version": "v1"}, "v1"),
        (f"acme/sst-tiny@{v1}", {}, "v1"),
        (f"acme/sst-tiny@{v2}", {}, "v2"),
        ("sentiment/sst-2@acme", {"model_name": BASE}, "v2"),
        ("sentiment/sst-2@acme", {"model_name": BASE, "config": "seq_bn"}, "v2"),
        ("sentiment/sst-2@acme", {"model_name": BASE, "version": "v1"}, "v1"),
        ("sst-2@acme", {"model_name": BASE}, "v2"),
        ("@acme/sst-tiny", {}, "v2"),
        ("@acme/sst-tiny", {"version": "v1"}, "v1"),
        (f"{url}/acme/sst-tiny", {}, "v2"),
        (f"{url}/acme/sst-tiny/tree/v1", {}, "v1"),
    ]


def test_every_identifier_form_resolves_to_the_right_commit(client_hub, versions, env):
    v1, v2 = versions["v1"][0], versions["v2"][0]
    for identifier, options, expected in _forms(client_hub.url, v1, v2):
        if identifier.startswith("http"):
            continue  # URLs are not repository identifiers; loaded below
        pinned = resolve(identifier, **options)
        assert (pinned.repo_id, pinned.commit) == ("acme/sst-tiny", versions[expected][0]), (
            identifier,
            options,
        )


def test_every_identifier_form_loads_the_right_weights(client_hub, versions, env):
    v1, v2 = versions["v1"][0], versions["v2"][0]
    forms = _forms(client_hub.url, v1, v2) + [
        (str(versions["local-v1"]), {}, "v1"),
        (versions["local-v2"], {}, "v2"),
        (f"{client_hub.url}/alice/archives/resolve/main/sst.zip", {"sha256": versions["zip-sha256"]}, "v1"),
        (f"{client_hub.url}/alice/archives/resolve/main/sst.zip#sha256={versions['zip-sha256']}", {}, "v1"),
    ]
    for identifier, options, expected in forms:
        model = fresh_model()
        # the model's own name (alice/tiny-bert) is used for task identifiers when model_name is not given
        options = {k: v for k, v in options.items() if k != "model_name"}
        name = model.load_adapter(identifier, set_active=True, **options)
        assert name == "sst"
        assert torch.allclose(output_of(model, inputs()), versions[expected][1]), (identifier, options)


def test_cached_snapshot_is_keyed_by_endpoint_and_commit(client_hub, versions, env):
    model = fresh_model()
    model.load_adapter("acme/sst-tiny@v1")
    hubs = list((env / "hubs").iterdir())
    assert len(hubs) == 1 and (hubs[0] / "endpoint.txt").read_text() == client_hub.url
    snap = hubs[0] / "models--acme--sst-tiny" / "snapshots" / versions["v1"][0]
    assert (snap / "adapter.safetensors").read_bytes() == (
        versions["local-v1"] / "adapter.safetensors"
    ).read_bytes()
    assert (hubs[0] / "models--acme--sst-tiny" / "refs" / "v1").read_text() == versions["v1"][0]


def test_wrong_zip_hash_is_refused(client_hub, versions, env):
    with pytest.raises(Exception, match="sha256") as info:
        fresh_model().load_adapter(f"{client_hub.url}/alice/archives/resolve/main/sst.zip", sha256="0" * 64)
    assert "discarded" in str(info.value)
    assert not list((env / "urls").rglob("adapter.safetensors"))


def test_ambiguous_identifier_lists_candidates(client_hub, versions, env):
    # a second adapter for the same task by the same org makes the task identifier ambiguous
    model = adapter_model(5)
    model.push_adapter_to_hub(
        "acme/sst-tiny-other",
        "sst",
        task="sentiment",
        subtask="imdb-ambiguous",
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    model.push_adapter_to_hub(
        "acme/sst-tiny-third",
        "sst",
        task="sentiment",
        subtask="imdb-ambiguous",
        endpoint=client_hub.url,
        token=client_hub.tokens["alice"],
    )
    with pytest.raises(AmbiguousIdentifierError) as info:
        resolve("sentiment/imdb-ambiguous@acme", model_name=BASE)
    assert {"acme/sst-tiny-other", "acme/sst-tiny-third"} <= {c.split()[0] for c in info.value.candidates}
    assert "ambiguous" in str(info.value)
    # without model_name the legacy sst-2 cards of ukp make sentiment/sst-2@ukp ambiguous too
    with pytest.raises(AmbiguousIdentifierError, match="model_name"):
        resolve("sentiment/sst-2@ukp")


@pytest.mark.parametrize(
    "identifier, options, message",
    [
        ("acme/no-such-adapter", {}, "no-such-adapter"),
        ("acme/sst-tiny@no-such-revision", {}, "no-such-revision"),
        ("nosuchtask/nosubtask@acme", {}, "nosuchtask/nosubtask@acme"),
        ("@acme/no-such-card", {}, "no-such-card"),
        ("sentiment/sst-2@acme", {"model_name": BASE, "config": "double_seq_bn"}, "config"),
        ("sentiment/sst-2@acme", {"model_name": "someone/other-model"}, "other-model"),
    ],
)
def test_unknown_identifiers_give_clear_errors(client_hub, versions, env, identifier, options, message):
    with pytest.raises(NotFoundError, match=message) as info:
        fresh_model().load_adapter(identifier, **options)
    assert client_hub.url in str(info.value)
    assert not (env / "hubs").exists() or not list((env / "hubs").rglob("manifests/*.json"))


def test_legacy_card_is_not_downloadable(client_hub, env):
    with pytest.raises(NotFoundError, match="legacy AdapterHub card"):
        resolve("@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer")


@pytest.mark.parametrize(
    "identifier, options, message",
    [
        ("a/b/c", {}, "cannot read adapter identifier"),
        ("acme/sst-tiny@v1", {"version": "v2"}, "two revisions"),
        ("ftp://example.org/a.zip", {}, "http"),
    ],
)
def test_malformed_identifiers(env, identifier, options, message):
    with pytest.raises(IdentifierError, match=message):
        fresh_model().load_adapter(identifier, **options)


def test_missing_local_folder_is_reported_as_such(env, tmp_path):
    with pytest.raises(Exception, match="no adapter folder"):
        fresh_model().load_adapter(str(tmp_path / "nothing-here"))
    assert parse_identifier("./x").kind == "local"
    with pytest.raises(IdentifierError, match="non-empty"):
        parse_identifier("  ")
    assert parse_identifier("org/name@rev") == parse_identifier("org/name@rev")
    assert parse_identifier("@org/name").kind == "card"


def test_info_shows_a_legacy_card(client_hub, env):
    """`adapterhub info` of a legacy card shows its metadata and archive instead of failing."""
    from typer.testing import CliRunner

    from adapterhub.cli import app
    from adapterhub.client import adapter_info

    data = adapter_info("@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer")
    assert data["source"] == "legacy" and data["commit"] is None and data["files"] == []
    assert data["repo_id"] == "ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"
    assert data["base_model"] == "bert-base-uncased" and data["config_hash"]
    assert any(str(a.get("url", "")).startswith("http") for a in data["archives"])
    result = CliRunner().invoke(app, ["info", "@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"])
    assert result.exit_code == 0, result.output
    assert "legacy AdapterHub card" in result.output and "archive: http" in result.output
    with pytest.raises(NotFoundError, match="no adapter"):  # unknown identifiers still fail clearly
        adapter_info("@ukp/no-such-card")

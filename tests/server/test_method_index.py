"""Adapters of every method on a live hub: PEFT LoRA and IA3 uploads pass the library's load check, the
index and its search API show each adapter's method and hyper-parameters (AdapterHub and PEFT files), the
method facet filters them, and the resolve and bundle APIs take every method's config name."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import torch
import pytest

hf = pytest.importorskip("huggingface_hub")

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "interop"
pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")

# repository -> fixture folder (AdapterHub files are in the folder's safetensors/ variant)
UPLOADS = {
    "alice/ah-lora": "adapters/lora/safetensors",
    "alice/ah-ia3": "adapters/ia3/safetensors",
    "alice/ah-seqbn": "adapters/seq_bn/safetensors",
    "alice/peft-lora": "peft/lora_qv",
    "alice/peft-ia3": "peft/ia3",
    "alice/peft-lora-all": "peft/lora_all_linear",
}


def _files(folder: str) -> dict[str, bytes]:
    src = INTEROP / "bert" / folder
    files = {
        p.name: p.read_bytes()
        for p in src.iterdir()
        if p.suffix in (".json", ".safetensors") and p.name not in ("meta.json", "expected.safetensors")
    }
    files["README.md"] = b"---\nbase_model: alice/bert-tiny\nlicense: apache-2.0\n---\n# adapter\n"
    return files


@pytest.fixture(scope="module")
def hub(live_hub, base_repo):
    api = live_hub.api("alice")
    for repo, folder in UPLOADS.items():
        api.create_repo(repo)
        api.create_commit(
            repo,
            operations=[hf.CommitOperationAdd(p, d) for p, d in _files(folder).items()],
            commit_message="adapter",
        )
    return live_hub


def _get(hub, path: str, **params) -> httpx.Response:
    return httpx.get(f"{hub.url}{path}", params=params, timeout=30)


def _items(hub, **params) -> dict[str, dict]:
    r = _get(hub, "/api/adapters", author="alice", per_page=50, **params)
    assert r.status_code == 200, r.text
    return {it["id"]: it for it in r.json()["items"]}


@pytest.mark.parametrize(
    "repo, method, params",
    [
        ("alice/peft-lora", "lora", 2048),  # 2 layers x (q, v) x (8x32 + 32x8)
        ("alice/peft-ia3", "ia3", 320),
        ("alice/peft-lora-all", "lora", 7680),
    ],
)
def test_peft_uploads_pass_the_library_load_check(hub, repo, method, params):
    r = _get(hub, f"/api/models/{repo}/validation").json()
    assert r["status"] == "passed" and r["errors"] == [], r
    assert r["method"] == method and r["num_params"] == params
    assert r["report"]["adapters"][0]["changed_modules"] >= 1


def test_index_shows_method_and_hyperparameters(hub):
    items = _items(hub)
    peft_lora = items["alice/peft-lora"]
    assert (peft_lora["library"], peft_lora["method"], peft_lora["method_family"]) == ("peft", "lora", "lora")
    cfg = json.loads((INTEROP / "bert/peft/lora_qv/adapter_config.json").read_text())
    hp = peft_lora["hyperparams"]
    assert hp["r"] == cfg["r"] and hp["lora_alpha"] == cfg["lora_alpha"]
    assert hp["target_modules"] == sorted(cfg["target_modules"])
    assert peft_lora["validation"] == "passed"

    ia3 = items["alice/peft-ia3"]
    assert (ia3["method"], ia3["method_family"]) == ("ia3", "lora")
    cfg = json.loads((INTEROP / "bert/peft/ia3/adapter_config.json").read_text())
    assert ia3["hyperparams"]["target_modules"] == sorted(cfg["target_modules"])
    assert ia3["hyperparams"]["feedforward_modules"] == sorted(cfg["feedforward_modules"])

    ah_lora = items["alice/ah-lora"]
    cfg = json.loads((INTEROP / "bert/adapters/lora/safetensors/adapter_config.json").read_text())["config"]
    assert (ah_lora["library"], ah_lora["method"], ah_lora["method_family"]) == ("adapters", "lora", "lora")
    for key in ("r", "alpha", "attn_matrices", "selfattn_lora"):
        assert ah_lora["hyperparams"][key] == cfg[key], key
    assert items["alice/ah-ia3"]["method"] == "ia3"

    bn = items["alice/ah-seqbn"]
    cfg = json.loads((INTEROP / "bert/adapters/seq_bn/safetensors/adapter_config.json").read_text())["config"]
    assert (bn["method"], bn["method_family"]) == ("seq_bn", "bottleneck")
    assert bn["hyperparams"]["reduction_factor"] == cfg["reduction_factor"]

    # the same view in model info
    info = _get(hub, "/api/models/alice/peft-lora").json()["adapterhub"]
    assert info["method"] == "lora" and info["hyperparams"]["r"] == peft_lora["hyperparams"]["r"]


def test_method_facet_filters(hub):
    assert set(_items(hub, method="lora")) == {"alice/ah-lora", "alice/peft-lora", "alice/peft-lora-all"}
    assert set(_items(hub, method="ia3")) == {"alice/ah-ia3", "alice/peft-ia3"}
    assert set(_items(hub, method="seq_bn")) == {"alice/ah-seqbn"}
    for name in ("dora", "prefix_tuning", "prompt_tuning", "vera"):
        assert _items(hub, method=name) == {}, name
    facets = _get(hub, "/api/adapters", author="alice").json()["facets"]["method"]
    assert {f["value"]: f["count"] for f in facets} == {"lora": 3, "ia3": 2, "seq_bn": 1}


@pytest.mark.parametrize("path", ["/api/adapters/resolve", "/api/adapters/bundle"])
def test_resolve_and_bundle_take_method_config_names(hub, path):
    # the AdapterHub IA3 file is the `ia3` preset: its name, its config string and its hash all resolve it
    for config in ("ia3", "ia3[r=1]", "1ebb5af107e576c0"):
        r = _get(hub, path, identifier="alice/ah-ia3", config=config)
        assert r.status_code == 200, (config, r.text)
    # the LoRA file has alpha 16, the `lora` preset alpha 8: a clear 404, no fallback; its own options match
    r = _get(hub, path, identifier="alice/ah-lora", config="lora")
    assert r.status_code == 404 and "not 625403edad0bf919" in r.json()["error"], r.text
    r = _get(hub, path, identifier="alice/ah-lora", config="lora[alpha=16]")
    assert r.status_code == 200, r.text
    for config in ("dora", "seq_bn", "compacter"):
        assert _get(hub, path, identifier="alice/ah-lora", config=config).status_code == 404, config
    # unknown names and options: 400, the problem said once
    r = _get(hub, path, identifier="alice/ah-lora", config="no_such_method")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.count("unknown adapter config 'no_such_method'") == 1 and "known presets" in error, error
    r = _get(hub, path, identifier="alice/ah-lora", config="lora[rank=4]")
    assert r.status_code == 400 and r.json()["error"].count("'rank'") == 1, r.text


def test_peft_vera_upload_is_validated_through_the_library(hub, tmp_path):
    peft = pytest.importorskip("peft")
    import transformers

    config = transformers.AutoConfig.from_pretrained(INTEROP / "bert/base")
    model = peft.get_peft_model(
        transformers.AutoModel.from_config(config),
        peft.VeraConfig(r=8, target_modules=["query", "value"], projection_prng_key=3),
    )
    with torch.no_grad():
        for key, param in model.named_parameters():
            if "vera_lambda_b" in key:
                param.fill_(0.5)  # a trained adapter: it changes the output
    model.save_pretrained(tmp_path)
    header = json.loads((tmp_path / "adapter_config.json").read_text())
    header["base_model_name_or_path"] = "alice/bert-tiny"  # the hub's name of the base model
    (tmp_path / "adapter_config.json").write_text(json.dumps(header))
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix in (".json", ".safetensors")}
    files["README.md"] = b"---\nbase_model: alice/bert-tiny\n---\n"
    api = hub.api("alice")
    api.create_repo("alice/peft-vera")
    api.create_commit(
        "alice/peft-vera",
        operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()],
        commit_message="v",
    )
    r = _get(hub, "/api/models/alice/peft-vera/validation").json()
    layers, hidden = config.num_hidden_layers, config.hidden_size
    assert r["status"] == "passed" and r["method"] == "vera", r
    assert r["num_params"] == layers * 2 * (hidden + 8)  # the vectors; the shared projections are not counted
    item = _items(hub, method="vera")["alice/peft-vera"]
    assert item["method_family"] == "lora" and item["hyperparams"]["r"] == 8

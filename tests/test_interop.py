"""Adapters saved by the real `adapters` library (1.3.0) load here and reproduce its recorded outputs."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

import adapterhub
from tiny_models import SHARED

FIXTURES = SHARED / "fixtures" / "interop"
NAMES = ["seq_bn", "double_seq_bn", "par_bn", "scaled_par_bn", "seq_bn_inv", "seq_bn-seqcls"]
CASES = [
    (arch, name, sub) for arch in ("bert", "roberta") for name in NAMES for sub in ("bin", "safetensors")
]


def _meta(arch, name):
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    return next(f for f in manifest["fixtures"] if f["fixture"] == f"{arch}/adapters/{name}")


def _base(meta):
    cls = getattr(transformers, meta["model_class"])
    model = cls.from_pretrained(FIXTURES / meta["arch"] / meta["base_dir"], attn_implementation="eager")
    return adapterhub.init(model.eval())


def _run(model, expected):
    with torch.no_grad():
        out = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"])
    return out.logits if out.__class__.__name__.startswith("SequenceClassifier") else out.last_hidden_state


@pytest.mark.parametrize("arch,name,sub", CASES)
def test_fixture_reproduces_recorded_outputs(arch, name, sub):
    meta = _meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    loaded = model.load_adapter(folder / sub)  # bin or safetensors: detected, not told
    assert loaded == meta["adapter_name"]
    model.set_active_adapters(meta["active_setup"])
    assert (_run(model, expected) - expected["output"]).abs().max().item() <= 1e-5
    model.set_active_adapters(None)
    assert (_run(model, expected) - expected["output_inactive"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("name", NAMES)
def test_our_save_loads_back_like_the_fixture(arch, name, tmp_path):
    meta = _meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    model.load_adapter(folder / "safetensors")
    model.save_adapter(tmp_path, meta["adapter_name"])
    theirs = load_file(folder / "safetensors" / "adapter.safetensors")
    ours = load_file(tmp_path / "adapter.safetensors")
    assert sorted(theirs) == sorted(ours)  # same key names as the peer writes
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    their_config = json.loads((folder / "safetensors" / "adapter_config.json").read_text())
    our_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert our_config["config"] == their_config["config"]
    fresh = _base(meta)
    fresh.load_adapter(tmp_path)
    fresh.set_active_adapters(meta["active_setup"])
    assert (_run(fresh, expected) - expected["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "preset, changed",
    [
        ("lora", {"use_rslora": True, "target_modules": ["query"]}),
        ("ia3", {"target_modules": ["value"], "feedforward_modules": ["value"]}),
        ("prefix_tuning", {"shift_positions": True}),
        ("prompt_tuning", {"input_embeddings": True, "random_uniform_scale": 0.1}),
    ],
)
def test_configs_write_the_peers_keys_and_our_extensions_only_when_set(preset, changed):
    saved = json.loads((FIXTURES / "bert" / "adapters" / preset / "bin" / "adapter_config.json").read_text())
    config = adapterhub.resolve_config(preset)
    assert set(config.to_dict()) == set(saved["config"])
    data = config.replace(**changed).to_dict()
    assert {key: data[key] for key in changed} == changed
    assert adapterhub.resolve_config(data) == config.replace(**changed)

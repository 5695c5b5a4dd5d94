"""Interop with the `adapters` library for the rest of the bottleneck family: flexible heads (`-flexhead`),
Compacter (`compacter-seqcls`) and adapter setups (`stack_seq_bn`, `fuse_seq_bn`).

Each fixture in ../shared/fixtures/interop is loaded from `bin/` and `safetensors/` and must reproduce the recorded
outputs (active, inactive, each adapter alone) to max abs diff <= 1e-5; what we save again must load back to the
same outputs exactly and hold the same tensors under the same names as the peer's files.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

import adapterhub
from tiny_models import SHARED

FIXTURES = SHARED / "fixtures" / "interop"
TOLERANCE = 1e-5


def _manifest_entries() -> list[dict]:
    path = FIXTURES / "manifest.json"
    if not path.is_file():
        return []
    entries = []
    for entry in json.loads(path.read_text())["fixtures"]:
        if entry.get("library") != "adapters" or not str(entry.get("status", "")).startswith("ok"):
            continue
        kind, method, cls = entry.get("kind", ""), entry.get("method", ""), entry.get("model_class", "")
        if (
            method == "compacter"
            or cls.endswith("AdapterModel")
            or kind in ("adapters-fuse", "adapters-stack")
        ):
            entries.append(entry)
    return entries


ENTRIES = _manifest_entries()
CASES = [
    pytest.param(e, fmt, id=f"{e['fixture']}[{fmt}]")
    for e in ENTRIES
    for fmt in ("bin", "safetensors")
    if e["save"].get(fmt) == "ok"
]
pytestmark = pytest.mark.skipif(not CASES, reason="interop fixtures not found beside the repository")


def test_the_fixture_set_covers_the_bottleneck_family():
    names = {e["fixture"] for e in ENTRIES}
    assert {
        "bert/adapters/seq_bn-flexhead",
        "roberta/adapters/seq_bn-flexhead",
        "bert/adapters/compacter-seqcls",
        "roberta/adapters/compacter-seqcls",
        "bert/adapters/fuse_seq_bn",
        "bert/adapters/stack_seq_bn",
    } <= names


def _fresh_model(entry):
    arch_dir = FIXTURES / entry["arch"]
    base = arch_dir / entry["base_dir"]
    if entry["model_class"].endswith("AdapterModel"):
        model = adapterhub.AdapterModel.from_pretrained(base, attn_implementation="eager")
        assert type(model).__name__ == entry["model_class"]
    elif entry["model_class"].endswith("ForSequenceClassification"):
        model = adapterhub.init(
            transformers.AutoModelForSequenceClassification.from_pretrained(base, attn_implementation="eager")
        )
    else:
        model = adapterhub.init(transformers.AutoModel.from_pretrained(base, attn_implementation="eager"))
    return model.eval()


def _run(model, expected) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"])
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def _setup_of(entry):
    block = {"Stack": adapterhub.Stack, "Fuse": adapterhub.Fuse}[entry["active_setup_dict"]["type"]]
    return block(*entry["adapter_names"])


def _load(model, entry, folder):
    """Load the fixture the way the README describes; returns the setup to activate."""
    if "adapter_names" in entry:
        setup, head_setup = model.load_adapter_setup(folder, set_active=True)
        assert setup == _setup_of(entry) and head_setup is None
        return setup
    name = model.load_adapter(folder)
    assert name == entry["adapter_name"]
    return name


def _check_outputs(model, entry, expected, setup):
    model.set_active_adapters(setup)
    assert _diff(_run(model, expected), expected["output"]) <= TOLERANCE
    for name in entry.get("adapter_names", []):
        model.set_active_adapters(name)
        assert _diff(_run(model, expected), expected[f"output_only_{name}"]) <= TOLERANCE
    model.set_active_adapters(None)
    assert _diff(_run(model, expected), expected["output_inactive"]) <= TOLERANCE
    model.set_active_adapters(setup)


@pytest.mark.parametrize("entry,fmt", CASES)
def test_fixture_reproduces_recorded_outputs(entry, fmt):
    fixture = FIXTURES / entry["fixture"]
    expected = load_file(str(fixture / "expected.safetensors"))
    model = _fresh_model(entry)
    setup = _load(model, entry, fixture / fmt)
    _check_outputs(model, entry, expected, setup)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "adapter_names" in e], ids=lambda e: e["fixture"])
def test_setup_fixture_loads_piece_by_piece(entry):
    """As in the README: the adapters (and the fusion layer) loaded one by one, then the setup activated."""
    fixture = FIXTURES / entry["fixture"]
    expected = load_file(str(fixture / "expected.safetensors"))
    model = _fresh_model(entry)
    for name in entry["adapter_names"]:
        assert model.load_adapter(fixture / "safetensors" / name) == name
    setup = _setup_of(entry)
    for block in setup.fuse_blocks():
        assert model.load_adapter_fusion(fixture / "bin" / block.name) == block.name
    _check_outputs(model, entry, expected, setup)


def _files(folder) -> dict[str, torch.Tensor]:
    """Every tensor saved below ``folder``, keyed by sub-folder, kind of file (adapter/head/fusion) and name."""
    tensors = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".safetensors", ".bin"):
            continue
        data = (
            load_file(str(path))
            if path.suffix == ".safetensors"
            else torch.load(str(path), map_location="cpu", weights_only=True)
        )
        kind = "head" if "head" in path.name else "fusion" if "fusion" in path.name else "adapter"
        tensors.update({f"{path.parent.relative_to(folder)}/{kind}:{k}": v for k, v in data.items()})
    return tensors


@pytest.mark.parametrize("use_safetensors", [True, False], ids=["safetensors", "bin"])
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["fixture"])
def test_saved_again_round_trips_exactly_with_the_peer_names(entry, use_safetensors, tmp_path):
    fixture = FIXTURES / entry["fixture"]
    expected = load_file(str(fixture / "expected.safetensors"))
    model = _fresh_model(entry)
    setup = _load(model, entry, fixture / "safetensors")
    model.set_active_adapters(setup)
    before = _run(model, expected)
    out = tmp_path / "saved"
    if "adapter_names" in entry:
        model.save_adapter_setup(out, setup, use_safetensors=use_safetensors)
    else:
        model.save_adapter(out, setup, use_safetensors=use_safetensors)
    fresh = _fresh_model(entry)
    fresh_setup = _load(fresh, entry, out)
    fresh.set_active_adapters(fresh_setup)
    assert torch.equal(_run(fresh, expected), before)
    # same tensors under the same names (relative to the model they were saved from) as the peer's files
    ours, theirs = _files(out), _files(fixture / "safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    # and the same JSON files, with the same content but for the version and the model path
    ours, theirs = _json_files(out), _json_files(fixture / "safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key


def _json_files(folder) -> dict[str, dict]:
    def normal(data):
        data = {k: v for k, v in data.items() if k not in ("version", "model_name")}
        if "adapter_setup" in data:  # the block dicts: key order does not matter, content does
            data["adapter_setup"] = json.loads(json.dumps(data["adapter_setup"], sort_keys=True))
        return data

    return {
        str(p.relative_to(folder)): normal(json.loads(p.read_text())) for p in sorted(folder.rglob("*.json"))
    }

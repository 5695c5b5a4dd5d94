"""LoRA and IA3 adapters saved by the `adapters` library (1.3.0) and by PEFT (0.21) load here and reproduce the
recorded outputs (active, inactive, merged); what we save in the PEFT format loads in `peft` itself."""

import json

import pytest
import torch
from safetensors.torch import load_file

from test_interop import FIXTURES, _base, _meta, _run

ADAPTERS = ["lora", "lora-seqcls", "ia3"]
PEFT = ["lora_qv", "lora_all_linear", "lora_qv-seqcls", "ia3"]
ARCHS = ["bert", "roberta"]
TOL = 1e-5


def _peft_meta(arch, name):
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    return next(f for f in manifest["fixtures"] if f["fixture"] == f"{arch}/peft/{name}")


def _diff(model, expected, key):
    return (_run(model, expected) - expected[key]).abs().max().item()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ADAPTERS)
@pytest.mark.parametrize("sub", ["bin", "safetensors"])
def test_adapters_fixture_reproduces_outputs(arch, name, sub):
    meta = _meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    assert model.load_adapter(folder / sub) == meta["adapter_name"]
    model.set_active_adapters(meta["active_setup"])
    active = _run(model, expected)
    assert (active - expected["output"]).abs().max().item() <= TOL
    model.merge_adapter(meta["adapter_name"])
    if "output_merged" in expected:
        assert _diff(model, expected, "output_merged") <= TOL
    assert (_run(model, expected) - active).abs().max().item() <= TOL  # IA3 too: the merge scales the bias
    model.reset_adapter()
    model.set_active_adapters(None)
    assert _diff(model, expected, "output_inactive") <= TOL


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ADAPTERS)
def test_adapters_fixture_saves_back_identically(arch, name, tmp_path):
    meta = _meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    model = _base(meta)
    model.load_adapter(folder / "safetensors")
    model.save_adapter(tmp_path, meta["adapter_name"])
    theirs = load_file(folder / "safetensors" / "adapter.safetensors")
    ours = load_file(tmp_path / "adapter.safetensors")
    assert sorted(theirs) == sorted(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    their_config = json.loads((folder / "safetensors" / "adapter_config.json").read_text())["config"]
    our_config = json.loads((tmp_path / "adapter_config.json").read_text())["config"]
    assert our_config == their_config


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PEFT)
def test_peft_fixture_reproduces_outputs(arch, name):
    meta = _peft_meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    loaded = model.load_adapter(folder)  # the dialect comes from adapter_config.json (peft_type)
    assert loaded == "default"
    config = model.adapterhub_state.configs[loaded]
    assert config.method == ("ia3" if name == "ia3" else "lora")
    model.set_active_adapters(loaded)
    active = _run(model, expected)
    assert (active - expected["output"]).abs().max().item() <= TOL
    model.merge_adapter(loaded)
    if "output_merged" in expected:
        assert _diff(model, expected, "output_merged") <= TOL
    assert (_run(model, expected) - active).abs().max().item() <= TOL
    model.reset_adapter()
    model.set_active_adapters(None)
    if not name.endswith("-seqcls"):  # PEFT's disabled adapter also switches back to the original head
        assert _diff(model, expected, "output_inactive") <= TOL


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PEFT)
def test_peft_fixture_saved_in_both_dialects_loads_back(arch, name, tmp_path):
    meta = _peft_meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    model.load_adapter(folder, load_as="x")
    for dialect in ("adapterhub", "peft"):
        model.save_adapter(tmp_path / dialect, "x", format=dialect)
        fresh = _base(meta)
        name_here = fresh.load_adapter(tmp_path / dialect, load_as="y")
        fresh.set_active_adapters(name_here)
        assert _diff(fresh, expected, "output") <= TOL, dialect
    ours = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    theirs = load_file(folder / "adapter_model.safetensors")
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["lora", "lora-seqcls", "ia3"])
def test_peft_loads_what_we_save_in_its_format(arch, name, tmp_path):
    peft = pytest.importorskip("peft")
    meta = _meta(arch, name)
    folder = FIXTURES / meta["fixture"]
    expected = load_file(folder / "expected.safetensors")
    model = _base(meta)
    model.load_adapter(folder / "safetensors")
    model.save_adapter(tmp_path, meta["adapter_name"], format="peft")
    model.set_active_adapters(meta["adapter_name"])
    ours = _run(model, expected)
    plain = _base(meta)  # a plain Transformers model for PEFT
    peft_model = peft.PeftModel.from_pretrained(plain, tmp_path).eval()
    theirs = _run(peft_model, expected)
    assert (theirs - ours).abs().max().item() <= TOL
    assert (theirs - expected["output"]).abs().max().item() <= TOL


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PEFT)
def test_hub_validation_loads_peft_adapters_through_the_library(arch, name):
    from adapterhub.library.validate import validate_adapter

    base_config = json.loads((FIXTURES / arch / "base" / "config.json").read_text())
    report = validate_adapter(FIXTURES / arch / "peft" / name, base_config)
    assert report.ok and report.output_checked, report.errors
    assert report.method == ("ia3" if name == "ia3" else "lora")
    weights = load_file(FIXTURES / arch / "peft" / name / "adapter_model.safetensors")
    own = {k: v for k, v in weights.items() if ".lora_" in k or ".ia3_l" in k}
    assert report.num_params == sum(v.numel() for v in own.values())


def test_hub_validation_names_what_does_not_fit_in_a_peft_adapter(tmp_path):
    from safetensors.torch import save_file

    from adapterhub.library.validate import validate_adapter

    source = FIXTURES / "bert" / "peft" / "lora_qv-seqcls"
    base_config = json.loads((FIXTURES / "bert" / "base" / "config.json").read_text())
    weights = load_file(source / "adapter_model.safetensors")
    dropped = "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"
    for case, change in {
        "missing": lambda w: {k: v for k, v in w.items() if k != dropped},
        "head": lambda w: {**w, "base_model.model.classifier.weight": torch.zeros(5, 32)},
    }.items():
        folder = tmp_path / case
        folder.mkdir()
        (folder / "adapter_config.json").write_text((source / "adapter_config.json").read_text())
        save_file(change(dict(weights)), folder / "adapter_model.safetensors")
        report = validate_adapter(folder, base_config)
        assert not report.ok
        if case == "missing":
            assert report.missing_keys == [
                dropped.replace("base_model.model.", "").replace(".lora_B.weight", ".loras.default.lora_B")
            ]
        else:
            assert any("head" in e and "shape mismatch" in e for e in report.errors), report.errors

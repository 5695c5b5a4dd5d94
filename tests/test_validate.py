"""The hub's upload check: an adapter must fit a randomly initialised model built from its base config."""

import json

from safetensors.torch import load_file, save_file

import adapterhub
from adapterhub.library.validate import validate_adapter
from tiny_models import SHARED
from tiny_models import make_model

FIXTURES = SHARED / "fixtures" / "interop"


def _config(arch):
    return json.loads((FIXTURES / arch / "base" / "config.json").read_text())


def test_peer_adapters_validate():
    for name in ("seq_bn", "double_seq_bn", "par_bn", "seq_bn_inv", "seq_bn-seqcls"):
        report = validate_adapter(FIXTURES / "bert" / "adapters" / name / "safetensors", _config("bert"))
        assert report.ok, (name, report.errors)
        assert report.output_checked and report.changed_modules >= 1 and report.num_params > 0


def test_refusals():
    folder = FIXTURES / "bert" / "adapters" / "seq_bn"
    assert "pickle weights" in validate_adapter(folder / "bin", _config("bert")).errors[0]
    assert "base model is 'roberta'" in validate_adapter(folder / "safetensors", _config("roberta")).errors[0]


def test_weights_not_matching_config_and_zero_adapter(tmp_path):
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="seq_bn")
    model.save_adapter(tmp_path, "a")
    base = model.config.to_dict()
    assert validate_adapter(tmp_path, base).ok
    weights = load_file(tmp_path / "adapter.safetensors")
    weights.pop("encoder.layer.0.output.adapters.a.adapter_up.bias")
    save_file(weights, tmp_path / "adapter.safetensors")
    report = validate_adapter(tmp_path, base)
    assert not report.ok and report.missing_keys == ["encoder.layer.0.output.adapters.a.adapter_up.bias"]

    zero = tmp_path / "zero"
    model.add_adapter("z", config="par_bn")  # mam_adapter init: all-zero up-projection
    model.save_adapter(zero, "z")
    report = validate_adapter(zero, base)
    assert not report.ok and "does not change the model's output" in report.errors[0]

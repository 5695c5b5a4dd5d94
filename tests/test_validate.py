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


def _copy(name, tmp_path):
    import shutil

    shutil.copytree(FIXTURES / "bert" / "adapters" / name / "safetensors", tmp_path, dirs_exist_ok=True)
    return tmp_path


def _shrink_head(folder, key):
    weights = load_file(folder / "model_head.safetensors")
    weights[key] = weights[key][:-1].clone()
    save_file(weights, folder / "model_head.safetensors")


def test_head_shapes_are_checked_like_adapter_weights(tmp_path):
    fixed = _copy("seq_bn-seqcls", tmp_path / "fixed")
    flexible = _copy("seq_bn-flexhead", tmp_path / "flexible")
    assert validate_adapter(flexible, _config("bert")).ok
    _shrink_head(fixed, "classifier.weight")
    report = validate_adapter(fixed, _config("bert"))
    assert not report.ok and report.errors == ["head: shape mismatch: classifier.weight"]
    _shrink_head(flexible, "heads.fx_seq_bn.4.weight")
    report = validate_adapter(flexible, _config("bert"))
    assert not report.ok
    assert "shape mismatch: 4.weight (file (2, 32), model (3, 32))" in report.errors[0]
    assert str(tmp_path) not in report.errors[0]
    # what users' load_adapter then says about the same folder
    user = adapterhub.AdapterModel.from_config(make_model("bert").config)
    try:
        user.load_adapter(flexible)
    except Exception as e:  # noqa: BLE001
        assert "shape mismatch: 4.weight" in str(e)
    else:
        raise AssertionError("the broken head loaded")


def test_head_keys_of_another_model_class_are_refused(tmp_path):
    folder = _copy("seq_bn-seqcls", tmp_path)
    header = json.loads((folder / "head_config.json").read_text())
    (folder / "head_config.json").write_text(json.dumps({**header, "model_class": "BertModel"}))
    report = validate_adapter(folder, _config("bert"))
    assert report.errors == ["head: unexpected keys: classifier.bias, classifier.weight"]


def test_model_class_must_be_a_transformers_model(tmp_path, monkeypatch):
    import transformers

    folder = _copy("seq_bn-seqcls", tmp_path)
    header = json.loads((folder / "head_config.json").read_text())
    called = []
    monkeypatch.setattr(transformers, "Trainer", lambda *a, **k: called.append(a), raising=True)
    for name in ("Trainer", "pipeline", "AutoModel", "PreTrainedModel.__init__", 5, "os"):
        (folder / "head_config.json").write_text(json.dumps({**header, "model_class": name}))
        report = validate_adapter(folder, _config("bert"))
        assert not report.ok and "is not a transformers model class" in report.errors[0], (
            name,
            report.errors,
        )
    assert called == []

"""Bad input gets a clear error naming the problem, and leaves the model as it was."""

import json
import shutil

import pytest
import torch

import adapterhub
from adapterhub import AdapterConfigError, AdapterExistsError, AdapterLoadError, AdapterNotFoundError
from tiny_models import inputs, make_model, output_of


@pytest.fixture
def saved(tmp_path):
    model = make_model("bert", "seqcls")
    adapterhub.init(model)
    model.add_adapter("sst", config="seq_bn")
    folder = tmp_path / "sst"
    model.save_adapter(folder, "sst")
    return folder


def _fresh(arch="bert", kind="seqcls"):
    return adapterhub.init(make_model(arch, kind))


def _unchanged(model, before):
    assert not model.has_adapters()
    assert set(model.state_dict()) == set(before)


def test_unknown_preset():
    model = _fresh()
    with pytest.raises(AdapterConfigError, match="unknown adapter config 'seq_bnn'.*seq_bn"):
        model.add_adapter("a", config="seq_bnn")
    assert not model.has_adapters()


@pytest.mark.parametrize(
    "config,message",
    [
        ("seq_bn[reduction_factr=8]", "unknown option.*'reduction_factr'"),
        ("seq_bn[reduction_factor=-2]", "reduction_factor must be a positive number"),
        ("seq_bn[non_linearity=nope]", "unknown non_linearity 'nope'"),
        ("seq_bn[init_weights=xavier]", "init_weights must be one of"),
        ("seq_bn[scaling=big]", "scaling must be"),
        ("seq_bn[reduction_factor=8", "invalid adapter config string"),
        ({"architecture": "mystery"}, "unknown adapter architecture 'mystery'"),
        ({"mh_adapter": False, "output_adapter": False}, "would be empty"),
        (
            "seq_bn[cross_adapter=True]",
            "cross_adapter .* not supported: none of the supported model families",
        ),
        ("seq_bn[stochastic_depth=0.1]", "stochastic_depth is not supported"),
        ("lora[vera_d=0.5]", "VeRA is its own method"),
        ("prefix_tuning[encoder_prefix=False]", "encoder_prefix=False leaves no self-attention"),
    ],
)
def test_bad_options(config, message):
    with pytest.raises(AdapterConfigError, match=message):
        _fresh().add_adapter("a", config=config)


@pytest.mark.parametrize("name", ["double", "train", "training", "state_dict"])
def test_adapter_names_of_module_attributes_are_refused_and_leave_nothing(name):
    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterConfigError, match=f"'{name}'.* torch.nn.Module attribute"):
        model.add_adapter(name, config="seq_bn")
    assert not model.has_adapters() and set(model.state_dict()) == set(before)
    model.add_adapter("double_", config="seq_bn")  # a near name is fine


def test_overrides_in_config_string_apply():
    model = _fresh()
    model.add_adapter("a", config="pfeiffer[reduction_factor=4,non_linearity=gelu]")
    config = model.adapterhub_state.configs["a"]
    assert (config.reduction_factor, config.non_linearity, config.original_ln_before) == (4, "gelu", True)
    assert adapterhub.resolve_config("houlsby") == adapterhub.resolve_config("double_seq_bn")


def test_name_already_exists(saved):
    model = _fresh()
    model.add_adapter("sst", config="seq_bn")
    with pytest.raises(AdapterExistsError, match="'sst' already exists"):
        model.add_adapter("sst", config="double_seq_bn")
    with pytest.raises(AdapterExistsError, match="'sst' already exists.*load_as"):
        model.load_adapter(saved)
    assert model.load_adapter(saved, load_as="sst2") == "sst2"


def test_unknown_adapter_name(tmp_path):
    model = _fresh()
    with pytest.raises(AdapterNotFoundError, match="no adapter named 'x'"):
        model.set_active_adapters("x")
    with pytest.raises(AdapterNotFoundError, match="no adapter named 'x'"):
        model.save_adapter(tmp_path / "never", "x")
    assert not (tmp_path / "never").exists()


def test_other_hidden_size(saved):
    from transformers import BertConfig, BertForSequenceClassification

    model = adapterhub.init(
        BertForSequenceClassification(
            BertConfig(
                hidden_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                vocab_size=100,
            )
        )
    )
    with pytest.raises(AdapterLoadError, match="hidden size 32; this model has hidden size 48"):
        model.load_adapter(saved)
    assert not model.has_adapters()


def test_other_architecture(saved):
    model = _fresh("llama", "seqcls")
    before = model.state_dict()
    with pytest.raises(AdapterLoadError, match="saved for a 'bert' model.*this model is a 'llama' model"):
        model.load_adapter(saved)
    _unchanged(model, before)


def test_missing_and_unexpected_keys(saved):
    from safetensors.torch import load_file, save_file

    weights = load_file(saved / "adapter.safetensors")
    dropped = "bert.encoder.layer.1.output.adapters.sst.adapter_up.bias"
    extra = "bert.encoder.layer.7.output.adapters.sst.adapter_up.bias"
    weights[extra] = weights.pop(dropped)
    save_file(weights, saved / "adapter.safetensors")
    model = _fresh()
    before = model.state_dict()
    with pytest.raises(AdapterLoadError) as error:
        model.load_adapter(saved)
    assert f"missing keys: {dropped}" in str(error.value)
    assert f"unexpected keys: {extra}" in str(error.value)
    _unchanged(model, before)


def test_shape_mismatch_is_named(saved):
    config = json.loads((saved / "adapter_config.json").read_text())
    config["config"]["reduction_factor"] = 4
    (saved / "adapter_config.json").write_text(json.dumps(config))
    model = _fresh()
    with pytest.raises(
        AdapterLoadError, match=r"shape mismatch: .*adapter_down.0.weight \(file \(2, 32\), model \(8, 32\)\)"
    ):
        model.load_adapter(saved)
    assert not model.has_adapters()


@pytest.mark.parametrize("weights", ["adapter.safetensors", "pytorch_adapter.bin"])
def test_truncated_weights(saved, weights, tmp_path):
    folder = saved
    if weights == "pytorch_adapter.bin":
        model = _fresh()
        model.add_adapter("sst", config="seq_bn")
        folder = tmp_path / "bin"
        model.save_adapter(folder, "sst", use_safetensors=False)
    data = (folder / weights).read_bytes()
    (folder / weights).write_bytes(data[: len(data) // 2])
    model = _fresh()
    batch = inputs()
    reference = output_of(model, batch)
    with pytest.raises(AdapterLoadError, match=f"{weights} is corrupt"):
        model.load_adapter(folder)
    assert not model.has_adapters() and torch.equal(output_of(model, batch), reference)


def test_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(make_saved(tmp_path), folder)
    (folder / "adapter.safetensors").unlink()

    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": Boom()}, folder / "pytorch_adapter.bin")
    with pytest.raises(AdapterLoadError, match="holds more than tensors"):
        _fresh().load_adapter(folder)


def make_saved(tmp_path):
    model = _fresh()
    model.add_adapter("sst", config="seq_bn")
    model.save_adapter(tmp_path / "ok", "sst")
    return tmp_path / "ok"


def test_missing_files(tmp_path):
    with pytest.raises(AdapterLoadError, match="no adapter folder at"):
        _fresh().load_adapter(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterLoadError, match="no adapter_config.json in"):
        _fresh().load_adapter(tmp_path / "empty")
    folder = make_saved(tmp_path)
    (folder / "adapter.safetensors").unlink()
    with pytest.raises(AdapterLoadError, match="expected adapter.safetensors or pytorch_adapter.bin"):
        _fresh().load_adapter(folder)


def test_head_of_other_size_is_refused_before_anything_changes(saved):
    model = adapterhub.init(make_model("bert", "seqcls", num_labels=5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        AdapterLoadError, match=r"the head .*classifier.weight \(file \(3, 32\), model \(5, 32\)\)"
    ):
        model.load_adapter(saved)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert model.load_adapter(saved, with_head=False) == "sst"


def test_uninitialised_model_and_unsupported_architecture():
    from transformers import T5Config, T5Model

    with pytest.raises(adapterhub.UnsupportedModelError, match="model type 't5'.*supported: bert"):
        adapterhub.init(
            T5Model(T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=16, vocab_size=50, d_kv=8))
        )


@pytest.mark.parametrize(
    "alias,preset",
    [
        ("pfeiffer", "seq_bn"),
        ("houlsby", "double_seq_bn"),
        ("parallel", "par_bn"),
        ("scaled_parallel", "scaled_par_bn"),
        ("pfeiffer+inv", "seq_bn_inv"),
        ("houlsby+inv", "double_seq_bn_inv"),
    ],
)
def test_preset_aliases(alias, preset):
    assert adapterhub.resolve_config(alias) == adapterhub.resolve_config(preset)
    assert adapterhub.config_hash(alias) == adapterhub.config_hash(preset)


def test_preset_values_follow_the_adapterhub_presets():
    seq, double, par = (adapterhub.resolve_config(n) for n in ("seq_bn", "double_seq_bn", "par_bn"))
    assert (seq.original_ln_before, seq.mh_adapter, seq.output_adapter, seq.non_linearity) == (
        True,
        False,
        True,
        "relu",
    )
    assert (double.original_ln_before, double.mh_adapter, double.non_linearity) == (False, True, "swish")
    assert (par.is_parallel, par.scaling, par.reduction_factor, par.init_weights) == (
        True,
        4.0,
        2,
        "mam_adapter",
    )
    assert adapterhub.resolve_config("scaled_par_bn").scaling == "learned"
    assert adapterhub.resolve_config("seq_bn_inv").inv_adapter == "nice"

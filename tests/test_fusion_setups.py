"""AdapterFusion and adapter setups: composition blocks, fusion maths, training, save/load and errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub
from adapterhub import (
    AdapterConfigError,
    AdapterExistsError,
    AdapterLoadError,
    AdapterNotFoundError,
    Fuse,
    Stack,
)
from adapterhub.library.composition import Block
from adapterhub.library.methods.bottleneck.fusion import AdapterFusionLayer, FusionConfig
from tiny_models import ARCHS, inputs, make_model, output_of


def model_with(names=("a", "b", "c"), arch="bert", kind="base", config="seq_bn"):
    model = adapterhub.init(make_model(arch, kind))
    torch.manual_seed(5)
    for name in names:
        model.add_adapter(name, config=config)
    with torch.no_grad():  # non-zero adapters so that mistakes show
        for name in names:
            for p in model.adapter_state_dict(name).values():
                p.add_(torch.randn_like(p) * 0.1)
    return model


def perturb_fusion(model, name):
    with torch.no_grad():
        for key, p in model.named_parameters():
            if f".adapter_fusion_layer.{name}." in key:
                p.add_(torch.randn_like(p) * 0.1)


# ------------------------------------------------------------------------------------------ blocks


def test_blocks_serialise_to_the_adapter_setup_format():
    setup = Stack("x", Fuse("a", "b"))
    data = setup.to_dict()
    assert data == {
        "type": "Stack",
        "children": [
            {"type": "single", "children": ["x"]},
            {
                "type": "Fuse",
                "children": [{"type": "single", "children": ["a"]}, {"type": "single", "children": ["b"]}],
            },
        ],
    }
    assert Block.from_dict(data) == setup
    assert setup.names() == ["x", "a", "b"] and setup.last() == "b" and "a" in setup
    assert [f.name for f in setup.fuse_blocks()] == ["a,b"]
    assert Fuse("a", "b", name="ab").name == "ab"
    assert Block.from_dict(Fuse("a", "b", name="ab").to_dict()).name == "ab"
    assert setup.without("a") == Stack("x") and setup.without("x") == Stack(Fuse("a", "b"))
    assert Fuse("a", "b").without("a") is None
    assert Stack("x", Stack("a", Fuse("a", "b"))) == Stack("x", "a", Fuse("a", "b"))
    with pytest.raises(AdapterConfigError, match="Fuse takes adapter names, Stack as children"):
        Fuse("a", Fuse("b"))
    with pytest.raises(AdapterConfigError, match="unsupported composition block 'Split'"):
        Block.from_dict({"type": "Split", "children": []})


# ------------------------------------------------------------------------------------------ fusion maths


def test_fusion_layer_maths():
    torch.manual_seed(0)
    layer = AdapterFusionLayer(FusionConfig(), hidden_size=8, dropout=0.0).eval()
    with torch.no_grad():
        layer.value.weight.add_(torch.randn(8, 8) * 0.1)
    query, ups, residual = torch.randn(2, 3, 8), torch.randn(2, 3, 4, 8), torch.randn(2, 3, 8)
    q = layer.query(query)
    k = layer.key(ups)
    v = layer.value(ups)
    alpha = torch.softmax(torch.einsum("btd,btnd->btn", q, k), dim=-1)
    expected = torch.einsum("btn,btnd->btd", alpha, v) + residual
    assert torch.allclose(layer(query, ups, residual), expected, atol=1e-6)
    static = AdapterFusionLayer(FusionConfig.load("static"), hidden_size=8, dropout=0.0)
    assert not hasattr(static, "value")
    fresh = AdapterFusionLayer(FusionConfig(), hidden_size=8, dropout=0.0)
    assert torch.equal(fresh.value.weight.diagonal(), torch.ones(8))
    assert fresh.value.weight[0, 1].item() == pytest.approx(1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_fusing_one_adapter_with_a_static_fusion_equals_the_adapter_alone(arch):
    """With no value matrix and a single adapter, the attention weight is 1: out = up + residual."""
    model = model_with(("a",), arch=arch)
    batch = inputs()
    model.set_active_adapters("a")
    alone = output_of(model, batch)
    model.add_adapter_fusion(["a"], config="static", set_active=True)
    assert model.active_adapters == Fuse("a")
    assert torch.allclose(output_of(model, batch), alone, atol=1e-6)


def test_fuse_changes_the_output_and_inactive_is_exact():
    model = model_with()
    batch = inputs()
    base = output_of(adapterhub.init(make_model("bert", "base")), batch)
    model.add_adapter_fusion(Fuse("a", "b"))
    perturb_fusion(model, "a,b")
    model.set_active_adapters(Fuse("a", "b"))
    fused = output_of(model, batch)
    model.set_active_adapters("a")
    assert (fused - output_of(model, batch)).abs().max() > 1e-4
    model.set_active_adapters(Stack("c", Fuse("a", "b")))
    assert (output_of(model, batch) - fused).abs().max() > 1e-4
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), base)


def test_fusion_layers_sit_where_all_fused_adapters_are():
    model = model_with(("a",))
    model.add_adapter("h", config="double_seq_bn")
    model.add_adapter_fusion("a,h")
    keys = [k for k in model.state_dict() if "adapter_fusion_layer" in k]
    assert keys and all(".output.adapter_fusion_layer.a,h." in k for k in keys)  # seq_bn: FFN output only
    assert sorted({k.split("adapter_fusion_layer.a,h.")[1] for k in keys}) == [
        "key.bias",
        "key.weight",
        "query.bias",
        "query.weight",
        "value.weight",
    ]


def test_train_adapter_fusion_trains_only_the_fusion_and_the_head():
    model = model_with(kind="seqcls")
    model.add_adapter_fusion(["a", "b"])
    model.train_adapter_fusion(Fuse("a", "b"))
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        k for k in model.state_dict() if "adapter_fusion_layer.a,b." in k or k.startswith("classifier.")
    }
    assert model.active_adapters == Fuse("a", "b") and model.training
    loss = model(**inputs(), labels=torch.tensor([0, 1])).loss + model.get_fusion_regularization_loss()
    loss.backward()
    assert all(p.grad is not None for k, p in model.named_parameters() if k in trainable)
    model.train_adapter_fusion(Fuse("a", "b"), unfreeze_adapters=True)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert any(".adapters.a." in k for k in trainable) and not any(".adapters.c." in k for k in trainable)


def test_regularization_loss():
    model = model_with(("a", "b"))
    model.add_adapter_fusion(["a", "b"])
    layers = [m for k, m in model.named_modules() if k.endswith("adapter_fusion_layer.a,b")]
    expected = sum(0.01 * (torch.eye(32) - m.value.weight).pow(2).sum() for m in layers)
    assert model.get_fusion_regularization_loss().item() == pytest.approx(expected.item())
    perturb_fusion(model, "a,b")
    expected = sum(0.01 * (torch.eye(32) - m.value.weight).pow(2).sum() for m in layers)
    assert model.get_fusion_regularization_loss().item() == pytest.approx(expected.item())
    model.add_adapter_fusion(["a", "b"], config="static", overwrite_ok=True)
    assert model.get_fusion_regularization_loss().item() == 0.0


@pytest.mark.parametrize("use_safetensors", [True, False])
def test_fusion_save_load_round_trip(use_safetensors, tmp_path):
    model = model_with(("a", "b"))
    model.add_adapter_fusion(["a", "b"], set_active=True)
    perturb_fusion(model, "a,b")
    batch = inputs()
    expected = output_of(model, batch)
    for name in ("a", "b"):
        model.save_adapter(tmp_path / name, name)
    model.save_adapter_fusion(tmp_path / "fusion", "a,b", use_safetensors=use_safetensors)
    header = json.loads((tmp_path / "fusion" / "adapter_fusion_config.json").read_text())
    assert header["adapter_names"] == ["a", "b"] and header["name"] == "a,b"
    assert header["config"] == FusionConfig().to_dict() and header["model_class"] == "BertModel"
    weights_file = (
        "model_adapter_fusion.safetensors" if use_safetensors else "pytorch_model_adapter_fusion.bin"
    )
    assert (tmp_path / "fusion" / weights_file).is_file()

    fresh = adapterhub.init(make_model("bert", "base"))
    with pytest.raises(AdapterLoadError, match="not in this model: a, b; load them first"):
        fresh.load_adapter_fusion(tmp_path / "fusion")
    for name in ("a", "b"):
        fresh.load_adapter(tmp_path / name)
    assert fresh.load_adapter_fusion(tmp_path / "fusion", set_active=True) == "a,b"
    assert torch.equal(output_of(fresh, batch), expected)
    with pytest.raises(AdapterExistsError):
        fresh.load_adapter_fusion(tmp_path / "fusion")
    assert fresh.load_adapter_fusion(tmp_path / "fusion", load_as="other") == "other"
    fresh.set_active_adapters(Fuse("a", "b", name="other"))
    assert torch.equal(output_of(fresh, batch), expected)


def test_fusion_errors_and_deletion(tmp_path):
    model = model_with(("a", "b"))
    with pytest.raises(AdapterConfigError, match="no AdapterFusion layer named 'a,b'"):
        model.set_active_adapters(Fuse("a", "b"))
    assert model.active_adapters is None
    with pytest.raises(AdapterNotFoundError, match="'z'"):
        model.add_adapter_fusion(["a", "z"])
    with pytest.raises(AdapterConfigError, match="unknown AdapterFusion config 'fancy'"):
        model.add_adapter_fusion(["a", "b"], config="fancy")
    with pytest.raises(AdapterConfigError, match="unknown AdapterFusion option"):
        model.add_adapter_fusion(["a", "b"], config={"bogus": 1})
    model.add_adapter_fusion(["a", "b"], set_active=True)
    with pytest.raises(AdapterExistsError, match="already exists"):
        model.add_adapter_fusion(["a", "b"])
    model.save_adapter(tmp_path / "a", "a")
    model.save_adapter(tmp_path / "b", "b")
    model.save_adapter_fusion(tmp_path / "f", "a,b")
    weights = load_file(str(tmp_path / "f" / "model_adapter_fusion.safetensors"))
    weights.pop(next(iter(weights)))
    save_file(weights, str(tmp_path / "f" / "model_adapter_fusion.safetensors"))
    fresh = adapterhub.init(make_model("bert", "base"))
    fresh.load_adapter(tmp_path / "a")
    fresh.load_adapter(tmp_path / "b")
    with pytest.raises(
        AdapterLoadError, match="missing keys: encoder.layer.0.output.adapter_fusion_layer.a,b."
    ):
        fresh.load_adapter_fusion(tmp_path / "f")
    assert not any("adapter_fusion_layer" in k for k in fresh.state_dict())  # nothing half-applied
    # deleting a fused adapter removes its fusion layer and the Fuse block from the active setup
    model.set_active_adapters(Stack("a", Fuse("a", "b")))
    model.delete_adapter("b")
    assert model.active_adapters == Stack("a")
    assert not any("adapter_fusion_layer" in k for k in model.state_dict())
    model.add_adapter("b", config="seq_bn")
    model.add_adapter_fusion(["a", "b"], set_active=True)
    model.delete_adapter_fusion("a,b")
    assert model.active_adapters is None
    with pytest.raises(AdapterNotFoundError, match="no AdapterFusion layer named 'a,b'"):
        model.delete_adapter_fusion(Fuse("a", "b"))


# ------------------------------------------------------------------------------------------ setups


@pytest.mark.parametrize("use_safetensors", [True, False])
def test_adapter_setup_round_trip(use_safetensors, tmp_path):
    model = model_with(kind="seqcls")
    model.add_adapter_fusion(["a", "b"])
    perturb_fusion(model, "a,b")
    setup = Stack("c", Fuse("a", "b"))
    model.set_active_adapters(setup)
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter_setup(tmp_path, setup, use_safetensors=use_safetensors)
    data = json.loads((tmp_path / "adapter_setup.json").read_text())
    assert data["adapter_setup"] == setup.to_dict() and data["head_setup"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a,b", "adapter_setup.json", "b", "c"]
    assert (tmp_path / "a,b" / "adapter_fusion_config.json").is_file()
    fresh = adapterhub.init(make_model("bert", "seqcls"))
    loaded, head_setup = fresh.load_adapter_setup(tmp_path, set_active=True)
    assert loaded == setup and head_setup is None and fresh.active_adapters == setup
    assert torch.equal(output_of(fresh, batch), expected)


def test_adapter_setup_with_flexible_heads(tmp_path):
    model = adapterhub.AdapterModel(make_model("bert", "base")).eval()
    for name in ("a", "b"):
        model.add_adapter(name, config="seq_bn")
        model.add_classification_head(name, num_labels=2)
    model.set_active_adapters(Stack("a", "b"))
    assert model.active_head == "b"
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter_setup(tmp_path, Stack("a", "b"), head_setup="b")
    fresh = adapterhub.AdapterModel(make_model("bert", "base")).eval()
    setup, head_setup = fresh.load_adapter_setup(tmp_path, set_active=True)
    assert head_setup == "b" and fresh.active_head == "b" and sorted(fresh.heads) == ["a", "b"]
    assert torch.equal(output_of(fresh, batch), expected)


def test_adapter_setup_errors_leave_nothing_behind(tmp_path):
    model = model_with(("a", "b"))
    with pytest.raises(AdapterConfigError, match="no AdapterFusion layer"):
        model.save_adapter_setup(tmp_path / "x", Fuse("a", "b"))
    with pytest.raises(AdapterNotFoundError):
        model.save_adapter_setup(tmp_path / "x", Stack("a", "zz"))
    model.add_adapter_fusion(["a", "b"])
    model.save_adapter_setup(tmp_path / "ok", Fuse("a", "b"))
    (tmp_path / "ok" / "a,b" / "model_adapter_fusion.safetensors").write_bytes(b"garbage")
    fresh = adapterhub.init(make_model("bert", "base"))
    with pytest.raises(AdapterLoadError, match="corrupt or truncated"):
        fresh.load_adapter_setup(tmp_path / "ok", set_active=True)
    assert not fresh.has_adapters() and fresh.active_adapters is None
    with pytest.raises(AdapterLoadError, match="no adapter_setup.json"):
        fresh.load_adapter_setup(tmp_path / "ok" / "a")
    (tmp_path / "ok" / "adapter_setup.json").write_text(
        json.dumps({"adapter_setup": {"type": "Parallel", "children": []}})
    )
    with pytest.raises(AdapterLoadError, match="unsupported composition block 'Parallel'"):
        fresh.load_adapter_setup(tmp_path / "ok")

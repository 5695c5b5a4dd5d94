"""Compacter: PHM layer maths, key names (per-layer and shared), variants, presets, save/load and errors."""

from __future__ import annotations

import pytest
import torch

import adapterhub
from adapterhub import AdapterConfigError, AdapterLoadError
from adapterhub.library.methods.bottleneck.phm import PHMLayer, phm_weight
from tiny_models import ARCHS, inputs, make_model, output_of

COMPACTER = "compacter[reduction_factor=4]"  # hidden 32 -> bottleneck 8, divisible by phm_dim 4


def test_phm_weight_is_a_sum_of_kronecker_products():
    torch.manual_seed(0)
    rule, W = torch.randn(4, 4, 4), torch.randn(4, 3, 5)
    expected = sum(torch.kron(rule[i], W[i]) for i in range(4))
    assert torch.allclose(phm_weight(rule, W), expected, atol=1e-6)


def test_phm_layer_forward_is_x_times_H_plus_b():
    config = adapterhub.resolve_config("compacter[shared_phm_rule=false]")
    layer = PHMLayer(config, 32, 8, "down")
    with torch.no_grad():
        layer.b.normal_()
    x = torch.randn(2, 5, 32)
    W = torch.bmm(layer.W_left, layer.W_right)
    H = sum(torch.kron(layer.phm_rule[i], W[i]) for i in range(4))
    assert torch.allclose(layer(x), x @ H + layer.b, atol=1e-6)
    assert tuple(layer.W_left.shape) == (4, 8, 1) and tuple(layer.W_right.shape) == (4, 1, 2)


def test_presets():
    compacter = adapterhub.resolve_config("compacter")
    assert (compacter.phm_layer, compacter.reduction_factor, compacter.non_linearity) == (True, 32, "gelu")
    assert compacter.mh_adapter and compacter.output_adapter and not compacter.original_ln_before
    plus = adapterhub.resolve_config("compacter++")
    assert plus.phm_layer and not plus.mh_adapter and plus.output_adapter and plus.original_ln_before
    assert adapterhub.config_hash("compacter") == adapterhub.config_hash(compacter.to_dict())


@pytest.mark.parametrize("arch", ARCHS)
def test_compacter_on_every_architecture_keys_and_round_trip(arch, tmp_path):
    model = make_model(arch, "seqcls")
    adapterhub.init(model)
    batch = inputs()
    base = output_of(model, batch)
    model.add_adapter("c", config=COMPACTER)
    assert torch.equal(output_of(model, batch), base)  # inactive: bit for bit
    prefix = model.base_model_prefix + "."
    keys = list(model.adapter_state_dict("c"))
    assert prefix + "shared_parameters.c.phm_rule" in keys
    assert any(k.endswith(".adapters.c.adapter_down.0.W_left") for k in keys)
    assert any(k.endswith(".adapters.c.adapter_up.W_right") for k in keys)
    with torch.no_grad():
        for p in model.adapter_state_dict("c").values():
            p.add_(torch.randn_like(p) * 0.05)
    model.set_active_adapters("c")
    active = output_of(model, batch)
    assert (active - base).abs().max() > 1e-4
    model.save_adapter(tmp_path, "c")
    fresh = adapterhub.init(make_model(arch, "seqcls"))
    fresh.load_adapter(tmp_path, set_active=True)
    assert torch.equal(output_of(fresh, batch), active)


def test_saved_from_a_plain_model_the_shared_rule_is_kept(tmp_path):
    """The peer loses the rule here (its filter wants a leading dot); ours saves and restores it."""
    model = adapterhub.init(make_model("bert", "base"))
    model.add_adapter("c", config=COMPACTER)
    assert "shared_parameters.c.phm_rule" in model.adapter_state_dict("c")
    with torch.no_grad():
        model.adapter_state_dict("c")["shared_parameters.c.phm_rule"].normal_()
    model.set_active_adapters("c")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path, "c")
    head_model = adapterhub.init(make_model("bert", "seqcls"))
    head_model.load_adapter(tmp_path, load_as="d")
    assert torch.equal(
        head_model.adapter_state_dict("d")["bert.shared_parameters.d.phm_rule"],
        model.adapter_state_dict("c")["shared_parameters.c.phm_rule"],
    )
    fresh = adapterhub.init(make_model("bert", "base"))
    fresh.load_adapter(tmp_path, set_active=True)
    assert torch.equal(output_of(fresh, batch), expected)


@pytest.mark.parametrize(
    "options,present,absent",
    [
        ("shared_phm_rule=false", ["adapters.c.adapter_down.0.phm_rule"], ["shared_parameters"]),
        (
            "factorized_phm_rule=true",
            ["shared_parameters.c.phm_rule_left", "shared_parameters.c.phm_rule_right"],
            ["shared_parameters.c.phm_rule."],
        ),
        (
            "shared_W_phm=true",
            ["shared_parameters.c.W_down_left", "shared_parameters.c.W_up_right"],
            ["W_left"],
        ),
        ("factorized_phm_W=false", ["adapters.c.adapter_up.W"], ["W_left"]),
        (
            "shared_W_phm=true,factorized_phm_W=false",
            ["shared_parameters.c.W_down", "shared_parameters.c.W_up"],
            ["W_left"],
        ),
        ("phm_bias=false,phm_rank=2", ["adapter_down.0.W_left"], ["adapter_down.0.b"]),
    ],
)
def test_variants_run_and_round_trip(options, present, absent, tmp_path):
    model = adapterhub.init(make_model("bert", "base"))
    model.add_adapter("c", config=f"compacter[reduction_factor=4,{options}]")
    keys = list(model.adapter_state_dict("c"))
    for fragment in present:
        assert any(fragment in k for k in keys), (fragment, keys)
    for fragment in absent:
        assert not any(fragment in k for k in keys), (fragment, keys)
    with torch.no_grad():
        for p in model.adapter_state_dict("c").values():
            p.add_(torch.randn_like(p) * 0.1)
    model.set_active_adapters("c")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path, "c", use_safetensors=False)
    fresh = adapterhub.init(make_model("bert", "base"))
    fresh.load_adapter(tmp_path, set_active=True)
    assert torch.equal(output_of(fresh, batch), expected)


def test_training_reaches_the_shared_rule_and_delete_removes_it():
    model = adapterhub.init(make_model("bert", "seqcls"))
    model.add_adapter("c", config=COMPACTER)
    model.train_adapter("c")
    rule = model.bert.shared_parameters.c.phm_rule
    assert rule.requires_grad
    before = rule.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    assert not torch.equal(rule.detach(), before)
    model.delete_adapter("c")
    assert "shared_parameters" not in dict(model.bert.named_children())
    assert not any("shared_parameters" in k for k in model.state_dict())


def test_compacter_errors(tmp_path):
    model = adapterhub.init(make_model("bert", "base"))
    with pytest.raises(AdapterConfigError, match="not divisible by phm_dim=4"):
        model.add_adapter("c", config="compacter")  # hidden 32 // 32 = bottleneck 1
    assert not model.has_adapters() and "shared_parameters" not in dict(model.named_children())
    with pytest.raises(AdapterConfigError, match="init_weights='bert'"):
        adapterhub.resolve_config("compacter[init_weights=mam_adapter]")
    with pytest.raises(AdapterConfigError, match="hypercomplex_nonlinearity"):
        adapterhub.resolve_config("compacter[hypercomplex_nonlinearity=bad]")
    with pytest.raises(AdapterConfigError, match="phm_c_init"):
        adapterhub.resolve_config("compacter[phm_c_init=bad]")
    # a file without the shared rule (as the peer writes from a plain model) is refused, naming the key
    model.add_adapter("c", config=COMPACTER)
    model.save_adapter(tmp_path, "c")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "adapter.safetensors"))
    del weights["shared_parameters.c.phm_rule"]
    save_file(weights, str(tmp_path / "adapter.safetensors"))
    fresh = adapterhub.init(make_model("bert", "base"))
    with pytest.raises(AdapterLoadError, match="missing keys: shared_parameters.c.phm_rule"):
        fresh.load_adapter(tmp_path)
    assert not fresh.has_adapters() and "shared_parameters" not in dict(fresh.named_children())

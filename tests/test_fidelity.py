"""Fidelity defects found by the differential harness against the `adapters` library (scripts/peer_diff),
each checked here without the peer, and the all-or-nothing rule of add/load/delete."""

from __future__ import annotations

import pytest
import torch

import adapterhub
from adapterhub import Fuse, Stack
from adapterhub.library.errors import AdapterConfigError
from tests.tiny_models import inputs, make_model, output_of


def _perturb(model, name: str, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


# ------------------------------------------------------------------ 1. new modules follow the model's mode


def test_adapter_added_or_loaded_into_an_eval_model_runs_without_dropout(tmp_path):
    model = adapterhub.init(make_model("bert"))  # eval mode
    model.add_adapter("a", config="seq_bn[dropout=0.5,reduction_factor=4]", set_active=True)
    _perturb(model, "a")
    assert not any(m.training for m in model.modules())
    batch = inputs()
    assert torch.equal(output_of(model, batch), output_of(model, batch))
    model.save_adapter(tmp_path, "a")
    fresh = adapterhub.init(make_model("bert"))
    fresh.load_adapter(tmp_path, set_active=True)
    assert not any(m.training for m in fresh.modules())
    torch.testing.assert_close(output_of(fresh, batch), output_of(model, batch), rtol=0, atol=1e-6)
    train = adapterhub.init(make_model("bert").train())
    train.add_adapter("a", config="seq_bn_inv")
    assert all(m.training for m in train.modules())


# ------------------------------------------------------------------ 2. GPT-2: invertible adapter after wte + wpe


def test_gpt2_invertible_adapter_transforms_the_sum_of_token_and_position_embeddings():
    model = adapterhub.init(make_model("gpt2"))
    model.add_adapter("inv", config="seq_bn_inv[output_adapter=False]", set_active=True)
    _perturb(model, "inv")
    inv = model.adapterhub_state.methods["bottleneck"].invertible.adapters["inv"]
    seen = {}
    model.h[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    batch = inputs()
    output_of(model, batch)
    positions = torch.arange(batch["input_ids"].shape[1])
    expected = inv(model.wte(batch["input_ids"]) + model.wpe(positions))
    torch.testing.assert_close(seen["x"], expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ 3. the format choice applies to every file


def test_save_with_bin_writes_every_file_as_bin(tmp_path):
    model = adapterhub.init(make_model("bert", "seqcls"))
    model.add_adapter("a", config="seq_bn")
    model.save_adapter(tmp_path / "x", "a")  # safetensors first: a later .bin save must not leave them behind
    model.save_adapter(tmp_path / "x", "a", use_safetensors=False)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "adapter_config.json",
        "head_config.json",
        "pytorch_adapter.bin",
        "pytorch_model_head.bin",
    ]
    flex = adapterhub.AdapterModel.from_config(make_model("bert").config)
    flex.add_adapter("a", config="seq_bn")
    flex.add_classification_head("a", num_labels=2)
    flex.save_adapter(tmp_path / "y", "a", use_safetensors=False)
    assert {p.suffix for p in (tmp_path / "y").iterdir()} == {".json", ".bin"}


# ------------------------------------------------------------------ 5. every accepted argument works


def test_load_adapter_leave_out_drops_those_layers(tmp_path):
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="double_seq_bn")
    model.save_adapter(tmp_path, "a")
    fresh = adapterhub.init(make_model("bert"))
    fresh.load_adapter(tmp_path, leave_out=[0])
    keys = fresh.adapter_state_dict("a")
    assert keys and not any(k.startswith("encoder.layer.0.") for k in keys)
    assert any(k.startswith("encoder.layer.1.") for k in keys)
    assert fresh.adapterhub_state.configs["a"].leave_out == [0]


def test_load_adapter_refuses_unknown_options(tmp_path):
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="seq_bn")
    model.save_adapter(tmp_path, "a")
    with pytest.raises(TypeError, match="unknown option.*levae_out"):
        adapterhub.init(make_model("bert")).load_adapter(tmp_path, levae_out=[0])


# ------------------------------------------------------------------ 6. a config that cannot run is refused


def test_post_add_residual_needs_original_ln_before():
    with pytest.raises(AdapterConfigError, match="post_add.*original_ln_before"):
        adapterhub.BnConfig(residual_before_ln="post_add", original_ln_before=False)
    adapterhub.BnConfig(residual_before_ln="post_add", original_ln_before=True)


# ------------------------------------------------------------------ 9. equal setups hash equally


def test_equal_setups_hash_equally():
    assert Stack("a") == "a" and hash(Stack("a")) == hash("a")
    assert Stack("a", "b") == ("a", "b") and hash(Stack("a", "b")) == hash(("a", "b"))
    assert {Stack("a"): 1}["a"] == 1 and len({Stack("a"), "a", Stack("a")}) == 1
    assert Fuse("a", "b") == Fuse("a", "b") and hash(Fuse("a", "b")) == hash(Fuse("a", "b"))
    assert Fuse("a", "b") != Fuse("a", "b", name="x")


# ------------------------------------------------------------------ nothing half-applied


def test_overwrite_with_a_failing_config_keeps_the_old_adapter():
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="seq_bn_inv", set_active=True)
    _perturb(model, "a")
    model.add_adapter("b", config="seq_bn")
    model.add_adapter_fusion(["a", "b"])
    model.set_active_adapters(Stack("a", Fuse("a", "b")))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = inputs()
    expected = output_of(model, batch)
    # valid as a config, fails when built: no reduction factor for layer 1
    with pytest.raises(AdapterConfigError, match="layer 1"):
        model.add_adapter("a", config="seq_bn[reduction_factor={'0': 4}]", overwrite_ok=True)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert model.active_adapters == Stack("a", Fuse("a", "b"))
    assert model.adapterhub_state.configs["a"].inv_adapter == "nice"
    torch.testing.assert_close(output_of(model, batch), expected, rtol=0, atol=0)
    model.delete_adapter("a")  # the restored model still works as a whole
    assert not any(".a." in k or "a,b" in k for k in model.state_dict())


def test_failed_load_leaves_nothing(tmp_path):
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="seq_bn_inv")
    model.save_adapter(tmp_path, "a")
    fresh = adapterhub.init(make_model("bert"))
    keys = list(fresh.state_dict())
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "adapter.safetensors"))
    weights.pop(next(k for k in weights if "invertible" in k))
    save_file(weights, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(Exception, match="missing keys"):
        fresh.load_adapter(tmp_path)
    assert list(fresh.state_dict()) == keys and not fresh.has_adapters()

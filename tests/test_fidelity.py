"""Fidelity defects found by the differential harness against the `adapters` library (scripts/peer_diff),
each checked here without the peer, and the all-or-nothing rule of add/load/delete."""

from __future__ import annotations

import pytest
import torch

import adapterhub
from adapterhub import Fuse, Stack
from adapterhub.library.composition import Block
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


# ------------------------------------------------------------------ 4. LM-head models with invertible adapters


def test_standard_lm_head_gets_no_inverse_and_tied_head_keys_load(tmp_path):
    model = adapterhub.init(
        make_model("bert", "lm")
    )  # BertLMHeadModel: cls.predictions.* tied to the embeddings
    model.add_adapter("a", config="seq_bn_inv", set_active=True)
    _perturb(model, "a")
    batch = inputs()
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        # the standard head applied to the adapted hidden states, no inverse before its decoder
        decoder = model.cls.predictions.decoder
        expected = model.cls.predictions.transform(hidden) @ decoder.weight.T + decoder.bias
    torch.testing.assert_close(output_of(model, batch), expected, rtol=0, atol=1e-6)
    model.save_adapter(tmp_path, "a")
    # the AdapterHub library saves the tied output embedding weights with a static head
    from safetensors.torch import load_file, save_file

    head_file = tmp_path / "model_head.safetensors"
    head = load_file(str(head_file))
    own = dict(model.named_parameters(remove_duplicate=False))
    tied = {k: own[k].detach().clone() for k in ("cls.predictions.decoder.weight", "cls.predictions.bias")}
    save_file({**head, **tied}, str(head_file))
    fresh = adapterhub.init(make_model("bert", "lm"))
    fresh.load_adapter(tmp_path, set_active=True)
    torch.testing.assert_close(output_of(fresh, batch), expected, rtol=0, atol=1e-6)
    tied["cls.predictions.bias"] += 1.0  # not this model's embeddings: refused
    save_file({**head, **tied}, str(head_file))
    with pytest.raises(Exception, match="cls.predictions.bias differs"):
        adapterhub.init(make_model("bert", "lm")).load_adapter(tmp_path)


@pytest.mark.parametrize("arch, inverse", [("qwen2", True), ("llama", False), ("gpt2", False)])
def test_standard_lm_head_gets_the_inverse_where_the_peer_applies_it(arch, inverse):
    """The `adapters` library runs Qwen2 through its plugin interface, which applies the invertible adapter's
    inverse before the model's output embeddings; its built-in families (Llama, GPT-2) do not."""
    model = adapterhub.init(make_model(arch, "lm"))
    model.add_adapter("a", config="seq_bn_inv", set_active=True)
    _perturb(model, "a")
    model.eval()
    batch = inputs()
    inv = model.adapterhub_state.methods["bottleneck"].invertible.adapters["a"]
    head = model.get_output_embeddings()
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
        head_input = inv(hidden, rev=True) if inverse else hidden
        expected = torch.nn.functional.linear(head_input, head.weight, head.bias)
        torch.testing.assert_close(output_of(model, batch), expected, rtol=0, atol=1e-5)
        model.set_active_adapters(None)  # inactive: neither the adapter nor its inverse
        bare = torch.nn.functional.linear(model.base_model(**batch).last_hidden_state, head.weight, head.bias)
        torch.testing.assert_close(output_of(model, batch), bare, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, bare, atol=1e-3)  # the perturbed adapter does change the outputs


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


# ------------------------------------------------------------------ 7. fusion temperature


def test_fusion_temperature_falls_per_training_step_and_stays_in_eval():
    model = adapterhub.init(make_model("bert"))
    for name in "ab":
        model.add_adapter(name, config="seq_bn")
    model.add_adapter_fusion(["a", "b"], config={"temperature": True}, set_active=True)
    layers = model.adapterhub_state.methods["bottleneck"].fusion_layers("a,b")
    batch = inputs()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(**batch)
    # as AdapterHub: T starts at 50 and falls by 50 / 1000 after each training call (down to 1)
    assert [layer.T for layer in layers] == pytest.approx([50.0 - 3 * 0.05] * len(layers))
    model.eval()  # unlike AdapterHub, calls in eval mode leave T (and so the outputs) as they are
    first = output_of(model, batch)
    assert torch.equal(output_of(model, batch), first)
    assert [layer.T for layer in layers] == pytest.approx([50.0 - 3 * 0.05] * len(layers))


# ------------------------------------------------------------------ 8. Fuse with a Stack child


def test_fuse_with_a_stack_child():
    model = adapterhub.init(make_model("bert"))
    for name in "abc":
        model.add_adapter(name, config="seq_bn[reduction_factor=4]")
        _perturb(model, name, seed=ord(name))
    setup = Fuse(Stack("a", "b"), "c")
    assert setup.name == "b,c" and setup.names() == ["a", "b", "c"] and setup.fused() == ["b", "c"]
    assert Block.from_dict(setup.to_dict()) == setup
    assert model.add_adapter_fusion(setup) == "b,c"
    with torch.no_grad():
        for key, param in model.named_parameters():
            if "adapter_fusion_layer" in key:
                param.add_(torch.randn_like(param) * 0.3)
    sites = model.adapterhub_state.methods["bottleneck"].sites
    site = next(s for s in sites if s.index == 0 and s.location == "output_adapter")
    seen = {}
    site.output_module.register_forward_hook(lambda m, a, o: seen.__setitem__("h", o.detach().clone()))
    site.residual_module.register_forward_pre_hook(lambda m, a: seen.__setitem__("r", a[1].detach().clone()))
    site.norm.register_forward_hook(lambda m, a, o: seen.__setitem__("y", o.detach().clone()))
    model.set_active_adapters(setup)
    output_of(model, inputs())
    h, r, norm = seen["h"], seen["r"], site.norm
    a, b, c = (site.adapters[n] for n in "abc")
    with torch.no_grad():
        x = norm(h + r)  # c's pre-step, shared by the fused children (residual: h)
        x_a = a(norm(x + r), x)  # the Stack child runs a, then b, each with its own pre-step
        up_b = b.bottleneck_up(norm(x_a + r))
        ups = torch.stack([up_b, c.bottleneck_up(x)], dim=-2)
        expected = norm(site.fusion_layers["b,c"](x, ups, h) + r)
    torch.testing.assert_close(seen["y"], expected, rtol=0, atol=1e-6)
    with pytest.raises(AdapterConfigError, match="Stack inside a Fuse takes adapter names only"):
        Fuse(Stack("a", Fuse("b", "c")), "d")


# ------------------------------------------------------------------ 9. equal setups hash equally


def test_equal_setups_hash_equally():
    assert Stack("a") == "a" and hash(Stack("a")) == hash("a")
    assert Stack("a", "b") == ("a", "b") and hash(Stack("a", "b")) == hash(("a", "b"))
    assert {Stack("a"): 1}["a"] == 1 and len({Stack("a"), "a", Stack("a")}) == 1
    assert Fuse("a", "b") == Fuse("a", "b") and hash(Fuse("a", "b")) == hash(Fuse("a", "b"))
    assert Fuse("a", "b") != Fuse("a", "b", name="x")


# ------------------------------------------------------------------ 10. flexible language-model heads


def _peer_style_head(folder, name: str, config: dict, weights: dict) -> None:
    """A head folder as the AdapterHub library writes it (head_config.json + model_head.safetensors)."""
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    header = {"config": config, "hidden_size": 32, "model_class": "BertAdapterModel", "model_name": "",
              "model_type": "bert", "name": name, "version": "adapters.1.3.0"}  # fmt: skip
    (folder / "head_config.json").write_text(json.dumps(header))
    save_file(
        {f"heads.{name}.{k}": v.contiguous() for k, v in weights.items()},
        str(folder / "model_head.safetensors"),
    )


def test_masked_lm_head_layout_maths_and_a_head_saved_by_the_peer(tmp_path):
    model = adapterhub.AdapterModel.from_config(make_model("bert").config).eval()
    model.add_adapter("a", config="seq_bn_inv", set_active=True)
    _perturb(model, "a")
    model.add_masked_lm_head("a")
    head = model.heads["a"]
    assert [k for k, _ in head.state_dict().items()] == [
        "0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"
    ]  # fmt: skip
    assert head[3].weight is model.get_input_embeddings().weight  # tied
    with torch.no_grad():
        for key, param in head.named_parameters():
            if key != "3.weight":
                param.add_(torch.randn_like(param) * 0.3)
    batch = inputs()
    inv = model.adapterhub_state.methods["bottleneck"].invertible.adapters["a"]
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
        expected = head[3](inv(head[2](head[1](head[0](hidden))), rev=True))
        logits = model(**batch).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    labels = batch["input_ids"].clone()
    loss = model(**batch, labels=labels).loss
    torch.testing.assert_close(
        loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 100), labels.reshape(-1))
    )
    # the peer's files: head config with every option, tied output embeddings saved too
    config = {"head_type": "masked_lm", "vocab_size": 100, "embedding_size": 32, "layers": 2,
              "activation_function": "gelu", "layer_norm": True, "bias": True, "shift_labels": False,
              "label2id": None}  # fmt: skip
    _peer_style_head(tmp_path / "h", "mlm", config, head.state_dict())
    fresh = adapterhub.AdapterModel.from_config(make_model("bert").config).eval()
    with torch.no_grad():
        fresh.get_input_embeddings().weight.copy_(model.get_input_embeddings().weight)
    assert fresh.load_head(tmp_path / "h") == "mlm"
    for key, value in head.state_dict().items():
        assert torch.equal(fresh.heads["mlm"].state_dict()[key], value)


def test_causal_lm_head_shifts_labels_and_unties_where_the_config_says_so():
    gpt2 = adapterhub.AdapterModel.from_config(make_model("gpt2").config).eval()
    gpt2.add_causal_lm_head("lm")
    head = gpt2.heads["lm"]
    assert (
        head.config["layers"] == 2
        and head.config["shift_labels"]
        and head[3].weight is gpt2.get_input_embeddings().weight
    )
    batch = inputs()
    out = gpt2(**batch, labels=batch["input_ids"])
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 100), batch["input_ids"][:, 1:].reshape(-1)
    )
    torch.testing.assert_close(out.loss, expected)
    llama = adapterhub.AdapterModel.from_config(make_model("llama").config)  # tie_word_embeddings=False
    llama.add_causal_lm_head("lm", layers=1)
    assert llama.heads["lm"][0].weight is not llama.get_input_embeddings().weight


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


def test_fusion_overwrite_that_fails_keeps_the_old_fusion_and_unknown_options_raise(tmp_path):
    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="seq_bn")
    model.add_adapter("b", config="seq_bn[mh_adapter=True,output_adapter=False]")  # no site shared with a
    model.add_adapter("c", config="seq_bn")
    model.add_adapter_fusion(["a", "c"], name="x", set_active=True)
    keys = list(model.state_dict())
    with pytest.raises(AdapterConfigError, match="share no adapter position"):
        model.add_adapter_fusion(["a", "b"], name="x", overwrite_ok=True)
    assert list(model.state_dict()) == keys and model.active_adapters == Fuse("a", "c", name="x")
    model.save_adapter_fusion(tmp_path, "x")
    with pytest.raises(TypeError, match="unknown option.*lod_as"):
        model.load_adapter_fusion(tmp_path, lod_as="y")


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

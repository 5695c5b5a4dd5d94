"""LoRA, DoRA, rsLoRA and IA3 on every supported architecture (tiny random models): exactness, merging,
parameter counts, training, padding, save/load, errors; PEFT files both ways against the `peft` package."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

import adapterhub
from adapterhub import AdapterConfigError
from adapterhub.library import architectures
from tiny_models import ARCHS, inputs, make_model, output_of
from tiny_models import model_with_adapter as _model
from tiny_models import perturb_adapter as _perturb

CONFIGS = [
    "lora",
    "dora",
    "ia3",
    "lora[use_rslora=True,r=4,alpha=16]",
    "lora[attn_matrices=['q','k','v'],intermediate_lora=True,output_lora=True,leave_out=[1]]",
    "lora[target_modules='all-linear',use_dora=True]",
    "ia3[target_modules=['v_proj','value','v_lin','c_attn','c_fc'],feedforward_modules=['c_fc']]",
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", CONFIGS)
def test_init_and_inactive_are_bit_exact_merge_equals_unmerged(arch, config):
    plain = make_model(arch)
    batch = inputs()
    reference = output_of(plain, batch)
    model = _model(arch, config, perturb=False)
    assert torch.equal(output_of(model, batch), reference)  # added, inactive
    model.set_active_adapters("a")
    assert torch.equal(output_of(model, batch), reference)  # active at its initialisation (B = 0, l = 1)
    _perturb(model, "a")
    active = output_of(model, batch)
    assert (active - reference).abs().max() > 1e-3
    model.merge_adapter("a")
    torch.testing.assert_close(output_of(model, batch), active, rtol=0, atol=1e-5)
    model.set_active_adapters(None)  # a merged adapter acts without being active
    torch.testing.assert_close(output_of(model, batch), active, rtol=0, atol=1e-5)
    model.reset_adapter()
    assert torch.equal(output_of(model, batch), reference)  # the replaced weights are put back bit for bit
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in plain.state_dict().items())


def _expected_params(model, config: str) -> int:
    """Each method's formula over the layers it adapts."""
    resolved = adapterhub.resolve_config(config)
    method = model.adapterhub_state.methods["lora"]
    total = 0
    for target in method.targets.values():
        module = target.loras["a"]
        out_f, in_f = target.out_features, target.in_features
        blocks = module.blocks
        if resolved.method == "ia3":
            total += in_f if module.on_input else blocks.size * len(blocks.blocks)
        else:
            total += resolved.r * len(blocks.blocks) * (in_f + blocks.size)
            total += out_f if resolved.use_dora else 0
    return total


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
@pytest.mark.parametrize("config", CONFIGS)
def test_trainable_parameters_follow_the_formula(arch, config):
    model = _model(arch, config)
    model.train_adapter("a", train_head=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == _expected_params(model, config) > 0
    row = model.adapter_summary(as_dict=True)[0]
    assert row["params"] == trainable and row["method"] == adapterhub.resolve_config(config).method


def test_trainable_parameters_bert_lora_by_hand():
    model = _model("bert", "lora[r=4]")  # q and v of 2 layers, 32 x 32: 2 * 2 * 4 * (32 + 32)
    assert model.adapter_summary(as_dict=True)[0]["params"] == 2 * 2 * 4 * 64
    model = _model("gpt2", "lora[r=4]")  # q and v blocks of c_attn (32 -> 96): A [8, 32], B [64, 4] per layer
    assert model.adapter_summary(as_dict=True)[0]["params"] == 2 * (8 * 32 + 64 * 4)
    model = _model("bert", "ia3")  # k, v (32 each) and intermediate (37) in 2 layers
    assert model.adapter_summary(as_dict=True)[0]["params"] == 2 * (32 + 32 + 37)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("config", ["lora[dropout=0.1]", "dora", "ia3"])
def test_a_training_step_changes_only_that_adapter(arch, config):
    model = adapterhub.init(make_model(arch, "seqcls"))
    model.add_adapter("a", config=config)
    model.add_adapter("other", config=config)
    model.add_adapter("bn", config="seq_bn")
    _perturb(model, "a")
    model.train_adapter("a", train_head=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(**inputs(), labels=torch.tensor([0, 1]))
    out.loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    own = set(model.adapterhub_state.adapter_state_dict("a"))
    assert changed and changed <= own


@pytest.mark.parametrize("config", ["lora[dropout=0.3]", "dora[dropout=0.3]"])
def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(config):
    model = _model("bert", config)
    model.set_active_adapters("a")
    batch = inputs()
    assert torch.equal(output_of(model, batch), output_of(model, batch))
    model.train()
    with torch.no_grad():
        first, second = model(**batch).last_hidden_state, model(**batch).last_hidden_state
    assert not torch.equal(first, second)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", ["lora", "dora", "ia3"])
def test_padded_rows_equal_unpadded_rows(arch, config):
    model = _model(arch, config)
    model.set_active_adapters("a")
    batch = inputs(batch=2, length=7)  # row 1 has 2 padded positions
    padded = output_of(model, batch)
    if padded.dim() == 2:
        pytest.skip("pooled output")
    alone = {k: v[1:, :5] for k, v in batch.items()}
    out = output_of(model, alone)
    torch.testing.assert_close(padded[1, :5], out[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
@pytest.mark.parametrize("config", CONFIGS)
def test_save_and_load_are_exact(arch, config, tmp_path):
    model = _model(arch, config, kind="seqcls")
    model.set_active_adapters("a")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path / "a", "a")
    fresh = adapterhub.init(make_model(arch, "seqcls", seed=0))
    name = fresh.load_adapter(tmp_path / "a", load_as="b", set_active=True)
    assert name == "b"
    assert torch.equal(output_of(fresh, batch), expected)
    assert fresh.adapterhub_state.configs["b"] == model.adapterhub_state.configs["a"]


def test_lora_and_a_bottleneck_adapter_stack_two_loras_do_not():
    model = _model("bert", "lora")
    model.add_adapter("b", config="lora")
    model.add_adapter("bn", config="seq_bn")
    model.set_active_adapters(adapterhub.Stack("a", "bn"))  # different methods: both act
    with pytest.raises(AdapterConfigError, match="only one can be active"):
        model.set_active_adapters(adapterhub.Stack("a", "b"))
    with pytest.raises(AdapterConfigError, match="fuses adapters of one method"):
        model.add_adapter_fusion(["a", "bn"])
    assert model.active_adapters == adapterhub.Stack("a", "bn")  # the refused setup changed nothing


def test_clear_errors():
    model = adapterhub.init(make_model("bert"))
    with pytest.raises(AdapterConfigError, match="matches no linear layer"):
        model.add_adapter("a", config="lora[target_modules=['nothing_here']]")
    assert not model.has_adapters()  # nothing half-applied
    assert not any(".loras" in k for k in model.state_dict())
    with pytest.raises(AdapterConfigError, match="attn_matrices"):
        model.add_adapter("a", config="lora[attn_matrices=['x']]")
    with pytest.raises(AdapterConfigError, match="r must be"):
        model.add_adapter("a", config="lora[r=0]")
    with pytest.raises(AdapterConfigError, match="IA3 needs r=1"):
        model.add_adapter("a", config="ia3[r=2]")
    with pytest.raises(AdapterConfigError, match="not DoRA or IA3"):
        model.add_adapter("a", config="dora[use_gating=True]")
    model.add_adapter("a", config="lora")
    model.add_adapter("b", config="lora")
    model.merge_adapter("a")
    with pytest.raises(AdapterConfigError, match="reset_adapter"):
        model.merge_adapter("b")
    model.delete_adapter("a")  # deleting a merged adapter puts the weights back first
    assert torch.equal(output_of(model, inputs()), output_of(make_model("bert"), inputs()))
    with pytest.raises(AdapterConfigError, match="bottleneck adapters cannot be merged"):
        model.add_adapter("bn", config="seq_bn")
        model.merge_adapter("bn")


def test_partial_fused_projection_has_no_peft_form(tmp_path):
    model = _model("gpt2", "lora")  # q and v blocks of c_attn
    with pytest.raises(AdapterConfigError, match="no PEFT form"):
        model.save_adapter(tmp_path, "a", format="peft")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------ PEFT, differentially

PEFT_CASES = [
    ("bert", dict(r=4, lora_alpha=8, target_modules=["query", "value"], use_dora=True)),
    ("bert", dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=True)),
    ("gpt2", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)),
    (
        "gpt2",
        dict(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_proj"], use_dora=True, fan_in_fan_out=True),
    ),
    ("llama", dict(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True)),
    ("distilbert", dict(r=4, lora_alpha=8, target_modules=["q_lin", "lin2"])),
]
IA3_CASES = [
    ("bert", dict(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"])),
    (
        "gpt2",
        dict(
            target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"], fan_in_fan_out=True
        ),
    ),
    ("llama", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
]


def _peft_model(arch, kind, options):
    peft = pytest.importorskip("peft")
    is_ia3 = "feedforward_modules" in options
    config = (peft.IA3Config if is_ia3 else peft.LoraConfig)(**options)
    peft_model = peft.get_peft_model(make_model(arch, kind), config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return peft_model.eval()


@pytest.mark.parametrize("arch,options", PEFT_CASES + IA3_CASES)
def test_peft_adapters_load_here_and_ours_load_in_peft(arch, options, tmp_path):
    peft = pytest.importorskip("peft")
    batch = inputs()
    peft_model = _peft_model(arch, "base", options)
    theirs = output_of(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "peft")
    model = adapterhub.init(make_model(arch))
    name = model.load_adapter(tmp_path / "peft", set_active=True)
    torch.testing.assert_close(output_of(model, batch), theirs, rtol=0, atol=1e-5)
    model.merge_adapter(name)  # merged: PEFT's merge, and for IA3 with the bias scaled
    torch.testing.assert_close(output_of(model, batch), theirs, rtol=0, atol=1e-5)
    model.reset_adapter()
    model.save_adapter(tmp_path / "ours", name, format="peft")
    again = peft.PeftModel.from_pretrained(make_model(arch), tmp_path / "ours").eval()
    torch.testing.assert_close(output_of(again, batch), theirs, rtol=0, atol=1e-5)


def test_peft_training_gradients_equal_ours():
    """One backward pass through DoRA with dropout off: the gradients of A, B and m equal PEFT's."""
    options = dict(r=4, lora_alpha=8, target_modules=["query", "value"], use_dora=True)
    peft_model = _peft_model("bert", "base", options)
    batch = inputs()
    model = adapterhub.init(make_model("bert"))
    state = {k.replace("base_model.model.", ""): v for k, v in peft_model.state_dict().items()}
    config = adapterhub.resolve_config("lora[r=4,alpha=8,use_dora=True,target_modules=['query','value']]")
    model.add_adapter("a", config=config, set_active=True)
    with torch.no_grad():
        for key, param in model.adapterhub_state.adapter_parameters("a").items():
            path, part = key.split(".loras.a.")
            source = {"lora_A": "lora_A.default.weight", "lora_B": "lora_B.default.weight"}.get(part)
            value = (
                state[f"{path}.{source}"] if source else state[f"{path}.lora_magnitude_vector.default.weight"]
            )
            param.copy_(value.reshape(param.shape))
    peft_model.train()
    model.train_adapter("a")
    for m in (peft_model, model):
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    peft_model(**batch).last_hidden_state.pow(2).sum().backward()
    model(**batch).last_hidden_state.pow(2).sum().backward()
    theirs = {
        k.replace("base_model.model.", ""): p.grad
        for k, p in peft_model.named_parameters()
        if p.requires_grad
    }
    for key, param in model.adapterhub_state.adapter_parameters("a").items():
        path, part = key.split(".loras.a.")
        source = {"lora_A": "lora_A.default.weight", "lora_B": "lora_B.default.weight"}.get(part)
        grad = (
            theirs[f"{path}.{source}"] if source else theirs[f"{path}.lora_magnitude_vector.default.weight"]
        )
        torch.testing.assert_close(param.grad, grad.reshape(param.shape), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "arch, intermediate, output",
    [
        ("llama", "down_proj", "up_proj"),
        ("mistral", "down_proj", "up_proj"),
        ("qwen2", "up_proj", "down_proj"),
    ],
)
def test_llama_family_feed_forward_targets_are_placed_as_adapters_places_them(arch, intermediate, output):
    """The `adapters` library puts intermediate_lora on mlp.down_proj and output_lora on mlp.up_proj in its
    built-in Llama and Mistral families, and the other way round in Qwen2 (its plugin interface); saved files
    only fit if we do the same (checked both ways by scripts/peer_diff and scripts/peer_check_lora.py)."""
    model = _model(arch, "ia3")  # k, v and intermediate_lora
    keys = set(model.adapter_state_dict("a"))
    assert f"layers.0.mlp.{intermediate}.loras.a.lora_B" in keys
    assert not any(output in k for k in keys)
    model.add_adapter("b", config="lora[attn_matrices=[],output_lora=True]")
    assert {k.split(".loras.")[0] for k in model.adapter_state_dict("b")} == {
        f"layers.0.mlp.{output}",
        f"layers.1.mlp.{output}",
    }


def test_feed_forward_targets_follow_the_family_map_not_the_model_type(monkeypatch):
    """The placement is the architecture map's ``ffn_lora_roles``: a Llama map with the plain roles puts
    intermediate_lora on mlp.up_proj; a map that names other options is refused when it is registered."""
    llama = architectures._ARCHITECTURES["llama"]
    plain = dataclasses.replace(
        llama, ffn_lora_roles={"intermediate_lora": "intermediate", "output_lora": "output"}
    )
    monkeypatch.setitem(architectures._ARCHITECTURES, "llama", plain)
    model = _model("llama", "lora[attn_matrices=[],intermediate_lora=True]")
    assert {k.split(".loras.")[0] for k in model.adapter_state_dict("a")} == {
        "layers.0.mlp.up_proj",
        "layers.1.mlp.up_proj",
    }
    with pytest.raises(ValueError, match="ffn_lora_roles"):
        adapterhub.register_architecture(
            "llama-typo", dataclasses.replace(llama, ffn_lora_roles={"intermediate": "output"})
        )
    assert "llama-typo" not in adapterhub.supported_model_types()


def test_summary_shows_a_merged_adapter_and_a_seqcls_peft_adapter_loads_into_a_bare_model(tmp_path):
    model = _model("bert", "lora", kind="seqcls")
    model.merge_adapter("a")
    row = model.adapter_summary(as_dict=True)[0]
    assert row["merged"] and not row["active"]
    assert "merged" in model.adapter_summary().splitlines()[2]
    model.reset_adapter()
    assert not model.adapter_summary(as_dict=True)[0]["merged"]
    model.save_adapter(tmp_path, "a", format="peft")  # with the classifier as modules_to_save
    bare = adapterhub.init(make_model("bert"))
    name = bare.load_adapter(tmp_path, set_active=True)  # no task head here: the head part is skipped
    assert set(bare.adapter_state_dict(name)) == {
        k.replace("bert.", "", 1).replace(".loras.a.", f".loras.{name}.")
        for k in model.adapter_state_dict("a")
    }


def test_whole_checkpoint_with_lora_and_ia3_round_trips(tmp_path):
    model = adapterhub.AdapterModel(make_model("bert"))
    model.add_adapter("l", config="dora")
    model.add_adapter("i", config="ia3")
    model.add_classification_head("l", num_labels=2)
    _perturb(model, "l")
    _perturb(model, "i")
    model.set_active_adapters("l")
    model.eval()
    expected = output_of(model, inputs())
    model.save_pretrained(tmp_path)
    again = adapterhub.AdapterModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert {r["name"]: r["method"] for r in again.adapter_summary(as_dict=True)} == {"l": "lora", "i": "ia3"}
    again.set_active_adapters("l")
    again.active_head = "l"
    assert torch.equal(output_of(again, inputs()), expected)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_peft_format_refuses_what_it_cannot_hold(tmp_path):
    model = adapterhub.AdapterModel(make_model("bert"))
    model.add_adapter("a", config="lora")
    model.add_classification_head("a", num_labels=2)
    model.add_classification_head("other", num_labels=2)
    with pytest.raises(AdapterConfigError, match="flexible heads have no PEFT form"):
        model.save_adapter(tmp_path / "x", "a", format="peft")
    with pytest.raises(AdapterConfigError, match="meta_dict"):
        model.save_adapter(tmp_path / "x", "a", format="peft", with_head=False, meta_dict={"k": 1})
    with pytest.raises(AdapterConfigError, match="unknown adapter format"):
        model.save_adapter(tmp_path / "x", "a", format="safetensors")
    assert not (tmp_path / "x").exists()
    model.save_adapter(tmp_path / "y", "a", format="peft", with_head=False)  # other heads are not written
    config = json.loads((tmp_path / "y" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["modules_to_save"] is None
    assert not any("heads" in k for k in load_file(tmp_path / "y" / "adapter_model.safetensors"))


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize(
    "config", ["dora[intermediate_lora=True]", "ia3[feedforward_modules=['c_fc','dense']]"]
)
def test_gradient_checkpointing_gives_the_same_gradients(arch, config):
    model = adapterhub.init(make_model(arch, "seqcls"))
    model.add_adapter("a", config=config)
    _perturb(model, "a")
    model.train_adapter("a")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    labels = torch.tensor([0, 1])

    def gradients():
        model.zero_grad()
        model(**inputs(), labels=labels).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    assert set(plain) == set(checkpointed) and any(".loras.a." in k for k in plain)
    assert all(torch.equal(plain[k], checkpointed[k]) for k in plain)

"""Config unions (one adapter made of several methods' configs), the `mam` and `unipelt` presets, and the gates of
LoRA, prefix tuning and bottleneck adapters (`use_gating`), on tiny random models."""

import json

import pytest
import torch

import adapterhub
from adapterhub import AdapterConfigError
from adapterhub.library.methods.bottleneck import BnConfig
from adapterhub.library.methods.lora import LoRAConfig
from adapterhub.library.methods.prefix import PrefixTuningConfig
from adapterhub.library.methods.union import ConfigUnion
from test_threads import run_threads
from tiny_models import inputs, make_model, output_of
from tiny_models import model_with_adapter as _model
from tiny_models import perturb_adapter as _perturb

ARCHS = ["bert", "gpt2", "llama"]  # an encoder, GPT-2's fused q/k/v projection, a pre-LN decoder
CUSTOM = (
    "prefix_tuning[prefix_length=3,bottleneck_size=8]|lora[r=4,use_gating=True]|par_bn[reduction_factor=4]"
)
UNIONS = ["mam[prefix_length=4,bottleneck_size=16]", "unipelt", CUSTOM]


# ------------------------------------------------------------------------------------------- configs


def test_presets_are_the_adapterhub_unions():
    mam = adapterhub.resolve_config("mam")
    assert isinstance(mam, ConfigUnion) and mam.method == "union"
    prefix, parallel = mam.parts()
    assert prefix == PrefixTuningConfig(bottleneck_size=800)
    assert parallel == adapterhub.resolve_config("par_bn")
    unipelt = adapterhub.resolve_config("unipelt")
    assert [type(p) for p in unipelt.parts()] == [PrefixTuningConfig, BnConfig, LoRAConfig]
    assert all(p.use_gating for p in unipelt.parts())
    assert unipelt.parts()[0].prefix_length == 10 and unipelt.parts()[1].reduction_factor == 16
    assert (unipelt.parts()[2].r, unipelt.parts()[2].alpha) == (8, 2)
    data = unipelt.to_dict()  # the AdapterHub format: the union and each part's own config
    assert list(data) == ["architecture", "configs"] and data["architecture"] == "union"
    assert [c.get("architecture") for c in data["configs"]] == ["prefix_tuning", None, "lora"]
    assert adapterhub.resolve_config(json.loads(json.dumps(data))) == unipelt
    assert adapterhub.resolve_config({"config": data, "name": "x"}) == unipelt


def test_overrides_and_union_strings():
    # an option changes every part that has it, and only those
    unipelt = adapterhub.resolve_config("unipelt[r=4,leave_out=[1]]")
    assert unipelt.parts()[2].r == 4 and all(p.leave_out == [1] for p in unipelt.parts())
    assert adapterhub.resolve_config("mam[reduction_factor=8]").parts()[1].reduction_factor == 8
    with pytest.raises(AdapterConfigError, match="no part of the union.*'nothing'"):
        adapterhub.resolve_config("mam[nothing=1]")
    union = adapterhub.resolve_config("prefix_tuning[prefix_length=3] | lora[attn_matrices=['q','k']]")
    assert union == ConfigUnion(PrefixTuningConfig(prefix_length=3), LoRAConfig(attn_matrices=["q", "k"]))
    assert adapterhub.resolve_config(CUSTOM).parts()[1].use_gating


def test_invalid_unions_are_refused():
    with pytest.raises(AdapterConfigError, match="both lora configs"):
        adapterhub.resolve_config("lora|lora[r=2]")
    with pytest.raises(AdapterConfigError, match="both lora configs"):
        adapterhub.resolve_config("lora|ia3")  # one method runs both
    with pytest.raises(AdapterConfigError, match="both bottleneck configs"):
        adapterhub.resolve_config("seq_bn|par_bn")  # both after the feed-forward block
    with pytest.raises(AdapterConfigError, match="another ConfigUnion"):
        ConfigUnion(adapterhub.resolve_config("mam"), LoRAConfig())
    with pytest.raises(AdapterConfigError, match="at least one"):
        ConfigUnion()
    with pytest.raises(AdapterConfigError, match="'configs'"):
        adapterhub.resolve_config({"architecture": "union", "configs": "lora"})
    with pytest.raises(AdapterConfigError, match="unknown adapter config 'nope'"):
        adapterhub.resolve_config("lora|nope")
    # different positions are allowed, as in the AdapterHub library
    ok = adapterhub.resolve_config("seq_bn[mh_adapter=True,output_adapter=False]|par_bn")
    assert len(ok.parts()) == 2
    with pytest.raises(AdapterConfigError, match="DoRA or IA3"):
        adapterhub.resolve_config("dora[use_gating=True]")


# ------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", UNIONS)
def test_inactive_is_bit_exact_and_delete_leaves_nothing(arch, config):
    plain = make_model(arch)
    batch = inputs()
    reference = output_of(plain, batch)
    model = _model(arch, config)
    assert torch.equal(output_of(model, batch), reference)  # added, inactive
    model.set_active_adapters("a")
    assert (output_of(model, batch) - reference).abs().max() > 1e-4  # every part acts
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), reference)
    model.delete_adapter("a")
    assert torch.equal(output_of(model, batch), reference)
    assert set(model.state_dict()) == set(plain.state_dict())


def _unipelt_params(model) -> int:
    """UniPELT's parameters by hand: prefix MLP + a gate per layer, seq_bn + gate per layer, LoRA on q and v
    (one gate output per q/k/v block of a fused projection) per layer."""
    state = model.adapterhub_state
    config = state.model.config
    layers, hidden = len(state.layers), state.hidden_size
    heads = config.num_attention_heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * (hidden // heads)
    prefix = (
        10 * hidden + (hidden * 512 + 512) + (512 * layers * 2 * kv + layers * 2 * kv) + layers * (hidden + 1)
    )
    down = hidden // 16
    bottleneck = layers * ((hidden * down + down) + (down * hidden + hidden) + (hidden + 1))
    if config.model_type == "gpt2":  # c_attn: A [2r, h], B [2 * h, r] for q and v, a gate with 2 outputs
        lora = layers * (2 * 8 * hidden + 2 * hidden * 8 + 2 * (hidden + 1))
    else:
        outs = {"q": hidden, "v": kv}
        lora = layers * sum(8 * (hidden + out) + hidden + 1 for out in outs.values())
    return prefix + bottleneck + lora


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_follow_the_formula(arch):
    model = _model(arch, "unipelt")
    model.train_adapter("a", train_head=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == _unipelt_params(model)
    row = model.adapter_summary(as_dict=True)[0]
    assert (row["method"], row["params"], row["active"], row["training"]) == ("union", trainable, True, True)
    assert "union" in model.adapter_summary()
    # a union has the parameters of its parts added alone
    parts = adapterhub.init(make_model(arch))
    for i, part in enumerate(adapterhub.resolve_config("unipelt").parts()):
        parts.add_adapter(f"p{i}", config=part)
    assert sum(r["params"] for r in parts.adapter_summary(as_dict=True)) == trainable


@pytest.mark.parametrize("arch", ARCHS)
def test_a_training_step_changes_only_that_adapter_and_reaches_every_gate(arch):
    model = adapterhub.init(make_model(arch, "seqcls"))
    model.add_adapter("a", config="unipelt")
    model.add_adapter("b", config="unipelt")
    model.add_adapter("c", config="seq_bn")
    _perturb(model, "a")
    model.train_adapter("a", train_head=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    own = set(model.adapterhub_state.adapter_state_dict("a"))
    assert changed <= own
    for part in ("prefix_tunings.a.", "prefix_gates.a.", ".adapters.a.", "adapters.a.gate.", "loras.a.gate."):
        assert any(part in k for k in changed), part


@pytest.mark.parametrize(
    "config", ["mam[dropout=0.3,prefix_length=4,bottleneck_size=16]", "unipelt[dropout=0.3]"]
)
def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(config):
    model = _model("bert", config)
    model.set_active_adapters("a")
    batch = inputs()
    assert torch.equal(output_of(model, batch), output_of(model, batch))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(**batch).last_hidden_state, model(**batch).last_hidden_state)


@pytest.mark.parametrize("arch", ARCHS)
def test_padded_rows_equal_unpadded_rows_without_gates(arch):
    model = _model(arch, "mam[prefix_length=4,bottleneck_size=16]")
    model.set_active_adapters("a")
    batch = inputs()
    out = output_of(model, batch)
    valid = int(batch["attention_mask"][-1].sum())
    alone = {k: v[-1:, :valid] for k, v in batch.items()}
    torch.testing.assert_close(output_of(model, alone)[0], out[-1, :valid], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_gates_average_over_every_position_of_their_own_row(arch):
    """A gate is the mean over the row's positions, padded ones included (as the AdapterHub library and the
    UniPELT paper's code compute it): a row's output depends on its own tokens and padding, never on the other
    rows of the batch."""
    model = _model(arch, "unipelt")
    model.set_active_adapters("a")
    batch = inputs(batch=3)
    out = output_of(model, batch)
    for row in range(3):
        alone = {k: v[row : row + 1] for k, v in batch.items()}
        torch.testing.assert_close(output_of(model, alone)[0], out[row], atol=1e-5, rtol=0)


def test_gated_lora_delta_is_the_gate_times_b_a_x():
    model = _model("bert", "lora[r=4,alpha=16,use_gating=True]")
    module = model.adapterhub_state.methods["lora"].targets["encoder.layer.0.attention.self.query"].loras["a"]
    x = torch.randn(2, 5, 32)
    gate = torch.sigmoid(x @ module.gate.weight.t() + module.gate.bias).mean(dim=1, keepdim=True)  # [2, 1, 1]
    expected = (x @ module.lora_A.t() @ module.lora_B.t()) * gate  # the gate takes the place of alpha / r
    torch.testing.assert_close(module.delta(x), expected, atol=1e-6, rtol=0)
    assert tuple(module.gate.weight.shape) == (1, 32)
    fused = _model("gpt2", "lora[r=4,attn_matrices=['q','k','v'],use_gating=True]")
    gpt2 = fused.adapterhub_state.methods["lora"].targets["h.0.attn.c_attn"].loras["a"]
    assert tuple(gpt2.gate.weight.shape) == (3, 32)  # one gate per q/k/v block, as in the AdapterHub library
    x = torch.randn(2, 5, 32)
    gates = torch.sigmoid(gpt2.gate(x)).mean(dim=1, keepdim=True)
    blocks = (x @ gpt2.lora_A.t()).chunk(3, -1)
    pieces = [
        p @ b.t() * gates[..., i : i + 1] for i, (p, b) in enumerate(zip(blocks, gpt2.lora_B.chunk(3, 0)))
    ]
    torch.testing.assert_close(gpt2.delta(x), torch.cat(pieces, -1), atol=1e-6, rtol=0)


def test_gated_prefix_scales_keys_and_values_by_the_gate():
    model = _model("bert", "prefix_tuning_flat[prefix_length=3,use_gating=True,shared_gating=False]")
    gates = sorted(n for n in model.adapterhub_state.adapter_state_dict("a") if "prefix_gates" in n)
    assert gates == [
        f"encoder.layer.{i}.attention.self.prefix_tuning.prefix_gates.a.{p}"
        for i in (0, 1)
        for p in ("bias", "weight")
    ]
    assert tuple(model.state_dict()[gates[1]].shape) == (2, 32)  # keys and values gated apart
    model.set_active_adapters("a")
    batch = inputs()
    gated = output_of(model, batch)
    with torch.no_grad():  # gates that are always one leave the ungated prefix
        for name in gates:
            param = model.get_parameter(name)
            param.fill_(0.0 if name.endswith("weight") else 1e4)
    ungated = _model("bert", "prefix_tuning_flat[prefix_length=3]", perturb=False)
    ungated.load_state_dict(model.state_dict(), strict=False)
    ungated.set_active_adapters("a")
    torch.testing.assert_close(output_of(model, batch), output_of(ungated, batch), atol=1e-5, rtol=0)
    assert (output_of(model, batch) - gated).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", UNIONS)
@pytest.mark.parametrize("safe", [True, False])
def test_save_and_load_are_exact(arch, config, safe, tmp_path):
    model = _model(arch, config, kind="seqcls")
    model.set_active_adapters("a")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path / "a", "a", use_safetensors=safe)
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["config"] == model.adapterhub_state.configs["a"].to_dict()
    fresh = adapterhub.init(make_model(arch, "seqcls"))
    assert fresh.load_adapter(tmp_path / "a", load_as="b", set_active=True) == "b"
    assert torch.equal(output_of(fresh, batch), expected)
    assert fresh.adapterhub_state.configs["b"] == model.adapterhub_state.configs["a"]
    assert set(fresh.adapter_state_dict("b")) == {
        k.replace(".a.", ".b.") for k in model.adapter_state_dict("a")
    }


def test_eject_the_prefix_part_of_a_union():
    model = _model("bert", "mam[prefix_length=4,bottleneck_size=16]")
    model.set_active_adapters("a")
    expected = output_of(model, inputs())
    model.eject_prefix_tuning("a")
    prefix, parallel = model.adapterhub_state.configs["a"].parts()
    assert prefix.flat and parallel == adapterhub.resolve_config("par_bn")
    torch.testing.assert_close(output_of(model, inputs()), expected, atol=1e-5, rtol=0)


def test_compositions_merging_and_peft_are_refused_clearly(tmp_path):
    model = _model("bert", "unipelt")
    model.add_adapter("l", config="lora")
    model.add_adapter("bn", config="seq_bn")
    with pytest.raises(AdapterConfigError, match="only one can be active"):
        model.set_active_adapters(adapterhub.Stack("a", "l"))  # two LoRA parts
    model.set_active_adapters(adapterhub.Stack("bn", "l"))
    with pytest.raises(AdapterConfigError, match="union"):
        model.add_adapter_fusion(["a", "bn"])
    with pytest.raises(AdapterConfigError, match="union"):
        model.merge_adapter("a")
    with pytest.raises(AdapterConfigError, match="PEFT has no form"):
        model.save_adapter(tmp_path / "p", "a", format="peft")
    assert not (tmp_path / "p").exists()
    gated = _model("bert", "lora[use_gating=True]")
    with pytest.raises(AdapterConfigError, match="cannot be folded"):
        gated.merge_adapter("a")
    assert gated.adapterhub_state.methods["lora"].merged() == []
    with pytest.raises(AdapterConfigError, match="PEFT has no form"):
        gated.save_adapter(tmp_path / "g", "a", format="peft")


def test_parts_at_the_same_place_are_refused_when_added():
    model = adapterhub.init(make_model("bert"))
    plain = set(model.state_dict())
    # allowed by the config (leave_out), but both parts put an adapter after the feed-forward block of layer 1
    with pytest.raises(AdapterConfigError, match="earlier part"):
        model.add_adapter("a", config="seq_bn[leave_out=[0]]|par_bn")
    assert not model.has_adapters() and set(model.state_dict()) == plain  # nothing half-applied
    model.add_adapter("a", config="seq_bn[leave_out=[0]]|par_bn[leave_out=[1]]")
    assert {k.split(".")[2] for k in model.adapter_state_dict("a")} == {"0", "1"}


def test_four_threads_on_one_model_equal_serial_outputs():
    model = _model("bert", "unipelt")
    model.set_active_adapters("a")
    batches = [inputs(seed=10 + i, batch=2, length=5 + 2 * i) for i in range(4)]
    serial = [output_of(model, batch) for batch in batches]
    for index, outputs in enumerate(run_threads(model, batches)):
        for output in outputs:
            torch.testing.assert_close(output, serial[index], rtol=0, atol=1e-6)


def test_load_with_leave_out_applies_to_every_part_that_has_it(tmp_path):
    model = _model("bert", "lora[r=2]|seq_bn[reduction_factor=8]")
    model.save_adapter(tmp_path / "a", "a")
    fresh = adapterhub.init(make_model("bert"))
    fresh.load_adapter(tmp_path / "a", leave_out=[0])
    assert [p.leave_out for p in fresh.adapterhub_state.configs["a"].parts()] == [[0], [0]]
    assert {k.split(".")[2] for k in fresh.adapter_state_dict("a")} == {"1"}
    expected = {k: v for k, v in model.adapter_state_dict("a").items() if k.split(".")[2] == "1"}
    assert all(torch.equal(v, expected[k]) for k, v in fresh.adapter_state_dict("a").items())


def test_adapterdrop_leaves_out_every_part_and_checkpoints_round_trip(tmp_path):
    model = _model("bert", "unipelt")
    batch = inputs()
    model.set_active_adapters("a", skip_layers=2)  # every layer dropped: the base model's output
    assert torch.equal(output_of(model, batch), output_of(make_model("bert"), batch))
    flex = adapterhub.AdapterModel.from_pretrained(_saved_base(tmp_path))
    flex.add_adapter("u", config="unipelt")
    flex.add_classification_head("u", num_labels=2)
    _perturb(flex, "u")
    flex.set_active_adapters("u")
    flex.eval()
    expected = output_of(flex, batch)
    flex.save_pretrained(tmp_path / "whole")
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())["adapters"]
    assert saved["config_map"][saved["adapters"]["u"]]["architecture"] == "union"
    again = adapterhub.AdapterModel.from_pretrained(tmp_path / "whole")
    again.set_active_adapters("u")
    again.eval()
    assert again.adapterhub_state.configs["u"] == flex.adapterhub_state.configs["u"]
    assert torch.equal(output_of(again, batch), expected)


def _saved_base(tmp_path):
    make_model("bert").save_pretrained(tmp_path / "base")
    return tmp_path / "base"

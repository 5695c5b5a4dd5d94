"""ReFT (loreft, noreft, direft) on tiny random models of every supported architecture: parameter counts,
training, determinism, padding on either side, cached decoding, save/load, threads, errors."""

import pytest
import torch
from safetensors.torch import load_file

import adapterhub
from adapterhub import AdapterConfigError
from adapterhub.library.methods.reft import LoReftConfig, ReftConfig
from tiny_models import ARCHS, inputs, make_model, output_of

CONFIGS = {
    "loreft": "loreft[prefix_positions=2,suffix_positions=2,r=3,dropout=0.0]",
    "noreft_tied": "noreft[prefix_positions=3,suffix_positions=1,r=2,tied_weights=True,dropout=0.0]",
    "direft_act": "direft[prefix_positions=1,suffix_positions=3,r=2,non_linearity='tanh',layers=[1],dropout=0.0]",
}
#: families whose forward takes position_ids, so that a left-padded row can keep the positions of its tokens
POSITION_IDS = ["bert", "gpt2", "llama", "mistral", "qwen2"]


def _perturb(model, name, seed=7, scale=0.3):
    """Seeded noise on every weight of adapter ``name``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def _model(arch, config=CONFIGS["loreft"], kind="base", active=True):
    model = adapterhub.init(make_model(arch, kind))
    model.add_adapter("a", config=config)
    _perturb(model, "a")
    if active:
        model.set_active_adapters("a")
    return model


def _layers(config, count):
    return range(count) if config.layers == "all" else config.layers


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", list(CONFIGS))
def test_parameter_count_is_the_formula_and_inactive_is_bit_exact(arch, which):
    batch = inputs()
    plain = output_of(make_model(arch), batch)
    model = _model(arch, CONFIGS[which], active=False)
    assert torch.equal(output_of(model, batch), plain)  # added, inactive
    state = model.adapterhub_state
    config = state.configs["a"]
    units = 1 if config.tied_weights else 2
    hidden = state.hidden_size
    expected = len(_layers(config, len(state.layers))) * units * (2 * config.r * hidden + config.r)
    model.train_adapter("a", train_head=False)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert model.adapter_summary(as_dict=True)[0]["params"] == expected
    model.eval()
    assert (output_of(model, batch) - plain).abs().max() > 1e-3
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), plain)
    model.delete_adapter("a")
    assert torch.equal(output_of(model, batch), plain)
    assert not any("reft" in k for k in model.state_dict())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", list(CONFIGS))
def test_right_padded_rows_equal_unpadded_and_only_the_chosen_positions_change(arch, which):
    model = _model(arch, CONFIGS[which])
    config = model.adapterhub_state.configs["a"]
    batch = inputs(batch=3, length=8)
    batch["attention_mask"][1, -5:] = 0  # 3 real tokens: prefix and suffix positions overlap
    out = output_of(model, batch)
    for row in range(3):
        real = int(batch["attention_mask"][row].sum())
        alone = {k: v[row : row + 1, :real] for k, v in batch.items()}
        torch.testing.assert_close(output_of(model, alone)[0], out[row, :real], atol=1e-5, rtol=0)
    if config.layers == [1]:  # the last layer: only the chosen positions of its output move
        model.set_active_adapters(None)
        changed = (out - output_of(model, batch)).abs().amax(-1) > 0
        chosen = torch.zeros(8, dtype=torch.bool)
        chosen[: config.prefix_positions] = True
        chosen[8 - config.suffix_positions :] = True
        assert torch.equal(changed[0], chosen)


@pytest.mark.parametrize("arch", POSITION_IDS)
def test_left_padding_gives_the_positions_of_right_padding(arch):
    model = _model(arch, CONFIGS["noreft_tied"])
    right = inputs(batch=2, length=7)
    right["attention_mask"][1, -3:] = 0
    left = {k: torch.zeros_like(v) for k, v in right.items()}
    for row in range(2):
        real = int(right["attention_mask"][row].sum())
        for key in right:
            left[key][row, 7 - real :] = right[key][row, :real]
    positions = {
        "right": (right["attention_mask"].cumsum(-1) - 1).clamp(min=0),
        "left": (left["attention_mask"].cumsum(-1) - 1).clamp(min=0),
    }
    out_right = output_of(model, {**right, "position_ids": positions["right"]})
    out_left = output_of(model, {**left, "position_ids": positions["left"]})
    for row in range(2):
        real = int(right["attention_mask"][row].sum())
        torch.testing.assert_close(out_left[row, 7 - real :], out_right[row, :real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
def test_a_training_step_changes_only_this_adapter_and_eval_is_deterministic(arch):
    model = adapterhub.init(make_model(arch, "seqcls"))
    model.add_adapter("a", config="loreft[suffix_positions=1,r=2,dropout=0.3]")
    model.add_adapter("other", config="noreft")
    model.train_adapter("a")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batch = inputs()
    model(**batch, labels=torch.tensor([0, 1])).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    own = set(model.adapterhub_state.adapter_parameters("a"))
    head = {k for k in before if k.startswith(("classifier", "score", "pre_classifier"))}
    assert changed & own and changed <= own | head
    model.eval()
    assert torch.equal(output_of(model, batch), output_of(model, batch))


def test_the_projection_stays_orthonormal_under_training_with_weight_decay():
    model = adapterhub.init(make_model("bert", "seqcls"))
    model.add_adapter("a", config="loreft[r=4,suffix_positions=1]")
    model.train_adapter("a")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=0.05, weight_decay=0.5
    )
    for _ in range(3):
        model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for module in model.adapterhub_state.method_of("a").modules("a"):
        for unit in module.units:
            R = unit.projection.weight.detach()
            torch.testing.assert_close(R @ R.t(), torch.eye(4), atol=1e-5, rtol=0)
            original = unit.projection.parametrizations.weight.original.detach()
            assert (original.diagonal().abs() < 1).all()  # weight decay moved the diagonal off -1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_decoding_equals_full_recomputation(arch):
    model = _model(arch, "loreft[prefix_positions=3,r=2,dropout=0.0]", kind="lm")
    ids = inputs(batch=1, length=9)["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        step = model(input_ids=ids[:, :4], use_cache=True)
        logits, cache = [step.logits], step.past_key_values
        for i in range(4, 9):
            step = model(input_ids=ids[:, i : i + 1], cache=cache, use_cache=True)
            logits.append(step.logits)
            cache = step.past_key_values
    torch.testing.assert_close(torch.cat(logits, dim=1), full, atol=1e-5, rtol=0)


def test_positions_skip_padding_on_either_side_and_generation_steps_get_no_suffix():
    from adapterhub.library.methods.reft.positions import positions

    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    first, last = positions(mask, 4, 6, 0, 2, 3, "cpu")
    assert first.int().tolist() == [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1],
    ]
    assert last.int().tolist() == [
        [0, 0, 0, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 1, 1],
    ]
    # a generation step: one new token after 6 cached ones (its mask covers all 7)
    step = torch.cat([mask, torch.ones(4, 1, dtype=mask.dtype)], dim=1)
    first, last = positions(step, 4, 1, 6, 2, 3, "cpu")
    assert first.int().tolist() == [[0], [0], [0], [0]] and not last.any()
    first, _ = positions(step[3:], 1, 1, 6, 3, 0, "cpu")  # the third real token of the last row
    assert first.tolist() == [[True]]
    with pytest.raises(AdapterConfigError, match="attention mask"):
        positions(torch.ones(2, 3, 4), 2, 3, 0, 1, 1, "cpu")


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_save_load_exact_with_every_setting(arch, fmt, tmp_path):
    config = (
        "loreft[layers=[0],prefix_positions=2,suffix_positions=1,r=3,tied_weights=True,dropout=0.2,"
        "non_linearity='gelu',init_weights_seed=4]"
    )
    for name, text in (("lo", config), ("di", CONFIGS["direft_act"])):
        model = _model(arch, text, kind="seqcls")
        model.set_active_adapters("a")
        batch = inputs()
        expected = output_of(model, batch)
        model.save_adapter(tmp_path / name, "a", use_safetensors=fmt == "safetensors")
        again = adapterhub.init(make_model(arch, "seqcls"))
        again.load_adapter(str(tmp_path / name), load_as="b", set_active=True)
        assert torch.equal(output_of(again, batch), expected)
        assert again.adapterhub_state.configs["b"] == model.adapterhub_state.configs["a"]
    saved = load_file(tmp_path / "lo" / "adapter.safetensors") if fmt == "safetensors" else None
    if saved is not None:
        prefix = {"bert": "bert.encoder.layer", "distilbert": "distilbert.transformer.layer"}.get(
            arch, "transformer.h" if arch == "gpt2" else "model.layers"
        )
        unit = f"{prefix}.0.reft_layer.refts.a.units.0."
        assert set(saved) == {
            unit + "learned_source.weight",
            unit + "learned_source.bias",
            unit + "projection.parametrizations.weight.original",
            unit + "projection.parametrizations.weight.0.base",  # torch's orthogonal parametrization's buffer
        }


def test_config_options_round_trip_and_presets():
    assert LoReftConfig() == ReftConfig.from_dict(LoReftConfig().to_dict())
    direft = adapterhub.resolve_config("direft")
    assert direft.to_dict()["subtract_projection"] is False and not direft.orthogonality
    assert adapterhub.resolve_config("noreft").subtract_projection is True
    # a file that does not write subtract_projection (as the adapters library writes DiReFT) reads as True
    data = direft.to_dict()
    del data["subtract_projection"]
    assert adapterhub.resolve_config(data).subtract_projection is True
    assert adapterhub.resolve_config(direft.to_dict()) == direft
    assert adapterhub.resolve_config("loreft[layers=[3,1,1]]").layers == [1, 3]


def test_clear_errors():
    model = adapterhub.init(make_model("bert"))
    for bad, message in [
        ("loreft[layers=[5]]", "do not exist"),
        ("loreft[prefix_positions=0]", "both 0"),
        ("loreft[r=0]", "r must be a positive integer"),
        ("loreft[layers=[]]", "layers must be"),
        ("loreft[output_reft=False]", "output_reft"),
        ("loreft[non_linearity='nope']", "unknown non_linearity"),
        ("loreft[dtype='int8']", "dtype must be"),
        ("loreft[dropout=1.0]", "dropout must be"),
        ("loreft[orthogonality=1]", "orthogonality must be"),
    ]:
        with pytest.raises(AdapterConfigError, match=message):
            model.add_adapter("x", config=bad)
    with pytest.raises(AdapterConfigError, match="needs the option"):
        adapterhub.resolve_config({"architecture": "reft", "r": 1})
    assert not any("reft" in k for k in model.state_dict())
    model.add_adapter("a", config="loreft")
    model.add_adapter("b", config="noreft")
    with pytest.raises(AdapterConfigError, match="only one can be active"):
        model.set_active_adapters(adapterhub.Stack("a", "b"))
    model.add_adapter("c", config="seq_bn")
    with pytest.raises(AdapterConfigError, match="cannot take part in a Fuse"):
        model.set_active_adapters(adapterhub.Fuse("a", "c"))
    with pytest.raises(AdapterConfigError, match="cannot be merged"):
        model.merge_adapter("a")


def test_stack_with_a_bottleneck_adapter_and_adapterdrop():
    batch = inputs()
    model = _model("bert", CONFIGS["loreft"])
    model.add_adapter("b", config="seq_bn")
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters("b").values():
            param.add_(0.1)
    reft_only = output_of(model, batch)
    model.set_active_adapters(adapterhub.Stack("a", "b"))
    both = output_of(model, batch)
    model.set_active_adapters("b")
    assert (both - reft_only).abs().max() > 1e-3 and (both - output_of(model, batch)).abs().max() > 1e-3
    model.set_active_adapters("a", skip_layers=[0, 1])  # every intervention dropped
    model.delete_adapter("b")
    assert torch.equal(output_of(model, batch), output_of(make_model("bert"), batch))


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_four_threads_on_one_model_equal_serial_outputs(arch):
    from test_threads import THREADS, run_threads

    model = _model(arch, CONFIGS["loreft"])
    model.add_adapter("b", config="seq_bn")
    model.set_active_adapters(adapterhub.Stack("a", "b"))
    # lengths and padding differ per thread, so that positions taken from another thread's call show
    batches = [inputs(seed=10 + i, batch=2, length=5 + 2 * i) for i in range(THREADS)]
    for i, batch in enumerate(batches):
        batch["attention_mask"][0, batch["attention_mask"].shape[1] - i :] = 0
    serial = [output_of(model, batch) for batch in batches]
    for index, outputs in enumerate(run_threads(model, batches)):
        for output in outputs:
            torch.testing.assert_close(output, serial[index], rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_gradient_checkpointing_gives_the_same_gradients_on_padded_rows(arch):
    batch = inputs(batch=3, length=8)
    batch["attention_mask"][1, -4:] = 0
    grads = []
    for checkpointing in (False, True):
        model = _model(arch, CONFIGS["loreft"], kind="seqcls")
        model.train_adapter("a")
        model.eval()  # no dropout, so that both runs compute the same
        if checkpointing:
            model.activation_checkpointing_enable()
            model.train()
            for module in model.modules():  # training mode for checkpointing, without dropout
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        calls = []
        model.adapterhub_state.layers[0].register_forward_hook(lambda *args, calls=calls: calls.append(1))
        model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
        assert len(calls) == 1  # transformers checkpoints the layer's forward: its hooks run once, outside
        grads.append({k: p.grad.clone() for k, p in model.adapterhub_state.adapter_parameters("a").items()})
    assert grads[0].keys() == grads[1].keys()
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, atol=1e-6, rtol=1e-5)


def test_a_layer_recomputed_in_a_backward_pass_without_the_call_positions_is_refused():
    import threading

    model = _model("bert", CONFIGS["loreft"])
    method = model.adapterhub_state.method_of("a")
    hidden = torch.zeros(2, 7, 32)

    class Probe(
        torch.autograd.Function
    ):  # a backward pass that runs the layer's hook, as a recomputation would
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            method.layer_positions(hidden)
            return grad

    results = {}

    def fresh_thread():  # no call of the base model in this thread: its positions are unknown
        first, last = method.layer_positions(hidden)  # outside backward: every token is real
        results["positions"] = (first.sum().item(), last.sum().item())
        try:
            Probe.apply(torch.ones(3, requires_grad=True)).sum().backward()
        except AdapterConfigError as error:
            results["error"] = str(error)

    thread = threading.Thread(target=fresh_thread)
    thread.start()
    thread.join()
    assert results["positions"] == (2 * 2, 2 * 2)
    assert "gradient checkpointing" in results["error"]


def test_whole_checkpoint_and_hub_validation_carry_the_orthonormal_projection(tmp_path):
    from adapterhub.library.validate import validate_adapter

    model = adapterhub.AdapterModel.from_pretrained(_base_folder(tmp_path))
    model.add_adapter("a", config=CONFIGS["loreft"])
    model.add_classification_head("a", num_labels=2)
    _perturb(model, "a")
    model.set_active_adapters("a")
    model.eval()
    batch = inputs()
    expected = output_of(model, batch)
    model.save_pretrained(tmp_path / "whole")
    loaded = adapterhub.AdapterModel.from_pretrained(tmp_path / "whole").eval()
    loaded.set_active_adapters("a")
    assert torch.equal(output_of(loaded, batch), expected)
    model.save_adapter(tmp_path / "a", "a", with_head=False)
    report = validate_adapter(tmp_path / "a", model.config.to_dict())
    assert report.ok and report.output_checked, report.errors
    assert report.num_params == 2 * 2 * (2 * 3 * 32 + 3)


def _base_folder(tmp_path):
    make_model("bert").save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_a_union_with_a_bottleneck_part_equals_the_two_adapters_stacked(tmp_path):
    reft = "loreft[r=2,suffix_positions=1,dropout=0.0]"
    model = adapterhub.init(make_model("gpt2"))
    model.add_adapter("u", config=f"{reft}|seq_bn[reduction_factor=4]")
    _perturb(model, "u")
    model.add_adapter("a", config=reft)
    model.add_adapter("b", config="seq_bn[reduction_factor=4]")
    union = model.adapterhub_state.adapter_state_dict("u")
    renamed = {
        k.replace(".refts.u.", ".refts.a.").replace(".adapters.u.", ".adapters.b."): v
        for k, v in union.items()
    }
    assert set(renamed) == set(model.adapterhub_state.adapter_state_dict("a")) | set(
        model.adapterhub_state.adapter_state_dict("b")
    )
    model.load_state_dict(renamed, strict=False)
    batch = inputs()
    model.set_active_adapters("u")
    expected = output_of(model, batch)
    model.set_active_adapters(adapterhub.Stack("a", "b"))
    torch.testing.assert_close(output_of(model, batch), expected, atol=1e-6, rtol=0)
    model.save_adapter(tmp_path / "u", "u")
    again = adapterhub.init(make_model("gpt2"))
    again.load_adapter(str(tmp_path / "u"), set_active=True)
    assert torch.equal(output_of(again, batch), expected)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_the_dtype_option_sets_the_intervention_dtype_and_survives_save_load(dtype, tmp_path):
    model = _model("llama", f"loreft[r=2,suffix_positions=1,dropout=0.0,dtype='{dtype}']")
    units = model.adapterhub_state.method_of("a").modules("a")[0].units
    assert units[0].learned_source.weight.dtype == getattr(torch, dtype)
    # torch's orthogonal parametrization needs full precision: R stays in float32 for half dtypes
    projection = units[0].projection.parametrizations.weight.original.dtype
    assert projection == (torch.float32 if dtype == "bfloat16" else torch.float64)
    batch = inputs()
    expected = output_of(model, batch)
    assert expected.dtype == torch.float32 and torch.isfinite(expected).all()
    model.save_adapter(tmp_path / "a", "a")
    again = adapterhub.init(make_model("llama"))
    again.load_adapter(str(tmp_path / "a"), set_active=True)
    assert torch.equal(output_of(again, batch), expected)
    assert again.adapterhub_state.configs["a"].dtype == dtype

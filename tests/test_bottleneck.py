"""Every bottleneck preset on every supported architecture: exactness, training, round trips."""

import pytest
import torch

import adapterhub
from tiny_models import ARCHS, DECODERS, inputs, make_model, output_of

PRESETS = ["seq_bn", "double_seq_bn", "par_bn", "scaled_par_bn", "seq_bn_inv", "double_seq_bn_inv"]
KINDS = ["base", "seqcls"]


def _perturb(model, name, seed=5):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", KINDS)
def test_init_and_inactive_adapter_are_bit_exact(arch, kind):
    model = make_model(arch, kind)
    original_class, original_forward = type(model), type(model).forward
    batch = inputs()
    reference = output_of(model, batch)
    adapterhub.init(model)
    assert type(model) is original_class and type(model).forward is original_forward
    assert torch.equal(output_of(model, batch), reference)
    for preset in PRESETS:
        model.add_adapter(preset, config=preset)
        _perturb(model, preset)
    assert torch.equal(output_of(model, batch), reference)
    model.set_active_adapters("seq_bn")
    assert not torch.equal(output_of(model, batch), reference)
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), reference)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", PRESETS)
def test_zero_up_projection_leaves_output_unchanged(arch, preset):
    model = make_model(arch)
    batch = inputs()
    reference = output_of(model, batch)
    adapterhub.init(model)
    model.add_adapter("a", config=preset, set_active=True)
    state = model.adapterhub_state
    with torch.no_grad():
        for key, param in state.adapter_parameters("a").items():
            if "adapter_up" in key or ".F.2." in key or ".G.2." in key:
                param.zero_()
    assert torch.equal(output_of(model, batch), reference)
    _perturb(model, "a")  # and a non-zero adapter does change it
    assert not torch.allclose(output_of(model, batch), reference)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", PRESETS)
def test_one_step_changes_only_adapter_and_head(arch, preset):
    model = make_model(arch, "seqcls")
    adapterhub.init(model)
    model.add_adapter("a", config=preset)
    model.add_adapter("other", config="seq_bn")
    model.train_adapter("a")
    state = model.adapterhub_state
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    adapter_keys = set(state.adapter_parameters("a"))
    head_keys = set(state.head_parameters())
    assert adapter_keys and head_keys and trainable == adapter_keys | head_keys
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(**inputs(), labels=torch.tensor([0, 2]))
    out.loss.backward()
    optimizer.step()
    changed = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    assert changed <= adapter_keys | head_keys
    assert changed & adapter_keys, "the adapter did not learn"
    assert changed & head_keys, "the head did not learn"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("use_safetensors", [True, False])
def test_save_load_round_trip_is_exact(arch, preset, use_safetensors, tmp_path):
    model = make_model(arch, "seqcls")
    adapterhub.init(model)
    model.add_adapter("sst", config=preset)
    _perturb(model, "sst")
    with torch.no_grad():
        for param in model.adapterhub_state.head_parameters().values():
            param.add_(0.1)
    model.set_active_adapters("sst")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path, "sst", use_safetensors=use_safetensors)
    weights = "adapter.safetensors" if use_safetensors else "pytorch_adapter.bin"
    assert (tmp_path / weights).is_file() and (tmp_path / "adapter_config.json").is_file()
    assert (tmp_path / "head_config.json").is_file()

    fresh = make_model(arch, "seqcls")
    assert not torch.equal(output_of(fresh, batch), expected)
    adapterhub.init(fresh)
    name = fresh.load_adapter(tmp_path)
    fresh.set_active_adapters(name)
    assert name == "sst"
    assert torch.equal(output_of(fresh, batch), expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_saved_from_head_model_loads_into_base_model(arch, tmp_path):
    head_model = make_model(arch, "seqcls")
    adapterhub.init(head_model)
    head_model.add_adapter("x", config="double_seq_bn")
    _perturb(head_model, "x")
    head_model.save_adapter(tmp_path, "x")
    base = make_model(arch, "base")
    adapterhub.init(base)
    base.load_adapter(tmp_path, load_as="y")  # the head is skipped: a base model has none
    saved = head_model.adapter_state_dict("x")
    loaded = base.adapter_state_dict("y")
    prefix = head_model.base_model_prefix + "."
    assert len(saved) == len(loaded) > 0
    for key, value in saved.items():
        assert torch.equal(loaded[key[len(prefix) :].replace(".x.", ".y.")], value)


def test_saved_files_follow_the_adapterhub_format(tmp_path):
    import json

    from safetensors.torch import load_file

    model = make_model("bert", "seqcls")
    adapterhub.init(model)
    model.add_adapter("sst", config="seq_bn")
    model.save_adapter(tmp_path, "sst")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert set(config) == {
        "config",
        "hidden_size",
        "model_class",
        "model_name",
        "model_type",
        "name",
        "version",
    }
    assert config["model_class"] == "BertForSequenceClassification" and config["model_type"] == "bert"
    assert config["hidden_size"] == 32 and config["name"] == "sst"
    assert adapterhub.config_hash(config["config"]) == "9076f36a74755ac4"
    keys = sorted(load_file(tmp_path / "adapter.safetensors"))
    assert keys[0] == "bert.encoder.layer.0.output.adapters.sst.adapter_down.0.bias"
    assert len(keys) == 2 * 4  # 2 layers x (down, up) x (weight, bias)
    assert sorted(load_file(tmp_path / "model_head.safetensors")) == ["classifier.bias", "classifier.weight"]
    head = json.loads((tmp_path / "head_config.json").read_text())
    assert head["config"] is None and head["num_labels"] == 3


def test_adapter_summary_and_bookkeeping():
    model = make_model("bert", "seqcls")
    adapterhub.init(model)
    assert not model.has_adapters()
    model.add_adapter("a", config="seq_bn")
    model.add_adapter("b", config="double_seq_bn")
    model.train_adapter("a")
    rows = {row["name"]: row for row in model.adapter_summary(as_dict=True)}
    # seq_bn on hidden 32: bottleneck 2; per layer 32*2+2 + 2*32+32 = 162; 2 layers
    assert rows["a"]["params"] == 2 * 162
    assert rows["b"]["params"] == 2 * 2 * (32 * 2 + 2 + 2 * 32 + 32)
    assert rows["a"]["active"] and rows["a"]["training"] and not rows["b"]["active"]
    base = sum(p.numel() for p in model.parameters()) - rows["a"]["params"] - rows["b"]["params"]
    assert rows["a"]["percent"] == pytest.approx(100 * 324 / base)
    table = model.adapter_summary()
    assert "a" in table and "bottleneck" in table and "324" in table
    assert model.active_adapters == "a"
    model.delete_adapter("a")
    assert model.active_adapters is None and [r["name"] for r in model.adapter_summary(as_dict=True)] == ["b"]
    assert not any("adapters.a." in k for k in model.state_dict())


def test_stack_runs_adapters_in_order():
    model = make_model("bert")
    adapterhub.init(model)
    model.add_adapter("a", config="seq_bn")
    model.add_adapter("b", config="seq_bn")
    _perturb(model, "a", 1)
    _perturb(model, "b", 2)
    batch = inputs()
    model.set_active_adapters(["a", "b"])
    ab = output_of(model, batch)
    model.set_active_adapters(adapterhub.Stack("b", "a"))
    ba = output_of(model, batch)
    model.set_active_adapters("a")
    a = output_of(model, batch)
    assert not torch.allclose(ab, ba) and not torch.allclose(ab, a)


def _site_hooks(site) -> tuple[int, int, int]:
    """(pre-hooks on the residual module, forward hooks on the sub-layer, forward hooks on the norm)."""
    norm_hooks = len(site.norm._forward_hooks) if site.norm is not None else 0
    return len(site.residual_module._forward_pre_hooks), len(site.output_module._forward_hooks), norm_hooks


@pytest.mark.parametrize("arch", ARCHS)
def test_each_setup_hooks_its_sites_only_while_active(arch):
    """Every setup captures r and replaces the sub-layer output at each site it runs at; the host's norm gets a
    hook only where the adapter's output replaces the norm's (``original_ln_after=False``); nothing is left
    hooked when no adapter is active."""
    model = adapterhub.init(make_model(arch))
    model.add_adapter("houlsby", config="double_seq_bn")
    model.add_adapter("parallel", config="par_bn")
    model.add_adapter("pfeiffer", config="seq_bn")
    model.add_adapter("own_norm", config="seq_bn[original_ln_after=False]")
    for setup, name in [
        ("houlsby", "houlsby"),
        ("parallel", "parallel"),
        ("pfeiffer", "pfeiffer"),
        (adapterhub.Stack("houlsby", "pfeiffer"), "pfeiffer"),
        ("own_norm", "own_norm"),
    ]:
        model.set_active_adapters(setup)
        sites = [s for s in model.adapterhub_state.methods["bottleneck"].sites if name in s.adapters]
        assert sites
        for site in sites:
            norm_hook = int(name == "own_norm" and site.norm is not None)
            assert _site_hooks(site) == (1, 1, norm_hook)
    model.set_active_adapters(None)
    assert all(_site_hooks(site) == (0, 0, 0) for site in model.adapterhub_state.methods["bottleneck"].sites)


def test_leave_out_and_per_layer_reduction_factor():
    model = make_model("bert")
    adapterhub.init(model)
    model.add_adapter("a", config="seq_bn[leave_out=[0],reduction_factor={'1': 4, 'default': 16}]")
    keys = model.adapter_state_dict("a")
    assert not any("layer.0." in k for k in keys)
    assert keys["encoder.layer.1.output.adapters.a.adapter_down.0.weight"].shape == (8, 32)


@pytest.mark.parametrize("arch", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("preset", ["seq_bn", "double_seq_bn", "par_bn"])
def test_forward_maths_at_the_attention_site(arch, preset):
    """The attention site's result equals the AdapterHub formula, computed by hand from captured h and r."""
    model = make_model(arch)
    adapterhub.init(model)
    config = adapterhub.resolve_config(preset).replace(mh_adapter=True)
    model.add_adapter("a", config=config)
    _perturb(model, "a")
    state = model.adapterhub_state
    site = next(s for s in state.methods["bottleneck"].sites if s.index == 0 and s.location == "mh_adapter")
    adapter = site.adapters["a"]
    seen = {}
    site.output_module.register_forward_hook(
        lambda m, a, o: seen.__setitem__("h", (o[0] if isinstance(o, tuple) else o).detach().clone())
    )
    site.residual_module.register_forward_pre_hook(
        lambda m, a, k: seen.__setitem__(
            "r",
            (
                a[site.spec.residual_arg[0]]
                if len(a) > site.spec.residual_arg[0]
                else k[site.spec.residual_arg[1]]
            )
            .detach()
            .clone(),
        ),
        with_kwargs=True,
    )
    after = {"bert": "attention.output.LayerNorm", "llama": "post_attention_layernorm", "gpt2": "ln_2"}[arch]
    layer = state.layers[0]
    module = layer.get_submodule(after)
    if arch == "bert":
        module.register_forward_hook(lambda m, a, o: seen.__setitem__("y", o.detach().clone()))
    else:  # pre-LN: the sum r + h' is the input of the next norm
        module.register_forward_pre_hook(lambda m, a: seen.__setitem__("y", a[0].detach().clone()))
    model.set_active_adapters("a")
    output_of(model, inputs())
    h, r, y = seen["h"], seen["r"], seen["y"]
    model.set_active_adapters(None)  # the host's own norm, with no adapter hook on it
    norm = site.norm if site.norm is not None else (lambda x: x)

    def f(x):
        return adapter.adapter_up(adapter.adapter_down(x)) * adapter.scaling

    expected = {
        "seq_bn": norm(r + h + f(norm(h + r))),
        "double_seq_bn": norm(r + h + f(h)),
        "par_bn": norm(r + h + f(r)),
    }[preset]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(DECODERS))
def test_invertible_adapter_with_a_standard_lm_head(arch):
    model = make_model(arch, "lm")
    adapterhub.init(model)
    model.add_adapter("inv", config="seq_bn_inv[output_adapter=False,mh_adapter=False]")
    _perturb(model, "inv")
    inv = model.adapterhub_state.methods["bottleneck"].invertible.adapters["inv"]
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(inv(inv(x), rev=True), x, rtol=0, atol=1e-5)
    batch = inputs()
    reference = output_of(model, batch)
    model.set_active_adapters("inv")
    # only an invertible adapter: embeddings change, so outputs change
    logits = output_of(model, batch)
    assert not torch.allclose(logits, reference)
    # as in AdapterHub, a standard Transformers LM head gets no inverse (only the flexible LM heads apply it)
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
    torch.testing.assert_close(logits, model.get_output_embeddings()(hidden), rtol=0, atol=1e-5)


def test_glow_invertible_adapter_is_invertible():
    model = make_model("bert")
    adapterhub.init(model)
    model.add_adapter("g", config="seq_bn[inv_adapter=glow,inv_adapter_reduction_factor=2]")
    _perturb(model, "g")
    inv = model.adapterhub_state.methods["bottleneck"].invertible.adapters["g"]
    x = torch.randn(2, 5, 32)
    y = inv(x)
    assert not torch.allclose(y, x)
    torch.testing.assert_close(inv(y, rev=True), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_gradient_checkpointing_gives_the_same_gradients(arch):
    model = make_model(arch, "seqcls")
    adapterhub.init(model)
    model.add_adapter("a", config="double_seq_bn")
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
    assert set(plain) == set(checkpointed) and plain
    assert all(torch.equal(plain[k], checkpointed[k]) for k in plain)

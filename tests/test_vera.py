"""VeRA on tiny random models: exactness at init and when inactive, merging, the parameter count (only the
vectors train and are saved), training, save/load with the projections regenerated from the seed, errors;
outputs and gradients against the `peft` package's VeRA with the same seed."""

import pytest
import torch
from safetensors.torch import load_file

import adapterhub
from adapterhub import AdapterConfigError
from tiny_models import ARCHS, inputs, make_model, model_with_adapter, output_of, perturb_adapter

ALL = "vera[r=8,target_modules='all-linear',leave_out=[0]]"


def _config(arch: str) -> str:
    return ALL if arch == "gpt2" else "vera[r=16]"


def _perturb(model, name):
    perturb_adapter(model, name, scale=0.5)


def _model(arch, config, kind="base", perturb=True):
    return model_with_adapter(arch, config, kind, perturb, scale=0.5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", ["default", "all"])
def test_init_and_inactive_are_bit_exact_merge_equals_unmerged(arch, which):
    config = _config(arch) if which == "default" else ALL
    plain = make_model(arch)
    batch = inputs()
    reference = output_of(plain, batch)
    model = _model(arch, config, perturb=False)
    assert torch.equal(output_of(model, batch), reference)  # added, inactive
    model.set_active_adapters("a")
    assert torch.equal(output_of(model, batch), reference)  # lambda_b starts at zero
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


def test_only_the_vectors_train_and_are_saved(tmp_path):
    model = _model("bert", "vera[r=16]")  # q and v (32 -> 32) of 2 layers: lambda_b [32] + lambda_d [16] each
    model.train_adapter("a", train_head=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * 2 * (32 + 16)
    assert model.adapter_summary(as_dict=True)[0]["params"] == trainable
    # all-linear, layer 0 left out: q, k, v, attention output (32 -> 32), intermediate (-> 37) and output
    # (-> 32) of layer 1, and the pooler (32 -> 32)
    model = _model("bert", ALL)
    model.train_adapter("a", train_head=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * (32 + 8) + (37 + 8) + (32 + 8) + (32 + 8)
    model.save_adapter(tmp_path / "a", "a")
    saved = load_file(tmp_path / "a" / "adapter.safetensors")
    assert sum(t.numel() for t in saved.values()) == trainable
    assert {k.rsplit(".", 1)[-1] for k in saved} == {"lambda_b", "lambda_d"}


def test_a_training_step_changes_only_the_vectors_of_that_adapter():
    model = adapterhub.init(make_model("bert", "seqcls"))
    model.add_adapter("a", config="vera[r=16,dropout=0.1]")
    model.add_adapter("other", config="vera[r=16]")
    _perturb(model, "a")
    model.train_adapter("a", train_head=False)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= set(model.adapterhub_state.adapter_state_dict("a"))
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())  # the projections stay frozen


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_save_and_load_regenerate_the_projections(arch, tmp_path):
    config = "vera[r=8,target_modules='all-linear',projection_prng_key=5]"
    model = _model(arch, config, kind="seqcls")
    model.set_active_adapters("a")
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path / "a", "a")
    fresh = adapterhub.init(make_model(arch, "seqcls", seed=0))
    fresh.load_adapter(tmp_path / "a", load_as="b", set_active=True)
    assert torch.equal(output_of(fresh, batch), expected)
    assert fresh.adapterhub_state.configs["b"] == model.adapterhub_state.configs["a"]
    # another seed draws other projections: same vectors, other outputs
    other = adapterhub.init(make_model(arch, "seqcls", seed=0))
    other.add_adapter("c", config=config.replace("=5", "=6"), set_active=True)
    with torch.no_grad():
        for (_, mine), (_, theirs) in zip(
            sorted(other.adapterhub_state.adapter_parameters("c").items()),
            sorted(fresh.adapterhub_state.adapter_parameters("b").items()),
        ):
            mine.copy_(theirs)
    assert (output_of(other, batch) - expected).abs().max() > 1e-4


def test_clear_errors():
    model = adapterhub.init(make_model("gpt2"))
    with pytest.raises(AdapterConfigError, match="fuses q, k and v"):
        model.add_adapter("a", config="vera")
    with pytest.raises(AdapterConfigError, match="matches no linear layer"):
        model.add_adapter("a", config="vera[target_modules=['nothing']]")
    for bad, message in [
        ("vera[r=0]", "r must be a positive integer"),
        ("vera[dropout=1.5]", "dropout must be in"),
        ("vera[projection_prng_key=-1]", "projection_prng_key"),
        ("vera[target_modules=3]", "target_modules must be"),
    ]:
        with pytest.raises(AdapterConfigError, match=message):
            adapterhub.resolve_config(bad)
    assert "a" not in model.adapterhub_state.configs


def test_outputs_and_gradients_equal_peft():
    peft = pytest.importorskip("peft")
    batch = inputs()
    base = make_model("bert")
    peft_config = peft.VeraConfig(
        r=16,
        target_modules=["query", "value", "intermediate.dense"],
        projection_prng_key=11,
        vera_dropout=0.0,
    )
    peft_model = peft.get_peft_model(make_model("bert"), peft_config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "vera_lambda" in name:
                param.copy_(torch.randn(param.shape, generator=generator))
    config = "vera[r=16,target_modules=['query','value','intermediate.dense'],projection_prng_key=11]"
    model = adapterhub.init(base)
    model.add_adapter("a", config=config, set_active=True)
    theirs = {
        k.replace("base_model.model.", ""): p for k, p in peft_model.named_parameters() if p.requires_grad
    }
    pairs = []
    for key, param in model.adapterhub_state.adapter_parameters("a").items():
        path, part = key.split(".veras.a.")
        pairs.append((param, theirs[f"{path}.vera_{part}.default"]))
    with torch.no_grad():
        for mine, other in pairs:
            mine.copy_(other)
    assert len(pairs) == len(theirs) == 2 * 3 * 2
    model.train_adapter("a")
    peft_model.train()
    for m in (peft_model, model):  # the base model's dropout off: both sides see the same batch
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    out_theirs, out_mine = peft_model(**batch).last_hidden_state, model(**batch).last_hidden_state
    torch.testing.assert_close(out_mine, out_theirs, rtol=0, atol=1e-5)
    out_theirs.pow(2).sum().backward()
    out_mine.pow(2).sum().backward()
    for mine, other in pairs:
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "arch,targets", [("bert", ["query", "value", "intermediate.dense"]), ("gpt2", ["c_attn"])]
)
def test_peft_files_both_ways(arch, targets, tmp_path):
    peft = pytest.importorskip("peft")
    batch = inputs()
    config = peft.VeraConfig(r=8, target_modules=targets, projection_prng_key=4, vera_dropout=0.0)
    peft_model = peft.get_peft_model(make_model(arch), config)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for key, param in peft_model.named_parameters():
            if "vera_lambda" in key:
                param.copy_(torch.randn(param.shape, generator=generator))
    peft_model.eval()
    theirs = output_of(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "peft")  # with the projections (PEFT's default)
    model = adapterhub.init(make_model(arch))
    name = model.load_adapter(tmp_path / "peft", set_active=True)
    torch.testing.assert_close(output_of(model, batch), theirs, rtol=0, atol=1e-5)
    model.save_adapter(tmp_path / "ours", name, format="peft")
    saved = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    assert all("vera_lambda" in k for k in saved)  # the vectors only
    again = peft.PeftModel.from_pretrained(make_model(arch), tmp_path / "ours").eval()
    torch.testing.assert_close(output_of(again, batch), theirs, rtol=0, atol=1e-5)


def test_peft_file_with_other_projections_is_refused(tmp_path):
    peft = pytest.importorskip("peft")
    from safetensors.torch import save_file

    peft_model = peft.get_peft_model(make_model("bert"), peft.VeraConfig(r=8, target_modules=["query"]))
    peft_model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    weights = load_file(path)
    key = next(k for k in weights if "vera_A" in k)
    weights[key] = weights[key] * 2
    save_file(weights, path)
    model = adapterhub.init(make_model("bert"))
    with pytest.raises(adapterhub.AdapterError, match="projection_prng_key"):
        model.load_adapter(tmp_path)
    assert not model.adapterhub_state.configs

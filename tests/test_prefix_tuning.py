"""Prefix tuning on every supported architecture (tiny random models) and the peers' prefix tuning files."""

import pytest
import torch
from safetensors.torch import load_file

import adapterhub
import transformers
from adapterhub import AdapterConfigError
from tiny_models import ARCHS, SHARED, inputs, make_model, output_of

PREFIX_ARCHS = [a for a in ARCHS if a != "distilbert"]
FIXTURES = SHARED / "fixtures" / "interop"


def _model(arch, config="prefix_tuning[prefix_length=5,bottleneck_size=16]", kind="base", attn="eager"):
    model = make_model(arch, kind)
    model.set_attn_implementation(attn)
    model = adapterhub.init(model)
    model.add_adapter("p", config=config)
    model.set_active_adapters("p")
    return model


def _layers(model):
    return len(model.adapterhub_state.layers)


@pytest.mark.parametrize("arch", PREFIX_ARCHS)
def test_inactive_is_bit_exact_and_active_changes_output(arch):
    batch = inputs()
    plain = output_of(make_model(arch), batch)
    model = _model(arch)
    assert (output_of(model, batch) - plain).abs().max() > 1e-4
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), plain)
    model.delete_adapter("p")
    assert torch.equal(output_of(model, batch), plain)
    assert not any("prefix" in k for k in model.state_dict())


@pytest.mark.parametrize("arch", PREFIX_ARCHS)
def test_parameter_counts_follow_the_formula(arch):
    model = _model(arch)
    state = model.adapterhub_state
    heads, head_dim = state.method_of("p").dims()
    kv, layers, hidden = heads * head_dim, _layers(model), state.hidden_size
    mlp = 5 * hidden + (hidden * 16 + 16) + (16 * layers * 2 * kv + layers * 2 * kv)  # wte: hidden wide
    assert sum(p.numel() for p in state.adapter_parameters("p").values()) == mlp
    assert kv <= hidden
    model.add_adapter("f", config="prefix_tuning_flat[prefix_length=5,leave_out=[0]]")
    assert sum(p.numel() for p in state.adapter_parameters("f").values()) == 5 * (layers - 1) * 2 * kv


@pytest.mark.parametrize("arch", PREFIX_ARCHS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padded_rows_equal_unpadded_and_attentions_agree(arch, attn):
    batch = inputs()
    model = _model(arch, attn=attn)
    out = output_of(model, batch)
    valid = int(batch["attention_mask"][-1].sum())
    alone = {k: v[-1:, :valid] for k, v in batch.items()}
    torch.testing.assert_close(output_of(model, alone)[0], out[-1, :valid], atol=1e-5, rtol=0)
    if attn == "sdpa":
        eager = _model(arch, attn="eager")
        eager.load_state_dict(model.state_dict())
        torch.testing.assert_close(output_of(eager, batch), out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_training_step_changes_only_the_prefix_and_eval_is_deterministic(arch):
    model = _model(arch, "prefix_tuning[prefix_length=4,bottleneck_size=8,dropout=0.1]", kind="seqcls")
    model.train_adapter("p")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = model(**inputs(), labels=torch.tensor([0, 1]))
    out.loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(
        ".prefix_tunings.p." in k or k.startswith(("classifier", "score")) for k in changed
    )
    assert any(".prefix_tunings.p." in k for k in changed)
    model.eval()
    assert torch.equal(output_of(model, inputs()), output_of(model, inputs()))


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_save_load_exact_in_safetensors_and_eject(arch, tmp_path):
    batch = inputs()
    model = _model(arch)
    expected = output_of(model, batch)
    model.save_adapter(tmp_path / "p", "p")
    assert (tmp_path / "p" / "adapter.safetensors").is_file()
    again = adapterhub.init(make_model(arch))
    again.load_adapter(str(tmp_path / "p"))
    again.set_active_adapters("p")
    assert torch.equal(output_of(again, batch), expected)
    again.eject_prefix_tuning("p")
    assert again.adapterhub_state.configs["p"].flat
    assert set(k.rsplit(".", 1)[-1] for k in again.adapter_state_dict("p")) == {"control_trans"}
    torch.testing.assert_close(output_of(again, batch), expected, atol=1e-5, rtol=0)


def test_stack_is_refused_and_unsupported_family_is_named():
    model = _model("bert")
    model.add_adapter("q", config="prefix_tuning_flat[prefix_length=3]")
    with pytest.raises(AdapterConfigError):
        model.set_active_adapters(adapterhub.Stack("p", "q"))
    distil = adapterhub.init(make_model("distilbert"))
    with pytest.raises(AdapterConfigError, match="distilbert"):
        distil.add_adapter("p", config="prefix_tuning")
    assert not any("prefix" in k for k in distil.state_dict())
    with pytest.raises(AdapterConfigError, match="prefix_length"):
        adapterhub.init(make_model("bert")).add_adapter("x", config="prefix_tuning[prefix_length=0]")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_with_a_cache_equals_full_recomputation(arch):
    model = _model(arch, kind="lm")
    prompt = inputs(batch=1, length=5)
    prompt["attention_mask"][:] = 1
    model.generation_config.eos_token_id = None  # six tokens, whatever they are
    generated = model.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == 11
    ids = prompt["input_ids"]  # greedy decoding without the cache, token by token
    for _ in range(6):
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, ids)


PEER_FIXTURES = [
    ("bert", "adapters/prefix_tuning/bin", False),
    ("roberta", "adapters/prefix_tuning/bin", False),
    ("bert", "peft/prefix_tuning", False),
    ("roberta", "peft/prefix_tuning", False),
    ("bert", "peft/prefix_tuning-seqcls", True),
]


@pytest.mark.parametrize("arch,folder,seqcls", PEER_FIXTURES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_peer_fixtures_reproduce_their_outputs(arch, folder, seqcls, attn):
    fixture = FIXTURES / arch / folder.removesuffix("/bin")
    expected = load_file(fixture / "expected.safetensors")
    cls = transformers.AutoModelForSequenceClassification if seqcls else transformers.AutoModel
    base = cls.from_pretrained(
        FIXTURES / arch / ("base_seqcls" if seqcls else "base"), attn_implementation=attn
    )
    model = adapterhub.init(base.eval())
    name = model.load_adapter(str(FIXTURES / arch / folder))
    model.set_active_adapters(name)
    batch = {"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]}
    assert (output_of(model, batch) - expected["output"]).abs().max() <= 1e-5
    model.set_active_adapters(None)
    if folder.startswith("adapters/"):  # PEFT's stored inactive output is the base model with its own head
        assert (output_of(model, batch) - expected["output_inactive"]).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_four_threads_on_one_model_equal_serial_outputs(arch):
    from test_threads import THREADS, run_threads

    model = _model(arch, "prefix_tuning[prefix_length=3,bottleneck_size=8]")
    model.add_adapter("b", config="seq_bn")
    model.set_active_adapters(adapterhub.Stack("p", "b"))
    batches = [inputs(seed=10 + i, batch=2, length=5 + 2 * i) for i in range(THREADS)]
    serial = [output_of(model, batch) for batch in batches]
    for index, outputs in enumerate(run_threads(model, batches)):
        for output in outputs:
            torch.testing.assert_close(output, serial[index], rtol=0, atol=1e-6)


def test_a_peer_file_whose_layer_copy_differs_is_refused(tmp_path):
    import shutil

    folder = tmp_path / "pt"
    shutil.copytree(FIXTURES / "bert" / "adapters" / "prefix_tuning" / "bin", folder)
    weights = torch.load(folder / "pytorch_adapter.bin", weights_only=True)
    key = next(k for k in weights if ".pool.prefix_tunings." in k)
    weights[key] = weights[key] + 1
    torch.save(weights, folder / "pytorch_adapter.bin")
    model = adapterhub.init(transformers.AutoModel.from_pretrained(FIXTURES / "bert" / "base"))
    with pytest.raises(adapterhub.AdapterLoadError, match="differs"):
        model.load_adapter(str(folder))
    assert not model.adapterhub_state.configs and not any("prefix" in k for k in model.state_dict())


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2", "llama"])
def test_peft_prefix_tuning_of_random_weights_matches_peft(arch, tmp_path):
    peft = pytest.importorskip("peft")
    reference = peft.get_peft_model(
        make_model(arch), peft.PrefixTuningConfig(num_virtual_tokens=5, task_type="FEATURE_EXTRACTION")
    )
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in reference.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator))
    reference.eval()
    batch = inputs()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
    reference.save_pretrained(tmp_path)
    model = adapterhub.init(make_model(arch))
    model.set_active_adapters(model.load_adapter(str(tmp_path)))
    assert model.adapterhub_state.configs["default"].shift_positions
    torch.testing.assert_close(output_of(model, batch), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_with_shifted_positions_equals_full_recomputation(arch, tmp_path):
    model = _model(arch, "prefix_tuning_flat[prefix_length=4,shift_positions=True]", kind="lm")
    model.generation_config.eos_token_id = None
    prompt = {"input_ids": inputs(batch=1, length=5)["input_ids"]}
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    ids = prompt["input_ids"]
    for _ in range(5):
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, ids)


@pytest.mark.parametrize(
    "arch,kind", [("bert", "base"), ("roberta", "base"), ("gpt2", "lm"), ("llama", "lm")]
)
def test_peft_prefix_saved_by_us_loads_in_peft_with_the_same_outputs(arch, kind, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(arch, "prefix_tuning_flat[prefix_length=4,shift_positions=True]", kind=kind)
    batch = inputs()
    expected = output_of(model, batch)
    model.save_adapter(tmp_path, "p", format="peft")
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == {"prompt_embeddings"}
    reference = peft.PeftModel.from_pretrained(make_model(arch, kind), tmp_path).eval()
    with torch.no_grad():
        out = reference(**batch)
    torch.testing.assert_close(
        out.logits if kind == "lm" else out.last_hidden_state, expected, atol=1e-5, rtol=0
    )
    again = adapterhub.init(make_model(arch, kind))
    again.set_active_adapters(again.load_adapter(str(tmp_path)))
    assert torch.equal(output_of(again, batch), expected)
    plain = _model(arch, kind=kind)
    with pytest.raises(AdapterConfigError, match="shift"):
        plain.save_adapter(tmp_path / "no", "p", format="peft")

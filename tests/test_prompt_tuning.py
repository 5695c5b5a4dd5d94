"""Prompt tuning on the BERT family (tiny random models) and the `adapters` prompt tuning files."""

import pytest
import torch
import transformers
from safetensors.torch import load_file

import adapterhub
from adapterhub import AdapterConfigError
from tiny_models import SHARED, inputs, make_model, output_of

FIXTURES = SHARED / "fixtures" / "interop"
ENCODERS = ["bert", "roberta", "xlm-roberta"]


def _model(arch="bert", config="prompt_tuning[prompt_length=4]", kind="base", attn="eager"):
    model = make_model(arch, kind)
    model.set_attn_implementation(attn)
    model = adapterhub.init(model)
    model.add_adapter("p", config=config)
    model.set_active_adapters("p")
    return model


@pytest.mark.parametrize("arch", ENCODERS)
@pytest.mark.parametrize("combine", ["prefix", "prefix_after_bos"])
def test_prompt_joins_the_embedded_sequence(arch, combine):
    batch = inputs()
    plain = output_of(make_model(arch), batch)
    model = _model(arch, f"prompt_tuning[prompt_length=4,combine='{combine}']")
    out = output_of(model, batch)
    assert out.shape[1] == batch["input_ids"].shape[1] + 4
    assert (out[:, 4:] - plain).abs().max() > 1e-4  # the sequence attends to the prompt
    assert model.adapterhub_state.adapter_parameters("p")[
        "prompt_tuning.prompt_tunings.p.prompt_embedding.weight"
    ].shape == (4, 32)
    assert sum(p.numel() for p in model.adapterhub_state.adapter_parameters("p").values()) == 4 * 32
    model.set_active_adapters(None)
    assert torch.equal(output_of(model, batch), plain)


@pytest.mark.parametrize("arch", ENCODERS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("combine", ["prefix", "prefix_after_bos"])
def test_padded_rows_equal_unpadded(arch, attn, combine):
    batch = inputs()
    model = _model(arch, f"prompt_tuning[prompt_length=4,combine='{combine}']", attn=attn)
    out = output_of(model, batch)
    valid = int(batch["attention_mask"][-1].sum()) + 4
    alone = {k: v[-1:, : valid - 4] for k, v in batch.items()}
    torch.testing.assert_close(output_of(model, alone)[0], out[-1, :valid], atol=1e-5, rtol=0)


def test_random_init_range_seed_and_from_string(tmp_path):
    model = _model(config="prompt_tuning[prompt_length=6,init_weights_seed=3,random_uniform_scale=0.1]")
    weight = model.adapterhub_state.adapter_parameters("p")[
        "prompt_tuning.prompt_tunings.p.prompt_embedding.weight"
    ]
    assert weight.abs().max() <= 0.1 and weight.std() > 0.01
    again = _model(config="prompt_tuning[prompt_length=6,init_weights_seed=3,random_uniform_scale=0.1]")
    assert torch.equal(
        again.adapterhub_state.adapter_parameters("p")[
            "prompt_tuning.prompt_tunings.p.prompt_embedding.weight"
        ],
        weight,
    )

    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "good": 7, "movie": 9}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(
        tmp_path / "tok"
    )
    base = make_model("bert")
    base.config.tokenizer_name_or_path = str(tmp_path / "tok")
    model = adapterhub.init(base)
    model.add_adapter(
        "t",
        config={
            "architecture": "prompt_tuning",
            "prompt_length": 5,
            "prompt_init": "from_string",
            "prompt_init_text": "good movie",
        },
    )
    table = base.get_input_embeddings().weight
    weight = model.adapterhub_state.adapter_parameters("t")[
        "prompt_tuning.prompt_tunings.t.prompt_embedding.weight"
    ]
    assert torch.equal(weight, table[[7, 9, 7, 9, 7]])
    with pytest.raises(AdapterConfigError, match="prompt_init_text"):
        model.add_adapter("u", config="prompt_tuning[prompt_init='from_string']")


def test_training_step_changes_only_the_prompt_and_save_load_exact(tmp_path):
    model = _model(kind="seqcls")
    model.train_adapter("p")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "bert.prompt_tuning.prompt_tunings.p.prompt_embedding.weight" in changed
    assert all(".prompt_tunings.p." in k or k.startswith("classifier") for k in changed)
    model.eval()
    expected = output_of(model, inputs())
    assert torch.equal(output_of(model, inputs()), expected)
    model.save_adapter(tmp_path / "p", "p")
    again = adapterhub.init(make_model("bert", "seqcls"))
    again.load_adapter(str(tmp_path / "p"))
    again.set_active_adapters("p")
    assert torch.equal(output_of(again, inputs()), expected)


def test_unsupported_family_and_stack_are_refused():
    gpt2 = adapterhub.init(make_model("gpt2"))
    with pytest.raises(AdapterConfigError, match="gpt2"):
        gpt2.add_adapter("p", config="prompt_tuning")
    assert not any("prompt" in k for k in gpt2.state_dict())
    model = _model()
    model.add_adapter("q", config="prompt_tuning")
    with pytest.raises(AdapterConfigError):
        model.set_active_adapters(adapterhub.Stack("p", "q"))
    with pytest.raises(AdapterConfigError, match="combine"):
        model.add_adapter("x", config="prompt_tuning[combine='suffix']")


@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("variant", ["bin", "safetensors"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_peer_fixtures_reproduce_their_outputs(arch, variant, attn):
    fixture = FIXTURES / arch / "adapters" / "prompt_tuning"
    expected = load_file(fixture / "expected.safetensors")
    base = transformers.AutoModel.from_pretrained(FIXTURES / arch / "base", attn_implementation=attn)
    model = adapterhub.init(base.eval())
    model.set_active_adapters(model.load_adapter(str(fixture / variant)))
    batch = {"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]}
    out = output_of(model, batch)
    assert out.shape == expected["output"].shape == (2, 20, base.config.hidden_size)
    assert (out - expected["output"]).abs().max() <= 1e-5
    model.set_active_adapters(None)
    assert (output_of(model, batch) - expected["output_inactive"]).abs().max() <= 1e-5


def test_four_threads_on_one_model_equal_serial_outputs():
    from test_threads import THREADS, run_threads

    model = _model("bert", "prompt_tuning[prompt_length=3,combine='prefix_after_bos']")
    batches = [inputs(seed=10 + i, batch=2, length=5 + 2 * i) for i in range(THREADS)]
    serial = [output_of(model, batch) for batch in batches]
    for index, outputs in enumerate(run_threads(model, batches)):
        for output in outputs:
            torch.testing.assert_close(output, serial[index], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "arch,kind,task",
    [
        ("bert", "base", "FEATURE_EXTRACTION"),
        ("roberta", "base", "FEATURE_EXTRACTION"),
        ("gpt2", "lm", "CAUSAL_LM"),
        ("llama", "lm", "CAUSAL_LM"),
    ],
)
def test_peft_prompt_tuning_of_random_weights_matches_peft(arch, kind, task, tmp_path):
    peft = pytest.importorskip("peft")
    reference = peft.get_peft_model(
        make_model(arch, kind), peft.PromptTuningConfig(num_virtual_tokens=4, task_type=task)
    )
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in reference.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator))
    reference.eval()
    batch = inputs()
    if arch == "bert":
        batch["token_type_ids"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        out = reference(**batch)
    expected = out.logits if kind == "lm" else out.last_hidden_state
    reference.save_pretrained(tmp_path)
    model = adapterhub.init(make_model(arch, kind))
    model.set_active_adapters(model.load_adapter(str(tmp_path)))
    assert model.adapterhub_state.configs["default"].input_embeddings
    torch.testing.assert_close(output_of(model, batch), expected, atol=1e-5, rtol=0)
    model.save_adapter(tmp_path / "ours", "default")
    again = adapterhub.init(make_model(arch, kind))
    again.set_active_adapters(again.load_adapter(str(tmp_path / "ours")))
    assert torch.equal(output_of(again, batch), output_of(model, batch))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_with_a_prompt_on_the_input_embeddings_equals_full_recomputation(arch):
    model = _model(arch, "prompt_tuning[prompt_length=3,input_embeddings=True]", kind="lm")
    model.generation_config.eos_token_id = None
    prompt = {"input_ids": inputs(batch=1, length=5)["input_ids"]}
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    ids = prompt["input_ids"]
    for _ in range(5):
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, ids)

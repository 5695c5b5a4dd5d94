"""Flexible prediction heads: AdapterModel's layout, pooling, losses, training, save/load and errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import adapterhub
from adapterhub import AdapterConfigError, AdapterExistsError, AdapterLoadError, AdapterNotFoundError
from tiny_models import ARCHS, DECODERS, inputs, make_model


def flex(arch: str = "bert", seed: int = 0) -> adapterhub.AdapterModel:
    return adapterhub.AdapterModel(make_model(arch, "base", seed=seed)).eval()


def logits(model, batch, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, **kwargs).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_gets_a_named_class_and_the_peer_key_layout(arch):
    base = make_model(arch, "base")
    model = adapterhub.AdapterModel(base).eval()
    prefix = base.base_model_prefix
    assert type(model).__name__ == type(base).__name__[: -len("Model")] + "AdapterModel"
    assert isinstance(model, adapterhub.AdapterModel) and model.base_model is base
    model.add_classification_head("task", num_labels=3)
    keys = list(model.state_dict())
    assert [k for k in keys if k.startswith("heads.")] == [
        "heads.task.1.weight",
        "heads.task.1.bias",
        "heads.task.4.weight",
        "heads.task.4.bias",
    ]
    assert all(k.startswith(prefix + ".") or k.startswith("heads.") for k in keys)
    batch = inputs()
    model.active_head = None
    with torch.no_grad():
        plain = base(**batch).last_hidden_state
    assert torch.equal(model(**batch).last_hidden_state, plain)  # no active head: the base model's output
    model.active_head = "task"
    out = logits(model, batch)
    assert out.shape == (2, 3)
    # an inactive adapter leaves the logits bit for bit unchanged
    model.add_adapter("a", config="seq_bn")
    assert torch.equal(logits(model, batch), out)


def _manual_head(head, features):
    return head[4](torch.tanh(head[1](features)))


def test_encoders_pool_the_first_token_and_use_pooler_reads_the_pooler():
    model = flex("bert")
    model.add_classification_head("cls", num_labels=3)
    model.add_classification_head("pool", num_labels=3, use_pooler=True)
    batch = inputs()
    with torch.no_grad():
        out = model.base_model(**batch)
        assert torch.allclose(
            logits(model, batch, head="cls"), _manual_head(model.heads.cls, out.last_hidden_state[:, 0])
        )
        assert torch.allclose(
            logits(model, batch, head="pool"), _manual_head(model.heads.pool, out.pooler_output)
        )


@pytest.mark.parametrize("arch", sorted(DECODERS))
def test_decoders_pool_the_last_non_padding_token(arch):
    model = flex(arch)
    model.add_classification_head("cls", num_labels=2)
    batch = inputs()  # row 1 has its last 2 positions padded
    pad = model.config.pad_token_id
    batch["input_ids"][1, -2:] = pad
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
        expected = _manual_head(model.heads.cls, torch.stack([hidden[0, -1], hidden[1, -3]]))
        assert torch.allclose(logits(model, batch), expected)
        # the padded row gives what the same row gives alone without its padding
        alone = {k: v[1:, :-2] for k, v in batch.items()}
        assert torch.allclose(logits(model, batch)[1], logits(model, alone)[0], atol=1e-5)


def test_head_options_change_the_layout():
    model = flex()
    model.add_classification_head("one", num_labels=4, layers=1)
    model.add_classification_head("noact", num_labels=2, layers=2, activation_function=None, bias=False)
    assert [k for k in model.heads.one.state_dict()] == ["1.weight", "1.bias"]
    assert [k for k in model.heads.noact.state_dict()] == ["1.weight", "1.bias", "3.weight"]
    assert model.heads.one.config == {
        "head_type": "classification",
        "num_labels": 4,
        "layers": 1,
        "activation_function": "tanh",
        "use_pooler": False,
        "bias": True,
        "dropout_prob": None,
        "label2id": {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2, "LABEL_3": 3},
    }
    model.add_classification_head("named", num_labels=2, id2label={0: "neg", 1: "pos"})
    assert model.get_labels("named") == ["neg", "pos"]
    assert model.active_head == "named"


def test_losses_of_each_head_type():
    model = flex()
    batch = inputs()
    model.add_classification_head("cls", num_labels=3)
    labels = torch.tensor([0, 2])
    out = model(**batch, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    model.add_classification_head("reg", num_labels=1)
    target = torch.tensor([0.5, -1.0])
    out = model(**batch, labels=target)
    assert torch.allclose(out.loss, ((out.logits.view(-1) - target) ** 2).mean())
    model.add_classification_head("multi", num_labels=3, multilabel=True)
    multi = torch.tensor([[1, 0, 1], [0, 0, 1]])
    out = model(**batch, labels=multi)
    assert model.heads.multi.config["head_type"] == "multilabel_classification"
    assert torch.allclose(
        out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, multi.float())
    )
    model.add_tagging_head("tag", num_labels=5)
    tags = torch.randint(0, 5, batch["input_ids"].shape)
    out = model(**batch, labels=tags)
    assert out.logits.shape == (2, 7, 5)
    keep = batch["attention_mask"].view(-1) == 1
    assert torch.allclose(
        out.loss, torch.nn.functional.cross_entropy(out.logits.view(-1, 5)[keep], tags.view(-1)[keep])
    )
    as_tuple = model(**batch, labels=tags, return_dict=False)
    assert torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)


def test_train_adapter_trains_the_adapter_and_the_head_of_the_same_name():
    model = flex()
    model.add_adapter("sst", config="seq_bn")
    model.add_classification_head("sst", num_labels=2)
    model.add_classification_head("other", num_labels=2)  # now the active head
    model.train_adapter("sst")
    assert model.active_head == "sst"
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {k for k in model.state_dict() if ".adapters.sst." in k or k.startswith("heads.sst.")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= trainable
    assert any(k.startswith("heads.sst.") for k in changed) and any(".adapters.sst." in k for k in changed)


@pytest.mark.parametrize("use_safetensors", [True, False])
def test_save_and_load_with_the_head_round_trips_exactly(use_safetensors, tmp_path):
    model = flex("roberta")
    model.add_adapter("sst", config="seq_bn")
    model.add_classification_head("sst", num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    with torch.no_grad():  # the base weights stay those of make_model
        for name, p in model.named_parameters():
            if ".adapters." in name or name.startswith("heads."):
                p.add_(torch.randn_like(p) * 0.05)
    model.set_active_adapters("sst")
    batch = inputs()
    expected = logits(model, batch)
    model.save_adapter(tmp_path, "sst", use_safetensors=use_safetensors)
    header = json.loads((tmp_path / "head_config.json").read_text())
    assert header["config"]["head_type"] == "classification" and header["config"]["num_labels"] == 3
    assert header["config"]["label2id"] == {"a": 0, "b": 1, "c": 2}
    assert header["model_class"] == "RobertaAdapterModel" and header["name"] == "sst"
    names = {"head": "model_head.safetensors" if use_safetensors else "pytorch_model_head.bin"}
    assert (tmp_path / names["head"]).is_file()
    fresh = adapterhub.AdapterModel(make_model("roberta", "base")).eval()  # same base weights (seed 0)
    assert fresh.load_adapter(tmp_path) == "sst"
    assert fresh.active_head == "sst"
    fresh.set_active_adapters("sst")
    assert torch.equal(logits(fresh, batch), expected)
    other = adapterhub.AdapterModel(make_model("roberta", "base")).eval()
    other.load_adapter(tmp_path, load_as="renamed", set_active=True)
    assert list(other.heads) == ["renamed"] and torch.equal(logits(other, batch), expected)
    head_only = adapterhub.AdapterModel(make_model("roberta", "base")).eval()
    assert head_only.load_head(tmp_path) == "sst"
    assert torch.equal(head_only.heads.sst[4].weight, model.heads.sst[4].weight)


def test_head_files_from_the_peer_layout(tmp_path):
    model = flex()
    model.add_adapter("x", config="seq_bn")
    model.add_classification_head("x", num_labels=2)
    model.save_adapter(tmp_path, "x")
    assert sorted(load_file(str(tmp_path / "model_head.safetensors"))) == [
        "heads.x.1.bias",
        "heads.x.1.weight",
        "heads.x.4.bias",
        "heads.x.4.weight",
    ]


def test_flexible_and_fixed_heads_do_not_mix(tmp_path):
    model = flex()
    model.add_adapter("x", config="seq_bn")
    model.add_classification_head("x", num_labels=3)
    model.save_adapter(tmp_path / "flex", "x")
    static = adapterhub.init(make_model("bert", "seqcls"))
    with pytest.raises(AdapterLoadError, match="flexible prediction head"):
        static.load_adapter(tmp_path / "flex")
    assert not static.has_adapters()
    assert static.load_adapter(tmp_path / "flex", with_head=False) == "x"

    static.save_adapter(tmp_path / "fixed", "x")
    fresh = flex()
    with pytest.raises(AdapterLoadError, match="fixed head of a BertForSequenceClassification"):
        fresh.load_adapter(tmp_path / "fixed")
    assert not fresh.has_adapters() and len(fresh.heads) == 0  # nothing half-applied
    assert fresh.load_adapter(tmp_path / "fixed", with_head=False) == "x"


def test_head_errors():
    model = flex()
    model.add_classification_head("a")
    with pytest.raises(AdapterExistsError, match="already exists"):
        model.add_classification_head("a")
    model.add_classification_head("a", num_labels=5, overwrite_ok=True)
    assert model.heads.a.config["num_labels"] == 5
    with pytest.raises(AdapterNotFoundError, match="no head named 'b'"):
        model.delete_head("b")
    with pytest.raises(AdapterNotFoundError):
        model.active_head = "b"
    with pytest.raises(AdapterConfigError, match="layers"):
        model.add_classification_head("c", layers=0)
    with pytest.raises(AdapterConfigError, match="invalid head name"):
        model.add_classification_head("a.b")
    with pytest.raises(AdapterConfigError, match="'double'.* torch.nn.Module attribute"):
        model.add_classification_head("double")  # heads.double would be nn.Module.double
    assert "double" not in model.heads
    with pytest.raises(AdapterConfigError, match="unsupported head type"):
        model.add_prediction_head_from_config("d", {"head_type": "dependency_parsing"})
    model.delete_head("a")
    assert model.active_head is None and "a" not in model.heads
    with pytest.raises(AdapterConfigError, match="no pooler"):
        flex("gpt2").add_classification_head("p", use_pooler=True)
    lm = flex("gpt2")
    with pytest.raises(AdapterConfigError, match="dropout_prob is not applied by causal_lm heads"):
        lm.add_causal_lm_head("lm", dropout_prob=0.1)  # the format has the option; no LM head applies it
    assert "lm" not in lm.heads
    lm.add_causal_lm_head("lm", dropout_prob=None)
    assert lm.heads.lm.config["dropout_prob"] is None
    with pytest.raises(AdapterConfigError, match="bare base model"):
        adapterhub.AdapterModel(make_model("bert", "seqcls"))


def test_from_config_and_from_pretrained(tmp_path):
    base = make_model("bert", "base")
    base.save_pretrained(tmp_path)
    loaded = adapterhub.AdapterModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    built = adapterhub.AdapterModel.from_pretrained(base.config)
    assert type(loaded).__name__ == type(built).__name__ == "BertAdapterModel"
    batch = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, base(**batch).last_hidden_state)
    with pytest.raises(TypeError, match="output_loading_info is not supported"):
        adapterhub.AdapterModel.from_pretrained(tmp_path, output_loading_info=True)


def test_activation_checkpointing_gives_the_same_gradients():
    model = adapterhub.AdapterModel(make_model("bert", "base"))
    model.add_adapter("a", config="seq_bn")
    model.add_adapter("c", config="compacter[reduction_factor=4]")
    model.add_adapter_fusion(["a", "c"])
    model.add_classification_head("a,c", num_labels=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter" in name or "shared_parameters" in name:
                p.add_(torch.randn_like(p) * 0.05)
    model.train_adapter_fusion(adapterhub.Fuse("a", "c"), unfreeze_adapters=True)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0

    def gradients():
        model.zero_grad()
        model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    assert any(k.startswith("heads.a,c.") for k in plain) and any("adapter_fusion_layer" in k for k in plain)
    assert any("shared_parameters.c.phm_rule" in k for k in plain)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = gradients()
    assert set(plain) == set(checkpointed)
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-7) for k in plain)


def test_question_answering_and_multiple_choice_heads(tmp_path):
    model = flex()
    batch = inputs()
    model.add_qa_head("qa")
    start, end = torch.tensor([1, 2]), torch.tensor([3, 40])  # 40: outside the input, ignored
    out = model(**batch, start_positions=start, end_positions=end)
    assert out.start_logits.shape == out.end_logits.shape == (2, 7)
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
        both = model.heads.qa[1](hidden)
    assert torch.allclose(out.start_logits, both[..., 0]) and torch.allclose(out.end_logits, both[..., 1])
    expected = (
        torch.nn.functional.cross_entropy(out.start_logits, start)
        + torch.nn.functional.cross_entropy(out.end_logits[:1], end[:1])
    ) / 2
    assert torch.allclose(out.loss, expected)

    model.add_multiple_choice_head("mc", num_choices=3)
    assert model.heads.mc.config["label2id"] == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    choices = {k: v.view(2, 3, 7) for k, v in inputs(seed=3, batch=6).items()}  # 2 questions x 3 choices
    labels = torch.tensor([2, 0])
    out = model(**choices, labels=labels)
    assert out.logits.shape == (2, 3)
    with torch.no_grad():
        flat = {k: v.reshape(6, 7) for k, v in choices.items()}
        first = model.base_model(**flat).last_hidden_state[:, 0]
        scores = model.heads.mc[4](torch.tanh(model.heads.mc[1](first))).view(2, 3)
    assert torch.allclose(out.logits, scores)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(scores, labels))

    model.add_adapter("qa", config="seq_bn")
    model.save_adapter(tmp_path, "qa")
    fresh = flex()
    fresh.load_adapter(tmp_path)
    assert fresh.heads.qa.config == model.heads.qa.config and fresh.active_head == "qa"
    assert torch.equal(fresh(**batch).start_logits, model(**batch, head="qa").start_logits)


@pytest.mark.parametrize("use_safetensors", [True, False])
def test_whole_model_checkpoint_round_trip(use_safetensors, tmp_path, caplog):
    model = flex("roberta")
    model.add_adapter("a", config="seq_bn")
    model.add_adapter("b", config="compacter[reduction_factor=4]")
    model.add_adapter_fusion(["a", "b"], name="ab", config="static")
    model.add_classification_head("ab", num_labels=3)
    model.add_tagging_head("tags", num_labels=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("roberta.") or "adapter" in name or "shared_parameters" in name:
                p.add_(torch.randn_like(p) * 0.05)
    setup = adapterhub.Fuse("a", "b", name="ab")
    model.set_active_adapters(setup)
    model.active_head = "ab"
    batch = inputs()
    expected = logits(model, batch)
    model.save_pretrained(tmp_path, use_safetensors=use_safetensors)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["RobertaAdapterModel"]
    assert config["adapters"]["fusions"] == {"ab": "static"} and config["adapters"]["fusion_name_map"] == {
        "ab": ["a", "b"]
    }
    assert sorted(config["prediction_heads"]) == ["ab", "tags"]
    with caplog.at_level("WARNING"):
        loaded = adapterhub.AdapterModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert (
        "LOAD REPORT" not in caplog.text and "not used" not in caplog.text
    )  # adapters and heads took theirs
    assert sorted(loaded.adapterhub_state.configs) == ["a", "b"] and sorted(loaded.heads) == ["ab", "tags"]
    assert not hasattr(loaded.config, "adapters") and not hasattr(loaded.config, "prediction_heads")
    loaded.set_active_adapters(setup)
    loaded.active_head = "ab"
    assert torch.equal(logits(loaded, batch), expected)
    # a checkpoint whose weights lack an adapter named in its config is refused, naming the keys
    from safetensors.torch import load_file, save_file

    if use_safetensors:
        weights = load_file(str(tmp_path / "model.safetensors"))
        save_file({**weights, "roberta.extra.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
        caplog.clear()
        with caplog.at_level("WARNING"):
            adapterhub.AdapterModel.from_pretrained(tmp_path)
        assert "not used by RobertaAdapterModel: roberta.extra.weight" in caplog.text
        save_file(
            {k: v for k, v in weights.items() if ".adapters.a." not in k}, str(tmp_path / "model.safetensors")
        )
        with pytest.raises(
            AdapterLoadError, match="missing keys: roberta.encoder.layer.0.output.adapters.a."
        ):
            adapterhub.AdapterModel.from_pretrained(tmp_path)

"""transformers.Trainer with adapterhub models: checkpoints hold only the trained adapter, head and fusion files,
resume continues bit-exactly, load_best_model_at_end restores the best adapter; gradient checkpointing gives the
same gradients with every preset and composition block. Tiny random models, a few steps each."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

import adapterhub
from tiny_models import collate_examples, inputs, make_model, random_token_examples

STEPS = 6


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        self.items = random_token_examples(n, seed)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def adapter_model(fusion: bool = False, flex: bool = False):
    """A tiny BERT classifier (dropout on: resuming must restore the RNG too) with adapter "a" set up for training,
    or with a fusion of "a" and "b" trained together with both adapters. ``flex``: an ``AdapterModel`` (flexible
    heads, not a Transformers ``PreTrainedModel``) with the classification head "a" instead of a static head."""
    if flex:
        model = adapterhub.AdapterModel(make_model("bert", "base", seed=0)).train()
        model.add_classification_head("a", num_labels=2)
    else:
        model = adapterhub.init(make_model("bert", "seqcls", seed=0, num_labels=2))
    model.add_adapter("a", config="seq_bn[reduction_factor=4]")
    if fusion:
        model.add_adapter("b", config="par_bn[reduction_factor=4]")
        model.add_adapter_fusion(["a", "b"])
        model.train_adapter_fusion(adapterhub.Fuse("a", "b"), unfreeze_adapters=True)
    else:
        model.train_adapter("a")
    return model


def trainer_for(model, folder, **overrides) -> Trainer:
    options = dict(
        output_dir=str(folder),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        warmup_steps=2,
        report_to=[],
        save_strategy="steps",
        save_steps=3,
        logging_steps=1,
        use_cpu=True,
        seed=7,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    options.update(overrides)
    return Trainer(
        model=model,
        args=TrainingArguments(**options),
        train_dataset=RandomTokens(40, seed=1),
        eval_dataset=RandomTokens(12, seed=2),
        data_collator=collate_examples,
    )


def trainable(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def losses(trainer: Trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


@pytest.mark.parametrize("fusion", [False, True], ids=["adapter", "fusion"])
def test_checkpoints_hold_only_the_trained_adapter_head_and_fusion_files(tmp_path, fusion):
    model = adapter_model(fusion)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k not in trainable(model)}
    trainer_for(model, tmp_path).train()
    folder = tmp_path / "checkpoint-3"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    adapter = {"adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"}
    expected = {f"a/{name}" for name in adapter} | {"adapter_setup.json", "model.safetensors"}
    if fusion:
        expected |= {f"b/{name}" for name in adapter}
        expected |= {"a,b/adapter_fusion_config.json", "a,b/model_adapter_fusion.safetensors"}
    trainer_files = {
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "training_args.bin",
    }
    assert files == expected | trainer_files
    # model.safetensors: exactly the weights that were trained, as they were at step 3 (not the base model)
    weights = load_file(folder / "model.safetensors")
    assert set(weights) == set(trainable(model))
    assert not any(key in frozen for key in weights)
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert f.metadata()["content"] == "adapterhub.trainable-weights"
    assert any("adapter_fusion_layer" in k for k in weights) == fusion
    final = load_file(tmp_path / f"checkpoint-{STEPS}" / "model.safetensors")
    assert all(torch.equal(final[k], v) for k, v in trainable(model).items())
    assert not all(torch.equal(final[k], weights[k]) for k in weights)  # step 3 is another state
    # the saved setup loads into a fresh model and computes what the model at step 3 computed
    at_step_3 = adapter_model(fusion)
    at_step_3.load_state_dict(weights, strict=False)
    at_step_3.eval()
    fresh = adapterhub.init(make_model("bert", "seqcls", seed=0, num_labels=2))
    setup, _ = fresh.load_adapter_setup(folder, set_active=True)
    assert setup.names() == (["a", "b"] if fusion else ["a"])
    batch = inputs()
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, at_step_3(**batch).logits, atol=1e-6)
    # the frozen base model was not touched
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())


@pytest.mark.parametrize("fusion", [False, True], ids=["adapter", "fusion"])
def test_flexible_head_checkpoints_hold_only_the_trained_weights(tmp_path, fusion):
    """An AdapterModel is no PreTrainedModel: the Trainer saves its state_dict(), which while it is set up for adapter
    training holds the adapters, fusion layer and head being trained only."""
    model = adapter_model(fusion, flex=True)
    every = set(full(model))
    trainer_for(model, tmp_path).train()
    folder = tmp_path / "checkpoint-3"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    trainer_files = {
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "training_args.bin",
    }
    assert files == {"model.safetensors"} | trainer_files
    weights = load_file(folder / "model.safetensors")
    assert set(weights) == set(trainable(model)) and set(weights) < every
    assert {k.split(".")[0] for k in weights} == {
        "bert",
        "heads",
    }  # the adapters inside the base model, the head
    assert all(".adapters." in k or "adapter_fusion_layer" in k for k in weights if k.startswith("bert."))
    assert any("adapter_fusion_layer" in k for k in weights) == fusion
    assert any(k.startswith("heads.a.") for k in weights)
    # state_dict gives every weight again when asked, or once no adapter training is set up
    assert set(model.state_dict(adapters_only=False)) == every
    plain = adapterhub.AdapterModel(make_model("bert", "base"))
    plain.add_adapter("a")
    assert set(plain.state_dict()) == set(full(plain))
    with pytest.raises(ValueError, match="train_adapter"):
        plain.state_dict(adapters_only=True)
    # the checkpoint restores the model at step 3 into a fresh one with the same set-up
    at_step_3 = adapter_model(fusion, flex=True)
    result = at_step_3.load_state_dict(weights, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    final = load_file(tmp_path / f"checkpoint-{STEPS}" / "model.safetensors")
    assert all(torch.equal(final[k], v) for k, v in trainable(model).items())
    assert not all(torch.equal(final[k], weights[k]) for k in weights)
    if not fusion:  # the restored adapter and head save and load like any other
        at_step_3.save_adapter(tmp_path / "a-at-3", "a")
        fresh = adapterhub.AdapterModel(make_model("bert", "base", seed=0)).eval()
        fresh.load_adapter(tmp_path / "a-at-3", set_active=True)
        batch = inputs()
        with torch.no_grad():
            assert torch.allclose(fresh(**batch).logits, at_step_3.eval()(**batch).logits, atol=1e-6)


def full(model) -> dict[str, torch.Tensor]:
    return torch.nn.Module.state_dict(model)


@pytest.mark.parametrize("flex", [False, True], ids=["static", "flex"])
def test_resume_from_a_checkpoint_continues_bit_exactly(tmp_path, caplog, flex):
    straight = adapter_model(flex=flex)
    reference = trainer_for(straight, tmp_path / "straight")
    reference.train()
    # a new process: the same base model and adapter set-up (its adapter initialised differently), then resume
    torch.manual_seed(123)
    resumed_model = adapter_model(flex=flex)
    assert not all(torch.equal(resumed_model.get_parameter(k), v) for k, v in trainable(straight).items())
    resumed = trainer_for(resumed_model, tmp_path / "resumed")
    with caplog.at_level("WARNING"):
        output = resumed.train(resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-3"))
    assert output.global_step == STEPS
    assert not [r for r in caplog.records if "missing keys" in r.getMessage()]
    after = trainable(resumed_model)
    assert all(torch.equal(after[k], v) for k, v in trainable(straight).items())
    # the history up to step 3 comes from the checkpoint; steps 4-6 were computed again, with the same losses
    assert losses(resumed) == losses(reference) and len(losses(reference)) == STEPS
    # the base model is as it was: the resumed model is the straight one, weight for weight
    assert all(torch.equal(v, full(resumed_model)[k]) for k, v in full(straight).items())


@pytest.mark.parametrize("flex", [False, True], ids=["static", "flex"])
def test_load_best_model_at_end_restores_the_best_adapter(tmp_path, flex):
    scores = iter([0.2, 0.9, 0.4])  # the evaluation at step 2 is the best one

    def compute_metrics(prediction):
        return {"score": next(scores)}

    model = adapter_model(flex=flex)
    trainer = trainer_for(
        model,
        tmp_path,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="score",
    )
    trainer.compute_metrics = compute_metrics
    trainer.train()
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-4")
    best = load_file(tmp_path / "checkpoint-4" / "model.safetensors")
    last = load_file(tmp_path / f"checkpoint-{STEPS}" / "model.safetensors")
    now = trainable(model)
    assert set(now) == set(best)
    assert all(torch.equal(now[k], best[k]) for k in best)
    assert not all(torch.equal(now[k], last[k]) for k in last)
    # save_model afterwards writes the restored adapter, ready to load (flexible heads: the trained weights)
    trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final" / "config.json").exists()
    if flex:
        final = load_file(tmp_path / "final" / "model.safetensors")
        assert set(final) == set(best) and all(torch.equal(final[k], best[k]) for k in best)
        return
    config = json.loads((tmp_path / "final" / "a" / "adapter_config.json").read_text())
    assert config["name"] == "a"


def test_save_pretrained_writes_the_whole_model_when_asked_or_not_training(tmp_path):
    model = adapter_model()
    model.save_pretrained(tmp_path / "whole", adapters_only=False)
    weights = load_file(tmp_path / "whole" / "model.safetensors")
    assert set(weights) == set(model.state_dict())
    assert (tmp_path / "whole" / "config.json").is_file()
    plain = adapterhub.init(make_model("bert", "seqcls", num_labels=2))
    plain.add_adapter("a")
    with pytest.raises(ValueError, match="train_adapter"):
        plain.save_pretrained(tmp_path / "x", adapters_only=True)
    plain.save_pretrained(
        tmp_path / "plain"
    )  # no adapter training set up: the whole model, as Transformers does
    assert set(load_file(tmp_path / "plain" / "model.safetensors")) == set(plain.state_dict())


def test_non_strict_load_reports_missing_trainable_weights_only(tmp_path):
    model = adapter_model()
    weights = trainable(model)
    dropped = next(iter(weights))
    result = model.load_state_dict({k: v for k, v in weights.items() if k != dropped}, strict=False)
    assert result.missing_keys == [dropped] and result.unexpected_keys == []
    # a partial dict of other (frozen) weights: torch's report, unchanged
    base_key = "bert.embeddings.word_embeddings.weight"
    result = model.load_state_dict({base_key: model.state_dict()[base_key]}, strict=False)
    assert dropped in result.missing_keys and "bert.pooler.dense.weight" in result.missing_keys
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(weights)


# ------------------------------------------------------------------------------------------ gradient checkpointing

PRESETS = [
    "seq_bn",
    "double_seq_bn",
    "par_bn",
    "scaled_par_bn",
    "seq_bn_inv",
    "double_seq_bn_inv",
    "compacter[reduction_factor=4]",
    "lora[r=4]",
    "ia3",
    "dora",
    "vera[r=8,target_modules='all-linear']",
    "prefix_tuning",
    "prompt_tuning",
    "loreft[suffix_positions=2]",
    "mam",
    "unipelt",
]


def _gradients(model, batch, labels) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(**batch, labels=labels).loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("setup", PRESETS + ["stack", "fuse"])
def test_gradient_checkpointing_gives_the_same_gradients(arch, setup):
    if setup == "prompt_tuning" and arch != "bert":  # decoders: the prompt goes before the input embeddings
        setup = "prompt_tuning[input_embeddings=True]"
    model = adapterhub.init(make_model(arch, "seqcls", num_labels=2))
    if setup in ("stack", "fuse"):
        model.add_adapter("a", config="seq_bn[reduction_factor=4]")
        # (in a Stack, a parallel adapter reads the layer's input, as in `adapters`: the one below it would get
        # no gradient, so the stack here holds two sequential ones)
        model.add_adapter("b", config="par_bn[reduction_factor=4]" if setup == "fuse" else "double_seq_bn")
        if setup == "fuse":
            model.add_adapter_fusion(["a", "b"])
            model.train_adapter_fusion(adapterhub.Fuse("a", "b"), unfreeze_adapters=True)
        else:
            model.train_adapter(adapterhub.Stack("a", "b"))
    else:
        model.add_adapter("a", config=setup)
        model.train_adapter("a")
    _no_dropout(model)  # (the fusion layers' dropout too)
    with torch.no_grad():  # adapters start as (near) identities: make every path carry a gradient
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    batch, labels = inputs(), torch.tensor([0, 1])
    plain = _gradients(model, batch, labels)
    assert set(plain) == {k for k, p in model.named_parameters() if p.requires_grad}
    for reentrant in (True, False):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
        assert model.is_activation_checkpointing
        checkpointed = _gradients(model, batch, labels)
        model.activation_checkpointing_disable()
        assert set(checkpointed) == set(plain)
        for key, grad in plain.items():
            torch.testing.assert_close(checkpointed[key], grad, rtol=1e-5, atol=1e-7)


def test_trainer_with_gradient_checkpointing_trains_the_same_adapter(tmp_path):
    results = []
    for checkpointing in (False, True):
        model = _no_dropout(adapter_model())
        trainer = trainer_for(
            model, tmp_path / str(checkpointing), save_strategy="no", gradient_checkpointing=checkpointing
        )
        trainer.train()
        assert model.is_activation_checkpointing == checkpointing
        results.append(trainable(model))
    assert set(results[0]) == set(results[1])
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, rtol=1e-4, atol=1e-6)

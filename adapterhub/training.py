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
    "lr_factor",
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

    def __post_init__(self) -> None:
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
    dev_accuracy: float | None = None


@dataclasses.dataclass
class TrainResult:
    steps: int
    epochs: float
    examples: int
    seconds: float
    final_loss: float
    stopped_by: str  # "steps" (the planned epochs or max_steps) or "time"
    losses: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[tuple[int, float]] = dataclasses.field(default_factory=list)


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


@torch.inference_mode()
def predict_logits(
    model: nn.Module, features: Sequence[dict], batch_size: int = 128, pad_token_id: int = 0
) -> torch.Tensor:
    """Logits of every example, in the order of ``features`` (batches sorted by length for speed)."""
    was_training = model.training
    model.eval()
    device = _device(model)
    lengths = [len(f["input_ids"]) for f in features]
    batches = length_bucketed_batches(lengths, batch_size, shuffle=False)
    out: list[torch.Tensor | None] = [None] * len(features)
    try:
        for indices, batch in zip(batches, iterate(features, None, batches, pad_token_id)):
            logits = _logits(model(**{k: v.to(device) for k, v in batch.items()})).float().cpu()
            for i, row in zip(indices, logits):
                out[i] = row
    finally:
        model.train(was_training)
    return torch.stack(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module,
    features: Sequence[dict],
    labels: Sequence[int],
    batch_size: int = 128,
    pad_token_id: int = 0,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy loss on labelled examples."""
    logits = predict_logits(model, features, batch_size, pad_token_id)
    target = torch.tensor(list(labels), dtype=torch.long)
    return {
        "accuracy": (logits.argmax(-1) == target).float().mean().item(),
        "loss": F.cross_entropy(logits, target).item(),
        "examples": len(target),
    }


def train(
    model: nn.Module,
    features: Sequence[dict],
    labels: Sequence[int],
    args: TrainingArgs | None = None,
    *,
    dev: tuple[Sequence[dict], Sequence[int]] | None = None,
    pad_token_id: int = 0,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require gradients on ``features`` / ``labels``.

    ``features`` come from :func:`adapterhub.data.encode`. ``on_step`` is called after every optimizer step
    (for progress bars and logs). With ``dev`` and ``args.eval_every``, the dev accuracy is measured on the way.
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
        return _loop(model, features, labels, args, params, planned, dev, pad_token_id, on_step, context)
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


def _loop(model, features, labels, args, params, planned, dev, pad_token_id, on_step, context) -> TrainResult:
    runner = _replicate(model, context)
    device = _device(model)
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    lengths = [len(f["input_ids"]) for f in features]
    model.train()
    result = TrainResult(0, 0.0, 0, 0.0, float("nan"), "steps")
    recent: list[float] = []
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
            loss = F.cross_entropy(logits.float(), target) * weight
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
            dev_accuracy = None
            if dev is not None and args.eval_every and step % args.eval_every == 0:
                dev_accuracy = evaluate(model, dev[0], dev[1], args.eval_batch_size, pad_token_id)["accuracy"]
                result.evaluations.append((step, dev_accuracy))
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
                        dev_accuracy,
                    )
                )
        epoch += 1
    result.steps = step
    result.epochs = result.examples / len(features)
    result.seconds = time.perf_counter() - start
    result.final_loss = sum(recent) / len(recent) if recent else float("nan")
    return result


def load_classifier(model_path: str | Path, labels: list[str], attention: str | None = None):
    """(model, tokenizer): a sequence classifier with ``len(labels)`` labels, offline for local folders.
    ``attention``: the Transformers attention implementation ("eager", "sdpa"; None: the library's default)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = Path(model_path).is_dir()
    id2label = {i: name for i, name in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=local)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoders: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_path),
        num_labels=len(labels),
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
        local_files_only=local,
        **({"attn_implementation": attention} if attention else {}),
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer

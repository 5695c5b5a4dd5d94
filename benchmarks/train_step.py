"""Training step per adaptation method on a BERT-base-sized model, against full fine-tuning and the frozen backbone.

Variants, each in its own worker process (so peak memory is per variant):

* ``full``: full fine-tuning, every weight trainable;
* ``frozen``: the frozen-backbone limit: the same model with no adapter, every backbone weight frozen (only the
  classification head trains, as it does with an adapter), and the embedding output made to require grad so
  that the backward pass runs through all layers down to the embeddings: the least work any adapter method
  can do;
* any adapter config string (``seq_bn``, ``double_seq_bn``, ``lora``, ``dora``, ``ia3``, ``prefix_tuning``,
  ``prompt_tuning``, ``vera``, ``compacter``, ``lora[r=16,alpha=32]``, ...): ``adapterhub.init`` +
  ``add_adapter`` + ``train_adapter`` (adapter + head). Every adapter variant is compared with ``frozen`` and
  ``full`` when they run too.

A step is ``zero_grad`` + forward with labels (cross-entropy on the [CLS] pooler classifier) + ``backward`` +
``AdamW.step`` over the trainable parameters, on a fixed random batch, dropout on (train mode).

The workers run in lockstep: all are started and build their model first, then the parent asks them for one
step at a time, in turn (the order rotates every round), so that only one of them computes at any moment and
the steps of all variants are spread over the same stretch of time. On a machine shared with other jobs this
cancels drift in the background load step by step; the ratio of two variants is reported both as the ratio
of their medians and as the median of the per-round ratios (paired steps, a few seconds apart).

Time: wall clock per step (``time.perf_counter``), median over ``--steps`` rounds after ``--warmup`` rounds;
CPU time per step (``time.process_time``, all threads of the worker) is shown too. Peak memory: each worker's
peak resident set size during the timed steps (``VmHWM`` of ``/proc/self/status``, reset through
``/proc/self/clear_refs`` after warm-up, so it counts weights, gradients, optimizer state and activations, all
that is resident), next to the whole-process ``ru_maxrss``.

    .venv/bin/python benchmarks/train_step.py                       # 4 variants, 20 timed rounds
    .venv/bin/python benchmarks/train_step.py --variants frozen,seq_bn --steps 30
    .venv/bin/python benchmarks/train_step.py --variants "full,frozen,seq_bn,lora,lora[r=16,alpha=32],ia3,prefix_tuning,prompt_tuning,vera,compacter"
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VARIANTS = ["full", "frozen", "seq_bn", "double_seq_bn"]  # the default run
REFERENCES = ("frozen", "full")  # the variants without an adapter; every other variant is a config string
TAG = "@@bench "
TARGETS = {("seq_bn", "frozen"): 1.05, ("seq_bn", "full"): 0.63}


# ----------------------------------------------------------------------------------------------- worker side


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


def build_variant(variant: str, layers: int):
    from _common import build_model

    model = build_model(layers)
    model.train()
    if variant == "frozen":
        for param in model.parameters():
            param.requires_grad = False
        for param in model.classifier.parameters():
            param.requires_grad = True
        # The embedding output requires grad, so backward runs through every layer down to it.
        model.bert.embeddings.register_forward_hook(lambda module, inputs, output: output.requires_grad_())
    elif variant not in REFERENCES:
        import adapterhub

        adapterhub.init(model)
        model.add_adapter("bench", config=variant)
        model.train_adapter("bench")
    return model


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from _common import make_inputs

    model = build_variant(args.worker, args.layers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    input_ids, attention_mask, labels = make_inputs(args.batch, args.seq)

    def reply(payload: dict) -> None:
        sys.stdout.write(TAG + json.dumps(payload) + "\n")
        sys.stdout.flush()

    peak_reset = False
    reply(
        {
            "ready": True,
            "trainable": sum(p.numel() for p in trainable),
            "total": sum(p.numel() for p in model.parameters()),
        }
    )
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            w0, c0 = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=True)
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            loss = loss.item()
            reply({"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "loss": loss})
        elif command == "reset_peak":
            peak_reset = _reset_peak_rss()
            reply({"reset": peak_reset})
        elif command == "done":
            reply(
                {
                    "peak_rss_mib": (_vm_hwm_kib() or 0) / 1024 if peak_reset else None,
                    "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
            )
            return


# ----------------------------------------------------------------------------------------------- parent side


def parse_variants(text: str) -> list[str]:
    """The comma-separated variants (commas inside a config string's brackets or quotes do not split), each
    ``full``, ``frozen`` or a config string that the library resolves; anything else ends the run here."""
    from adapterhub import AdapterError, resolve_config
    from adapterhub.library.configs import _split_top_level

    try:
        variants = [v.strip() for v in _split_top_level(text) if v.strip()]
    except AdapterError as error:
        raise SystemExit(f"--variants {text!r}: {error}") from None
    if not variants:
        raise SystemExit("--variants names no variant")
    if len(set(variants)) != len(variants):
        raise SystemExit(f"--variants names a variant twice: {variants}")
    for variant in variants:
        if variant not in REFERENCES:
            try:
                resolve_config(variant)
            except AdapterError as error:
                raise SystemExit(
                    f"variant {variant!r} is neither full, frozen nor an adapter config: {error}"
                ) from None
    return variants


class Worker:
    def __init__(self, variant: str, args):
        self.variant = variant
        self.log = tempfile.TemporaryFile(mode="w+")
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            variant,
            "--batch",
            str(args.batch),
            "--seq",
            str(args.seq),
            "--layers",
            str(args.layers),
            "--threads",
            str(args.threads),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1
        )
        self.info = self.read()

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        self.log.seek(0)
        raise SystemExit(
            f"worker {self.variant} ended (exit {self.process.wait()}):\n{self.log.read()[-4000:]}"
        )

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> dict:
        result = self.ask("done")
        self.process.wait()
        self.log.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step of every variant each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the raw step times to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    from _common import iqr, machine_line, median

    variants = parse_variants(args.variants)
    print(machine_line())
    print(
        f"BERT-base-sized BertForSequenceClassification, {args.layers} layers, batch {args.batch} x seq "
        f"{args.seq}, {args.threads} threads; {args.steps} timed rounds after {args.warmup} warm-up rounds; "
        f"one process per variant, one step each in turn",
        flush=True,
    )
    started = time.time()
    workers = {}
    try:
        for variant in variants:  # built one after another, so that they do not compete
            workers[variant] = Worker(variant, args)
        infos = {variant: w.info for variant, w in workers.items()}
        for _ in range(args.warmup):
            for variant in variants:
                workers[variant].ask("step")
        for variant in variants:
            workers[variant].ask("reset_peak")
        wall = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        loads = []
        for index in range(args.steps):
            shift = index % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                result = workers[variant].ask("step")
                wall[variant].append(result["wall"])
                cpu[variant].append(result["cpu"])
            loads.append(os.getloadavg()[0])
            if (index + 1) % 5 == 0:
                print(f"  {index + 1}/{args.steps} rounds, load {loads[-1]:.2f}", flush=True)
        final = {variant: workers.pop(variant).close() for variant in variants}
    finally:
        for w in workers.values():
            w.process.kill()

    print()
    width = max(15, *(len(v) + 2 for v in variants))
    header = (
        f"{'variant':<{width}}{'trainable':>13}{'wall s/step':>13}{'IQR':>16}{'cpu s/step':>12}"
        f"{'peak RSS MiB':>14}{'maxrss MiB':>12}"
    )
    print(header)
    print("-" * len(header))
    for variant in variants:
        low, high = iqr(wall[variant])
        peak = final[variant]["peak_rss_mib"]
        print(
            f"{variant:<{width}}{infos[variant]['trainable']:>13,}{median(wall[variant]):>13.3f}"
            f"{f'{low:.3f}-{high:.3f}':>16}{median(cpu[variant]):>12.3f}"
            f"{(f'{peak:.0f}' if peak else 'n/a'):>14}{final[variant]['maxrss_mib']:>12.0f}"
        )
    print()
    pairs = [
        (a, b)
        for a in [v for v in variants if v not in REFERENCES] + ["frozen"]
        for b in REFERENCES
        if a != b and a in wall and b in wall
    ]
    for a, b in pairs:
        of_medians = median(wall[a]) / median(wall[b])
        paired = median([x / y for x, y in zip(wall[a], wall[b])])
        cpu_ratio = median(cpu[a]) / median(cpu[b])
        pa, pb = final[a]["peak_rss_mib"], final[b]["peak_rss_mib"]
        line = (
            f"{a} / {b}: step {of_medians:.3f}x (median of per-round ratios {paired:.3f}x, cpu time "
            f"{cpu_ratio:.3f}x), peak RSS {(f'{pa / pb:.2f}x' if pa and pb else 'n/a')}"
        )
        target = TARGETS.get((a, b))
        if target is not None:
            met = of_medians <= target and paired <= target
            line += f"; target <= {target:.2f}x: {'met' if met else 'MISSED'}"
        print(line)
    print(
        f"load average during the timed rounds: min {min(loads):.2f}, median {median(loads):.2f}, "
        f"max {max(loads):.2f}; total time {time.time() - started:.0f} s"
    )
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"args": vars(args), "wall": wall, "cpu": cpu, "final": final, "loads": loads}, f)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()

"""Inference latency of an active adapter (seq_bn unless --config says otherwise) vs the bare model.

One BERT-base-sized ``BertForSequenceClassification`` (random init, no download) in ``eval()`` mode under
``torch.inference_mode()``, ``adapterhub.init`` + a ``seq_bn`` adapter. The bare model is the same model with
no active adapter (``set_active_adapters(None)``): the library then installs no hooks at all, so it runs the
unmodified Transformers forward on the same weights in the same memory. The two modes alternate call by call
(bare, adapter, adapter, bare, ...) so that drift in the machine's load hits both alike; each call is timed on
its own. Printed per shape: median latency of each mode, the ratio of the medians, and the median of the
per-pair ratios (each adapter call against the bare call next to it).

    .venv/bin/python benchmarks/inference.py
    .venv/bin/python benchmarks/inference.py --pairs-large 40 --pairs-small 600
    .venv/bin/python benchmarks/inference.py --shapes 1x16      # one shape only
    .venv/bin/python benchmarks/inference.py --config lora      # LoRA: unmerged and merged (merge_adapter)

With a method that can merge (LoRA, DoRA, IA3) a third mode runs the adapter merged into the weights
(``merge_adapter`` before the call, ``reset_adapter`` after it, both outside the timed region).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TARGET_OVERHEAD = 0.03


def measure(model, shape: tuple[int, int], pairs: int, warmup: int, merged: bool = False) -> dict:
    import torch

    from _common import make_inputs

    input_ids, attention_mask, _ = make_inputs(*shape)
    modes: dict[str, str | None] = {"bare": None, "adapter": "bench"}  # mode -> its active setup
    if merged:
        modes["merged"] = None
    times: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}

    def call(mode: str) -> None:
        model.set_active_adapters(modes[mode])
        if mode == "merged":
            model.merge_adapter("bench")
        w0, c0 = time.perf_counter(), time.process_time()
        model(input_ids=input_ids, attention_mask=attention_mask)
        times[mode].append(time.perf_counter() - w0)
        cpu[mode].append(time.process_time() - c0)
        if mode == "merged":
            model.reset_adapter()

    with torch.inference_mode():
        for _ in range(warmup):
            for mode in modes:
                call(mode)
        times = {name: [] for name in modes}
        cpu = {name: [] for name in modes}
        for index in range(pairs):
            order = list(modes) if index % 2 == 0 else list(reversed(modes))
            for mode in order:
                call(mode)
    return {"times": times, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs-large", type=int, default=30, help="timed pairs at batch 8 x seq 128")
    parser.add_argument("--pairs-small", type=int, default=400, help="timed pairs at batch 1 x seq 16")
    parser.add_argument("--shapes", default="8x128,1x16", help="batch x seq shapes to run, comma-separated")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default="seq_bn", help="adapter config string (e.g. lora, dora, ia3)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import adapterhub
    from _common import build_model, iqr, machine_line, median

    print(machine_line())
    model = build_model(args.layers).eval()
    adapterhub.init(model)
    model.add_adapter("bench", config=args.config)
    merged = adapterhub.resolve_config(args.config).method in ("lora", "ia3")
    print(
        f"BERT-base-sized BertForSequenceClassification, {args.layers} layers, {args.threads} threads, "
        f"eval + inference_mode; {args.config} adapter: "
        f"{sum(p.numel() for p in model.adapterhub_state.adapter_parameters('bench').values()):,} params"
    )
    shapes = [
        tuple(int(n) for n in item.lower().split("x")) for item in args.shapes.split(",") if item.strip()
    ]
    for shape in shapes:
        pairs = args.pairs_large if shape[0] * shape[1] > 256 else args.pairs_small
        result = measure(model, shape, pairs, args.warmup, merged=merged)
        bare = result["times"]["bare"]
        for mode in [m for m in result["times"] if m != "bare"]:
            adapter = result["times"][mode]
            paired = [a / b for a, b in zip(adapter, bare)]
            ratio = median(adapter) / median(bare)
            cpu_ratio = median(result["cpu"][mode]) / median(result["cpu"]["bare"])
            verdict = "met" if ratio - 1 <= TARGET_OVERHEAD else "MISSED"
            lo, hi = iqr(paired)
            label = args.config if mode == "adapter" else f"{args.config} merged"
            print(
                f"batch {shape[0]} x seq {shape[1]}: {pairs} pairs; bare {median(bare) * 1e3:.2f} ms, "
                f"{label} {median(adapter) * 1e3:.2f} ms; overhead {100 * (ratio - 1):+.2f}% (median of "
                f"paired ratios {100 * (median(paired) - 1):+.2f}%, IQR {100 * (lo - 1):+.1f}..{100 * (hi - 1):+.1f}%; "
                f"cpu time {100 * (cpu_ratio - 1):+.2f}%) target <= +{100 * TARGET_OVERHEAD:.0f}%: {verdict}",
                flush=True,
            )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

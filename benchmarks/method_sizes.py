"""Trainable parameters and file size per adaptation method on BERT-base, next to the published figures.

Not a timing benchmark: the numbers are deterministic. One ``BertModel(BertConfig())`` (BERT-base, random init,
no download; no task head, so only the adapter itself counts), ``adapterhub.init``; for each method
``add_adapter`` + ``train_adapter`` (trainable parameters = what an optimizer would update), then
``save_adapter(..., with_head=False)`` (safetensors) and the size of the weights file, then ``delete_adapter``.
Prefix tuning is shown as trained (with its reparametrisation MLP) and after ``eject_prefix_tuning`` (what
inference needs). Methods whose preset this library does not register are left out with a note.

    .venv/bin/python benchmarks/method_sizes.py                    # prints the markdown table
    .venv/bin/python benchmarks/method_sizes.py --output sizes.md  # and writes it to a file
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# (label, config string, published figure, its source). The published figures come from each method's paper;
# where the paper measured another model, the figure says which.
METHODS = [
    (
        "seq_bn",
        "seq_bn",
        "0.9M parameters, 3.5 MB (reduction factor 16, BERT-base)",
        "Pfeiffer et al. 2020, AdapterHub (EMNLP demos), table of parameters per reduction factor",
    ),
    (
        "double_seq_bn",
        "double_seq_bn",
        "3.6 % of the parameters per task (BERT-Large, bottleneck 8-256)",
        "Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP",
    ),
    (
        "par_bn",
        "par_bn",
        "-",
        "He et al. 2022, Towards a Unified View of Parameter-Efficient Transfer Learning",
    ),
    ("scaled_par_bn", "scaled_par_bn", "-", "He et al. 2022"),
    ("seq_bn_inv", "seq_bn_inv", "-", "Pfeiffer et al. 2020, MAD-X"),
    (
        "compacter",
        "compacter",
        "0.073 % (T5-base)",
        "Karimi Mahabadi et al. 2021, Compacter, Table 1",
    ),
    (
        "compacter++",
        "compacter++",
        "0.047 % (T5-base)",
        "Karimi Mahabadi et al. 2021, Compacter, Table 1",
    ),
    (
        "lora",
        "lora",
        "0.3M (RoBERTa-base, r=8 on W_q, W_v)",
        "Hu et al. 2022, LoRA, Table 2",
    ),
    ("dora", "dora", "-", "Liu et al. 2024, DoRA (LoRA + one magnitude per output feature)"),
    ("ia3", "ia3", "about 0.01 % (T0, 3B)", "Liu et al. 2022, Few-Shot PEFT is Better and Cheaper than ICL"),
    (
        "prefix_tuning",
        "prefix_tuning",
        "0.1 % (GPT-2 / BART, the prefixes kept after training)",
        "Li and Liang 2021, Prefix-Tuning",
    ),
    (
        "prefix_tuning, ejected",
        "prefix_tuning",
        "0.1 % (GPT-2 / BART, the prefixes kept after training)",
        "Li and Liang 2021, Prefix-Tuning",
    ),
    ("prefix_tuning_flat", "prefix_tuning_flat", "-", "Li and Liang 2021"),
    (
        "prompt_tuning",
        "prompt_tuning",
        "prompt length x hidden size; under 0.01 % for models over 1B",
        "Lester et al. 2021, The Power of Scale for Parameter-Efficient Prompt Tuning",
    ),
    (
        "vera",
        "vera",
        "43K (RoBERTa-base, r=1024 on W_q, W_v)",
        "Kopiczko et al. 2024, VeRA, Table 2",
    ),
    ("loreft", "loreft", "0.015 % (RoBERTa-base, GLUE)", "Wu et al. 2024, ReFT"),
    ("noreft", "noreft", "-", "Wu et al. 2024, ReFT"),
    ("direft", "direft", "-", "Wu et al. 2024, ReFT"),
    ("mam", "mam", "-", "He et al. 2022, Towards a Unified View of Parameter-Efficient Transfer Learning"),
    ("unipelt", "unipelt", "-", "Mao et al. 2022, UniPELT"),
]


def _config_summary(config) -> str:
    """The settings that decide the size of an adapter, as ``key=value`` (those the config has)."""
    keys = (
        "reduction_factor",
        "mh_adapter",
        "output_adapter",
        "inv_adapter",
        "phm_dim",
        "r",
        "attn_matrices",
        "intermediate_lora",
        "output_lora",
        "target_modules",
        "use_dora",
        "prefix_length",
        "bottleneck_size",
        "flat",
        "prompt_length",
        "layers",
        "prefix_positions",
        "suffix_positions",
    )
    parts = []
    for config_part in getattr(config, "configs", None) or [config]:
        values = config_part.to_dict() if hasattr(config_part, "to_dict") else {}
        for key in keys:
            if key == "phm_dim" and not values.get("phm_layer"):
                continue
            if key in values and values[key] not in (None, False, []):
                parts.append(f"{key}={values[key]}")
    return ", ".join(parts)


def measure(model, label: str, config_string: str, folder: Path) -> dict:
    import adapterhub

    name = "m"
    model.add_adapter(name, config=config_string)
    try:
        if label.endswith("ejected"):
            model.eject_prefix_tuning(name)
        model.train_adapter(name)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        target = folder / label.replace(" ", "_").replace(",", "")
        model.save_adapter(target, name, with_head=False)
        weights = sorted(target.glob("*.safetensors"))
        return {
            "label": label,
            "config": _config_summary(adapterhub.resolve_config(config_string)),
            "trainable": trainable,
            "bytes": sum(p.stat().st_size for p in weights),
            "files": [p.name for p in weights],
        }
    finally:
        model.delete_adapter(name)
        model.eval()


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1024:,.1f} KiB" if num_bytes < 1024 * 1024 else f"{num_bytes / 1024**2:,.2f} MiB"


def table(rows: list[dict], base: int) -> str:
    lines = [
        "| method | config (size-relevant settings) | trainable parameters | % of BERT-base | safetensors file | "
        "published figure | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['config'] or 'defaults'} | {row['trainable']:,} | "
            f"{100 * row['trainable'] / base:.3f} % | {_size(row['bytes'])} ({row['bytes']:,} B) | "
            f"{row['published']} | {row['source']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args()

    import torch
    from transformers import BertConfig, BertModel

    import adapterhub

    torch.manual_seed(0)
    model = adapterhub.init(BertModel(BertConfig()))
    model.eval()
    base = sum(p.numel() for p in model.parameters())
    known = set(adapterhub.preset_names())
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, config_string, published, source in METHODS:
            if config_string not in known:
                skipped.append(label)
                continue
            row = measure(model, label, config_string, Path(tmp))
            rows.append({**row, "published": published, "source": source})
    text = (
        f"BERT-base (`BertModel(BertConfig())`, {base:,} parameters), adapterhub {adapterhub.__version__}, "
        f"torch {torch.__version__}; fp32 weights, no task head.\n\n{table(rows, base)}\n"
    )
    if skipped:
        text += f"\nNot registered in this library (left out): {', '.join(skipped)}.\n"
    print(text)
    if args.output:
        with open(args.output + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.output + ".tmp", args.output)


if __name__ == "__main__":
    sys.exit(main())

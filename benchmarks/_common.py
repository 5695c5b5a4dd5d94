"""Shared pieces of the core-library benchmarks: the BERT-base-sized model, inputs, machine facts, statistics."""

from __future__ import annotations

import os
import platform
import statistics

import torch

BERT_BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    vocab_size=30522,
    max_position_embeddings=512,
)


def build_model(num_layers: int = 12, seed: int = 0):
    """A randomly initialised BERT-base-sized ``BertForSequenceClassification`` (2 labels): no download."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(**{**BERT_BASE, "num_hidden_layers": num_layers}, num_labels=2)
    return BertForSequenceClassification(config)


def make_inputs(batch: int, seq: int, vocab: int = BERT_BASE["vocab_size"], seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    return input_ids, attention_mask, labels


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    import transformers

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"transformers {transformers.__version__}, python {platform.python_version()}; "
        f"torch threads {torch.get_num_threads()}; load average {load}"
    )


def median(values) -> float:
    return statistics.median(values)


def iqr(values) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]

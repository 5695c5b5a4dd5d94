"""Evaluation metrics of the training tasks, in plain Python and torch (no scikit-learn or SciPy needed).

* classification: ``accuracy``, ``f1`` (of label 1 for two labels, else macro), ``macro_f1``, ``matthews``
  (Matthews correlation, as GLUE reports for CoLA);
* regression: ``pearson``, ``spearman`` (ranks of ties averaged), ``mse``;
* token tagging: ``accuracy`` over tokens and the entity-level ``f1`` / ``precision`` / ``recall`` of seqeval's
  default mode (IOB1/IOB2/IOE/IOBES prefixes; an entity counts only if its type and both ends are right).
  Tag sets without prefixes (POS tags) have no entities: their ``f1`` is the micro F1 over tokens, i.e. accuracy.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = [
    "accuracy",
    "classification_metrics",
    "entities",
    "f1_scores",
    "matthews",
    "pearson",
    "regression_metrics",
    "spearman",
    "tagging_metrics",
]


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    if len(predictions) != len(labels) or not len(labels):
        raise ValueError(
            f"need as many predictions as labels, and at least one: {len(predictions)} / {len(labels)}"
        )
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def f1_scores(predictions: Sequence[int], labels: Sequence[int], num_labels: int) -> dict[str, float]:
    """``f1``: the F1 of label 1 with two labels (GLUE's MRPC/QQP convention), the macro F1 with more;
    ``macro_f1``: the mean F1 over the labels."""
    per_label = []
    for c in range(num_labels):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        per_label.append(_f1(tp, fp, fn))
    macro = sum(per_label) / len(per_label)
    return {"f1": per_label[1] if num_labels == 2 else macro, "macro_f1": macro}


def matthews(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation coefficient (the multi-class form of Gorodkin; the usual one for two labels)."""
    classes = sorted(set(labels) | set(predictions))
    n = len(labels)
    correct = sum(p == y for p, y in zip(predictions, labels))
    true_counts = [sum(y == c for y in labels) for c in classes]
    pred_counts = [sum(p == c for p in predictions) for c in classes]
    covariance = correct * n - sum(t * p for t, p in zip(true_counts, pred_counts))
    spread = math.sqrt((n * n - sum(p * p for p in pred_counts)) * (n * n - sum(t * t for t in true_counts)))
    return covariance / spread if spread else 0.0


def classification_metrics(predictions: Sequence[int], labels: Sequence[int], num_labels: int) -> dict:
    return {
        "accuracy": accuracy(predictions, labels),
        **f1_scores(predictions, labels, num_labels),
        "matthews": matthews(predictions, labels),
    }


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError(f"Pearson correlation needs two equally long series of 2+ values: {n} / {len(y)}")
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else 0.0


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(_ranks(x), _ranks(y))


def regression_metrics(predictions: Sequence[float], labels: Sequence[float]) -> dict:
    mse = sum((p - y) ** 2 for p, y in zip(predictions, labels)) / len(labels)
    return {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels), "mse": mse}


def _split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of an IOB/IOBES/BILOU tag: "B-PER" -> ("B", "PER"), "O" -> ("O", ""); U/L read as S/E."""
    if tag in ("O", ""):
        return "O", ""
    if len(tag) > 2 and tag[0] in "BIESUL" and tag[1] in "-_":
        return {"U": "S", "L": "E"}.get(tag[0], tag[0]), tag[2:]
    return "I", tag  # a bare type continues the entity of that type


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if tag in ("E", "I") and prev_tag in ("E", "S", "O"):
        return True
    return tag != "O" and prev_type != type_


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) spans of a tag sequence, read as conlleval and seqeval's default mode do."""
    found = set()
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        tag, type_ = _split_tag(chunk)
        if _ends(prev_tag, tag, prev_type, type_):
            found.add((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return found


def _has_prefixes(labels: Sequence[Sequence[str]]) -> bool:
    return any(len(t) > 2 and t[0] in "BIESUL" and t[1] in "-_" for sentence in labels for t in sentence)


def tagging_metrics(predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> dict:
    """Token accuracy and entity-level precision, recall and F1 (micro over all sentences)."""
    tokens = correct = 0
    tp = n_pred = n_true = 0
    has_entities = _has_prefixes(labels)
    for pred, gold in zip(predictions, labels):
        if len(pred) != len(gold):
            raise ValueError(f"a sentence has {len(gold)} tags but {len(pred)} predictions")
        tokens += len(gold)
        correct += sum(p == g for p, g in zip(pred, gold))
        if has_entities:
            p_spans, g_spans = entities(pred), entities(gold)
            tp += len(p_spans & g_spans)
            n_pred += len(p_spans)
            n_true += len(g_spans)
    token_accuracy = correct / tokens if tokens else 0.0
    if not has_entities:  # POS-style tags: every token is its own item
        return {
            "accuracy": token_accuracy,
            "f1": token_accuracy,
            "precision": token_accuracy,
            "recall": token_accuracy,
        }
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": token_accuracy, "f1": f1, "precision": precision, "recall": recall}

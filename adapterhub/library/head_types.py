"""The head types of ``AdapterModel`` by name, and building a head module from its config.

A head's config is the dict saved as the ``config`` of ``head_config.json``: its ``head_type``, its options
(those of the head type, see ``PredictionHead.options``; missing ones take the type's defaults) and, for
labelled heads, ``label2id``. ``id2label`` is accepted when adding a head and saved as ``label2id``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from .errors import AdapterConfigError, AdapterExistsError
from .heads import (
    ClassificationHead,
    MultiLabelClassificationHead,
    MultipleChoiceHead,
    PredictionHead,
    QuestionAnsweringHead,
    TaggingHead,
)
from .lm_heads import CausalLMHead, LMHead, MaskedLMHead
from .paths import check_container_key

HEAD_TYPES: dict[str, type[PredictionHead]] = {
    cls.head_type: cls
    for cls in (
        ClassificationHead,
        MultiLabelClassificationHead,
        TaggingHead,
        QuestionAnsweringHead,
        MultipleChoiceHead,
        MaskedLMHead,
        CausalLMHead,
    )
}

_NAME = re.compile(r"^[A-Za-z0-9_\-,]+$")


def check_new_head(heads: nn.ModuleDict, name: str, overwrite_ok: bool) -> None:
    """``name`` is a valid head name, and free in ``heads`` unless ``overwrite_ok``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdapterConfigError(f"invalid head name {name!r}: use letters, digits, '_', '-' and ',' only")
    if problem := check_container_key("head", name):
        raise AdapterConfigError(problem)
    if name in heads and not overwrite_ok:
        raise AdapterExistsError(
            f"a head named {name!r} already exists; pass overwrite_ok=True to replace it"
        )


def full_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked against its head type's options and completed with their defaults (and labels)."""
    config = dict(config)
    head_type = config.get("head_type")
    if head_type not in HEAD_TYPES:
        raise AdapterConfigError(
            f"head {name!r}: unsupported head type {head_type!r}; supported: {', '.join(HEAD_TYPES)}"
        )
    cls = HEAD_TYPES[head_type]
    allowed = set(cls.options) | {"head_type", "label2id", "id2label"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise AdapterConfigError(
            f"head {name!r}: unknown option(s) {', '.join(unknown)} for a {head_type} head"
        )
    id2label = config.pop("id2label", None)
    full: dict[str, Any] = {"head_type": head_type}
    for key, default in cls.options.items():
        full[key] = config.get(key, default)
    label2id = config.get("label2id")
    if not cls.labelled:
        full["label2id"] = None
    else:
        full["label2id"] = dict(label2id) if label2id else _label2id(full[cls.size_key], id2label)
    return full


def build_head(model: Any, name: str, config: dict[str, Any]) -> PredictionHead:
    """The head ``name`` of ``config`` for ``model`` (an ``AdapterModel``): on the device and dtype of its
    base model, in its train/eval mode; a language-model head is tied to its input embeddings."""
    full = full_config(name, config)
    base_model = model.base_model
    if full.get("use_pooler") and getattr(base_model, "pooler", None) is None:
        raise AdapterConfigError(
            f"head {name!r}: use_pooler=True, but this {type(base_model).__name__} has no pooler"
        )
    head = HEAD_TYPES[full["head_type"]](name, full, model.config)
    reference = next(base_model.parameters())
    head = head.to(device=reference.device, dtype=reference.dtype).train(model.training)
    if isinstance(head, LMHead):  # language-model heads share the input embeddings
        head.tie(model)
    return head


def _label2id(num_labels: int, id2label: dict | None) -> dict[str, int]:
    if id2label is None:
        return {f"LABEL_{i}": i for i in range(num_labels)}
    return {str(label): int(i) for i, label in id2label.items()}

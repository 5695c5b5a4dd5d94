"""Task heads for ``AdapterModel``: the prediction head modules in the AdapterHub layout.

Layout: ``nn.Sequential`` of, per layer, ``Dropout`` then ``Linear`` (then the activation, for all but the last
layer): a 2-layer classification head is [Dropout, Linear(h, h), Activation, Dropout, Linear(h, num_labels)],
i.e. keys ``heads.NAME.1.*`` and ``heads.NAME.4.*``. Head types: ``classification``,
``multilabel_classification``, ``multiple_choice`` (these read the first token's hidden state in encoders, the
last non-padding token's in decoders, or the pooler output with ``use_pooler``), ``tagging`` and
``question_answering`` (these read every token). The language-model heads are in :mod:`.lm_heads`; the head
types by name in :mod:`.head_types`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers.modeling_outputs import (
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .errors import AdapterConfigError
from .methods.bottleneck.layers import activation


class PredictionHead(nn.Sequential):
    """A task head; ``config`` is the dict saved as the ``config`` of ``head_config.json``."""

    head_type: ClassVar[str] = ""
    per_token: ClassVar[bool] = False
    labelled: ClassVar[bool] = True  # has labels (label2id); language-model heads have none
    size_key: ClassVar[str] = "num_labels"  # the config entry that sets the number of outputs
    #: the options of this head type: the keys of its saved config besides head_type and label2id, with defaults
    options: ClassVar[dict[str, Any]] = {
        "num_labels": 2,
        "layers": 2,
        "activation_function": "tanh",
        "use_pooler": False,
        "bias": True,
        "dropout_prob": None,
    }

    def __init__(self, name: str, config: dict[str, Any], model_config):
        super().__init__()
        self.name = name
        self.config = config
        layers = config["layers"]
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise AdapterConfigError(f"head {name!r}: layers must be a positive integer, got {layers!r}")
        size = config[self.size_key]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise AdapterConfigError(
                f"head {name!r}: {self.size_key} must be a positive integer, got {size!r}"
            )
        num_outputs = 1 if self.size_key == "num_choices" else size
        hidden = model_config.hidden_size if hasattr(model_config, "hidden_size") else model_config.dim
        dropout = _dropout_prob(config, model_config)
        act = config.get("activation_function")
        modules: list[nn.Module] = []
        for index in range(layers):
            modules.append(nn.Dropout(dropout))
            if index < layers - 1:
                modules.append(nn.Linear(hidden, hidden))
                if act:
                    modules.append(activation(act))
            else:
                modules.append(nn.Linear(hidden, num_outputs, bias=config.get("bias", True)))
        for index, module in enumerate(modules):
            self.add_module(str(index), module)
        std = getattr(model_config, "initializer_range", 0.02)
        with torch.no_grad():
            for module in modules:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def output(self, logits, outputs, labels, attention_mask, targets: dict[str, torch.Tensor]):
        """The head's model output (with the loss when ``labels`` are given)."""
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


def _dropout_prob(config: dict, model_config) -> float:
    # the head's own value, else the model's classifier dropout, else its hidden dropout, else 0 (as AdapterHub)
    for value in (
        config.get("dropout_prob"),
        getattr(model_config, "classifier_dropout", None),
        getattr(model_config, "hidden_dropout_prob", None),
    ):
        if value is not None:
            return float(value)
    return 0.0


class ClassificationHead(PredictionHead):
    head_type = "classification"

    def loss(self, logits, labels, attention_mask):
        if self.config["num_labels"] == 1:  # regression
            return nn.functional.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
        return nn.functional.cross_entropy(logits.view(-1, self.config["num_labels"]), labels.view(-1))


class MultiLabelClassificationHead(PredictionHead):
    head_type = "multilabel_classification"

    def loss(self, logits, labels, attention_mask):
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class TaggingHead(PredictionHead):
    head_type = "tagging"
    per_token = True
    options = {"num_labels": 2, "layers": 1, "activation_function": "tanh", "dropout_prob": None}

    def loss(self, logits, labels, attention_mask):
        labels = labels.view(-1)
        if attention_mask is not None:  # padding positions do not count
            labels = torch.where(attention_mask.view(-1) == 1, labels, torch.full_like(labels, -100))
        return nn.functional.cross_entropy(
            logits.view(-1, self.config["num_labels"]), labels, ignore_index=-100
        )

    def output(self, logits, outputs, labels, attention_mask, targets):
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class QuestionAnsweringHead(PredictionHead):
    """Extractive QA: per token a start and an end logit (``num_labels=2``); loss from start/end positions."""

    head_type = "question_answering"
    per_token = True
    options = {"num_labels": 2, "layers": 1, "activation_function": "tanh", "dropout_prob": None}

    def output(self, logits, outputs, labels, attention_mask, targets):
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1)[:2])
        loss = None
        start, end = targets.get("start_positions"), targets.get("end_positions")
        if start is not None and end is not None:
            ignored = start_logits.size(1)  # positions outside the input are ignored
            start = start.view(-1).clamp(0, ignored)
            end = end.view(-1).clamp(0, ignored)
            loss = (
                nn.functional.cross_entropy(start_logits, start, ignore_index=ignored)
                + nn.functional.cross_entropy(end_logits, end, ignore_index=ignored)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class MultipleChoiceHead(PredictionHead):
    """One score per choice: inputs of shape (batch, num_choices, length) are scored as batch * num_choices rows."""

    head_type = "multiple_choice"
    size_key = "num_choices"
    options = {
        "num_choices": 2,
        "layers": 2,
        "activation_function": "tanh",
        "use_pooler": False,
        "dropout_prob": None,
    }

    def output(self, logits, outputs, labels, attention_mask, targets):
        logits = logits.view(-1, self.config["num_choices"])
        loss = nn.functional.cross_entropy(logits, labels.view(-1)) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )

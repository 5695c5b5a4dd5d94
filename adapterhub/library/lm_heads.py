"""Language-model heads for ``AdapterModel``: ``masked_lm`` and ``causal_lm`` (AdapterHub layout and options).

Layout: ``layers - 1`` transform layers (``Linear``, then the activation, then ``LayerNorm`` if ``layer_norm``),
then the output embedding ``Linear(embedding_size, vocab_size)`` whose weight is the model's input embedding
matrix (tied). Before that last layer the inverse of the active invertible adapter is applied, as in
AdapterHub (a standard Transformers LM head gets no inverse). Keys: ``heads.NAME.0.weight`` ... for a masked LM
head (``0`` dense, ``2`` LayerNorm, ``3`` output embeddings). Weights are tied only where the model's config has
``tie_word_embeddings`` (as in AdapterHub; Llama-family configs do not).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

from .errors import AdapterConfigError
from .heads import PredictionHead
from .methods.bottleneck.layers import activation


def _invertible_inverse(model, hidden: torch.Tensor) -> torch.Tensor:
    """The inverse of the model's active invertible adapter (``hidden`` unchanged if none is active)."""
    for method in model.adapterhub_state.methods.values():
        site = getattr(method, "invertible", None)
        if site is not None:
            return site.inverse(hidden)
    return hidden


class LMHead(PredictionHead):
    per_token = True
    labelled = False
    size_key = "vocab_size"

    def __init__(self, name: str, config: dict[str, Any], model_config):
        nn.Sequential.__init__(self)
        self.name = name
        self.config = config
        hidden = model_config.hidden_size if hasattr(model_config, "hidden_size") else model_config.dim
        config["vocab_size"] = config["vocab_size"] or model_config.vocab_size
        config["embedding_size"] = config["embedding_size"] or getattr(model_config, "embedding_size", hidden)
        for key in ("layers", "vocab_size", "embedding_size"):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AdapterConfigError(f"head {name!r}: {key} must be a positive integer, got {value!r}")
        if config.get("dropout_prob"):  # an option of the format that no language-model head applies
            raise AdapterConfigError(
                f"head {name!r}: dropout_prob is not applied by {self.head_type} heads (nor by the adapters "
                f"library's); leave it unset"
            )
        size = config["embedding_size"]
        modules: list[nn.Module] = []
        for index in range(config["layers"] - 1):
            modules.append(nn.Linear(hidden if index == 0 else size, size))
            if config["activation_function"]:
                modules.append(activation(config["activation_function"]))
            if config["layer_norm"]:
                modules.append(nn.LayerNorm(size, eps=getattr(model_config, "layer_norm_eps", 1e-12)))
        modules.append(nn.Linear(size, config["vocab_size"], bias=config["bias"]))
        for index, module in enumerate(modules):
            self.add_module(str(index), module)
        std = getattr(model_config, "initializer_range", 0.02)
        with torch.no_grad():
            for module in modules:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        self._inverse: Any = None  # the model's invertible adapter's inverse, once tied
        self._tied = False

    def tie(self, model) -> None:
        """Apply ``model``'s invertible adapter's inverse before the output embeddings, and share their weight
        with the input embeddings unless the model's config says ``tie_word_embeddings=False`` (Llama...)."""
        self._inverse = functools.partial(_invertible_inverse, model)
        self._tied = bool(getattr(model.config, "tie_word_embeddings", True))
        if not self._tied:
            return
        embeddings = model.get_input_embeddings().weight
        last = self[len(self) - 1]
        if not isinstance(last, nn.Linear):
            raise AdapterConfigError(
                f"head {self.name!r} does not end in a linear layer: {type(last).__name__}"
            )
        if tuple(last.weight.shape) != tuple(embeddings.shape):
            raise AdapterConfigError(
                f"head {self.name!r}: output embeddings {tuple(last.weight.shape)} do not match the input "
                f"embeddings {tuple(embeddings.shape)}"
            )
        last.weight = embeddings

    def tied_keys(self) -> set[str]:
        return {f"{len(self) - 1}.weight"} if self._tied else set()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        for module in layers[:-1]:
            hidden = module(hidden)
        if self._inverse is not None:
            hidden = self._inverse(hidden)
        return layers[-1](hidden)

    def loss(self, logits, labels, attention_mask):
        if self.config["shift_labels"]:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )


class MaskedLMHead(LMHead):
    head_type = "masked_lm"
    options: ClassVar[dict[str, Any]] = {
        "vocab_size": None,
        "embedding_size": None,
        "layers": 2,
        "activation_function": "gelu",
        "layer_norm": True,
        "bias": True,
        "shift_labels": False,
    }

    def output(self, logits, outputs, labels, attention_mask, targets):
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class CausalLMHead(LMHead):
    head_type = "causal_lm"
    options: ClassVar[dict[str, Any]] = {
        "vocab_size": None,
        "embedding_size": None,
        "layers": 1,
        "activation_function": None,
        "layer_norm": False,
        "bias": False,
        "shift_labels": True,
        "dropout_prob": None,
    }

    def output(self, logits, outputs, labels, attention_mask, targets):
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return CausalLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )

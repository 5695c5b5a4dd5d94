"""Prompt tuning inside a model: the prompt modules and the hooks that put the prompt into the sequence."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import get_module
from ..base import Method, register_method
from .config import PromptTuningConfig

HOLDER = "prompt_tuning"  # module on the base model holding the ``prompt_tunings`` dict (AdapterHub names)


class PromptTuning(nn.Module):
    def __init__(self, config: PromptTuningConfig, size: int):
        super().__init__()
        self.after_bos = config.combine == "prefix_after_bos"
        self.prompt_embedding = nn.Embedding(config.prompt_length, size)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        prompt = (
            self.prompt_embedding.weight.to(embedded.dtype).unsqueeze(0).expand(embedded.shape[0], -1, -1)
        )
        if self.after_bos:
            return torch.cat([embedded[:, :1], prompt, embedded[:, 1:]], dim=1)
        return torch.cat([prompt, embedded], dim=1)


@register_method
class PromptTuningMethod(Method):
    """Prompt tuning: a forward hook on the module that outputs the embedded sequence (the architecture's
    ``prompt`` path) puts the prompt into it; a forward pre-hook on the base model extends the attention mask."""

    name = "prompt_tuning"
    config_classes = (PromptTuningConfig,)
    containers = ("prompt_tunings",)
    compositions = frozenset()  # one prompt active at a time (next to adapters of other methods)

    def __init__(self, host) -> None:
        super().__init__(host)
        self.active: str | None = None
        self._handles: list = []

    @property
    def pool(self) -> nn.ModuleDict:
        holder = self.host.base_model._modules.get(HOLDER)
        if holder is None:
            holder = nn.Module()
            holder.add_module("prompt_tunings", nn.ModuleDict())
            self.host.base_model.add_module(HOLDER, holder)
        return cast(nn.ModuleDict, holder.prompt_tunings)

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, PromptTuningConfig):
            raise AdapterConfigError(
                f"the prompt tuning method runs PromptTuningConfig, not {type(config).__name__}"
            )
        if not self.host.architecture.prompt:
            raise AdapterConfigError(
                f"prompt tuning is not supported for {self.host.model.config.model_type!r} models yet: the family's "
                "map names no embedding output for the prompt"
            )
        module = PromptTuning(config, self.host.embedding_size)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if config.init_weights_seed is not None:
                torch.manual_seed(config.init_weights_seed)
            if config.prompt_init == "from_string":
                module.prompt_embedding.weight.copy_(self._text_embeddings(config))
            else:
                scale = config.random_uniform_scale
                nn.init.uniform_(module.prompt_embedding.weight, -scale, scale)
        module.train(self.host.model.training)
        self.pool[name] = module

    def _text_embeddings(self, config: PromptTuningConfig) -> torch.Tensor:
        from transformers import AutoTokenizer

        model_config = self.host.model.config
        source = getattr(model_config, "tokenizer_name_or_path", None) or model_config._name_or_path
        if not source:
            raise AdapterConfigError(
                "prompt_init='from_string' needs a tokenizer: set the model config's tokenizer_name_or_path"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise AdapterConfigError(
                f"prompt_init='from_string': cannot load the tokenizer {source!r}: {error}"
            ) from error
        ids = tokenizer(config.prompt_init_text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise AdapterConfigError(f"prompt_init_text {config.prompt_init_text!r} has no tokens")
        ids = (ids * math.ceil(config.prompt_length / len(ids)))[: config.prompt_length]
        embeddings = self.host.model.get_input_embeddings()
        return embeddings(torch.tensor(ids, device=embeddings.weight.device)).float()

    def delete(self, name: str) -> None:
        if self.active == name:
            self.set_active([])
        holder = self.host.base_model._modules.get(HOLDER)
        if holder is None:
            return
        if name in holder.prompt_tunings:
            del holder.prompt_tunings[name]
        if not len(holder.prompt_tunings):
            del self.host.base_model._modules[HOLDER]

    def set_active(self, names: list[str]) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        mine = [n for n in names if n in self.host.configs and self.host.method_of(n) is self]
        self.active = mine[0] if mine else None
        if self.active is None:
            return
        embedded = get_module(self.host.base_model, self.host.architecture.prompt)
        self._handles.append(embedded.register_forward_hook(self._insert))
        self._handles.append(
            self.host.base_model.register_forward_pre_hook(self._extend_mask, with_kwargs=True)
        )

    def modules(self, name: str) -> list[nn.Module]:
        return [self.pool[name]]

    # -- the forward path (reads only the configuration) --

    def _insert(self, module, args, output):
        return self.pool[cast(str, self.active)](output)

    def _extend_mask(self, module, args, kwargs):
        config = cast(PromptTuningConfig, self.host.configs[cast(str, self.active)])
        args, kwargs = list(args), dict(kwargs)
        if len(args) > 1:  # forward(input_ids, attention_mask, ...)
            args[1] = _with_prompt(args[1], config)
        elif kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = _with_prompt(kwargs["attention_mask"], config)
        return tuple(args), kwargs


def _with_prompt(mask, config: PromptTuningConfig):
    if mask is None:
        return None
    if mask.dim() != 2:
        raise AdapterConfigError(
            "prompt tuning needs a [batch, length] attention mask, not a prepared 4D one"
        )
    ones = torch.ones(mask.shape[0], config.prompt_length, dtype=mask.dtype, device=mask.device)
    if config.combine == "prefix_after_bos":
        return torch.cat([mask[:, :1], ones, mask[:, 1:]], dim=1)
    return torch.cat([ones, mask], dim=1)

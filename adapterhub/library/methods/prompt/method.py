"""Prompt tuning inside a model: the prompt modules and the hooks that put the prompt into the sequence."""

from __future__ import annotations

import inspect
import math
from typing import cast

import torch
from torch import nn
from torch.nn.utils import skip_init

from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import add_container, get_module, get_or_create_module, remove_from_container
from ..base import OneActiveMethod, register_method, seeded
from .config import PromptTuningConfig

HOLDER = "prompt_tuning"  # module on the base model holding the ``prompt_tunings`` dict (AdapterHub names)


class PromptTuning(nn.Module):
    def __init__(self, config: PromptTuningConfig, size: int):
        super().__init__()
        self.after_bos = config.combine == "prefix_after_bos"
        # initialised by the method (random or from text); nothing is drawn here
        self.prompt_embedding = skip_init(nn.Embedding, config.prompt_length, size)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        prompt = (
            self.prompt_embedding.weight.to(embedded.dtype).unsqueeze(0).expand(embedded.shape[0], -1, -1)
        )
        if self.after_bos:
            return torch.cat([embedded[:, :1], prompt, embedded[:, 1:]], dim=1)
        return torch.cat([prompt, embedded], dim=1)


@register_method
class PromptTuningMethod(OneActiveMethod):
    """Prompt tuning: a forward hook on the module that outputs the embedded sequence (the architecture's
    ``prompt`` path) puts the prompt into it; a forward pre-hook on the base model extends the attention mask."""

    name = "prompt_tuning"
    config_classes = (PromptTuningConfig,)
    containers = ("prompt_tunings",)
    peft_types = ("PROMPT_TUNING",)

    @property
    def pool(self) -> nn.ModuleDict:
        return add_container(get_or_create_module(self.host.base_model, HOLDER), "prompt_tunings")

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, PromptTuningConfig):
            raise AdapterConfigError(
                f"the prompt tuning method runs PromptTuningConfig, not {type(config).__name__}"
            )
        if config.input_embeddings:
            if "inputs_embeds" not in inspect.signature(self.host.base_model.forward).parameters:
                raise AdapterConfigError(
                    "prompt tuning on the input embeddings needs a model that takes inputs_embeds"
                )
        elif not self.host.architecture.prompt:
            raise AdapterConfigError(
                f"prompt tuning is not supported for {self.host.model.config.model_type!r} models yet: the family's "
                "map names no embedding output for the prompt"
            )
        module = PromptTuning(config, self.host.embedding_size)
        with torch.no_grad(), seeded(config.init_weights_seed):
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

    def delete_modules(self, name: str) -> None:
        remove_from_container(self.host.base_model, HOLDER, "prompt_tunings", name)

    def add_hooks(self, name: str) -> None:
        if cast(PromptTuningConfig, self.config(name)).input_embeddings:
            hook = self._embed_inputs
        else:
            embedded = get_module(self.host.base_model, self.host.architecture.prompt)
            self.hooks.add(embedded.register_forward_hook(self._insert))
            hook = self._extend_mask
        self.hooks.add(self.host.base_model.register_forward_pre_hook(hook, with_kwargs=True))

    def modules(self, name: str) -> list[nn.Module]:
        return [self.pool[name]]

    @classmethod
    def from_peft(cls, peft_config, weights, host):
        return from_peft(peft_config, weights, host)

    # -- the forward path (reads only the configuration) --

    def _insert(self, module, args, output):
        return self.pool[cast(str, self.active)](output)

    def _extend_mask(self, module, args, kwargs):
        config = cast(PromptTuningConfig, self.config(cast(str, self.active)))
        args, kwargs = list(args), dict(kwargs)
        if len(args) > 1:  # forward(input_ids, attention_mask, ...)
            args[1] = _with_prompt(args[1], config)
        elif kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = _with_prompt(kwargs["attention_mask"], config)
        return tuple(args), kwargs

    def _embed_inputs(self, module, args, kwargs):
        """PEFT's form: the prompt joins the token embeddings (passed as ``inputs_embeds``); in a generation step
        whose cache holds the prompt already only the mask gets its positions."""
        config = cast(PromptTuningConfig, self.config(cast(str, self.active)))
        kwargs = dict(kwargs)
        if args:
            kwargs["input_ids"], args = args[0], args[1:]
        if len(args) > 0:
            kwargs["attention_mask"], args = args[0], args[1:]
        if args:
            raise AdapterConfigError(
                "prompt tuning on the input embeddings needs keyword arguments after attention_mask"
            )
        ids = kwargs.pop("input_ids", None)
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = self.host.model.get_input_embeddings()(ids)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        past = 0 if cache is None else cache.get_seq_length()
        mask = kwargs.get("attention_mask")
        positions = kwargs.get("position_ids")
        if kwargs.get("token_type_ids") is not None:  # as PEFT, whose prompts were trained without them
            kwargs["token_type_ids"] = None
        if past == 0:
            kwargs["inputs_embeds"] = self.pool[cast(str, self.active)](embeds)
            kwargs["attention_mask"] = _with_prompt(mask, config)
            if positions is not None:  # the model counts the prompt's positions itself
                kwargs["position_ids"] = None
        else:
            kwargs["inputs_embeds"] = embeds
            if mask is not None and mask.shape[1] + config.prompt_length == past + embeds.shape[1]:
                kwargs["attention_mask"] = _with_prompt(mask, config)
                if positions is not None:  # derived from the mask without the prompt (generation)
                    kwargs["position_ids"] = positions + config.prompt_length
        return (), kwargs


def _with_prompt(mask, config: PromptTuningConfig, value: int = 1):
    if mask is None:
        return None
    if mask.dim() != 2:
        raise AdapterConfigError(
            "prompt tuning needs a [batch, length] attention mask, not a prepared 4D one"
        )
    ones = torch.full((mask.shape[0], config.prompt_length), value, dtype=mask.dtype, device=mask.device)
    if config.combine == "prefix_after_bos":
        return torch.cat([mask[:, :1], ones, mask[:, 1:]], dim=1)
    return torch.cat([ones, mask], dim=1)


def from_peft(peft_config, weights, host):
    """PEFT's PROMPT_TUNING files: ``prompt_embeddings`` ``[num_virtual_tokens, token_dim]``, joined to the token
    embeddings."""
    tables = [k for k in weights if k.rsplit(".", 1)[-1] == "prompt_embeddings"]
    if len(tables) != 1 or len(weights) != 1:
        raise AdapterConfigError(
            f"a PEFT prompt tuning file holds one 'prompt_embeddings' tensor, not {sorted(weights)}"
        )
    table = weights[tables[0]]
    length = peft_config.get("num_virtual_tokens")
    if (
        tuple(table.shape) != (length, host.embedding_size)
        or peft_config.get("num_transformer_submodules", 1) != 1
    ):
        raise AdapterConfigError(
            f"prompt_embeddings of shape {tuple(table.shape)} does not fit this model: expected "
            f"({length}, {host.embedding_size}) and one transformer submodule"
        )
    config = PromptTuningConfig(prompt_length=length, input_embeddings=True)
    return config, {f"{host.prefix}{HOLDER}.prompt_tunings.default.prompt_embedding.weight": table}

"""Prefix tuning inside a model: where the prefixes live, the hooks that put them before the keys and values."""

from __future__ import annotations

import inspect
from typing import cast

import torch
from torch import nn

from ...configs import AdapterConfig
from ...errors import AdapterConfigError, AdapterLoadError
from ...paths import add_container, get_module, get_or_create_module, remove_from_container
from ..base import CallState, OneActiveMethod, register_method, seeded
from .config import PrefixTuningConfig
from .layers import (
    GATES,
    HOLDER,
    LOCATION,
    FlatPrefixTuning,
    PrefixedCache,
    PrefixTuning,
    gate_value,
    prefixed_mask,
)


@register_method
class PrefixTuningMethod(OneActiveMethod):
    """Prefix tuning: per prefixed layer, learned keys and values before the sequence's own in self-attention.

    A forward pre-hook on the base model computes every layer's prefix once per call; a forward pre-hook on
    each layer's self-attention module (the architecture's ``attention`` path) hands it a cache view whose
    ``update`` returns the prefix followed by the real keys / values (after rotary embeddings, so the prefix
    has no position), and extends the attention mask by the prefix positions (always attended)."""

    name = "prefix_tuning"
    config_classes = (PrefixTuningConfig,)
    containers = ("prefix_tunings", GATES)
    peft_types = ("PREFIX_TUNING",)

    def __init__(self, host) -> None:
        super().__init__(host)
        self.calls = CallState()

    # -- geometry --

    def dims(self) -> tuple[int, int]:
        """(key/value heads, head size) of the model's self-attention."""
        config = self.host.model.config
        heads = getattr(config, "num_attention_heads", None) or config.n_heads
        head_dim = getattr(config, "head_dim", None) or self.host.hidden_size // heads
        return getattr(config, "num_key_value_heads", None) or heads, head_dim

    def prefixed_layers(self, config: PrefixTuningConfig) -> list[int]:
        return [i for i in range(len(self.host.layers)) if i not in config.leave_out]

    @property
    def pool(self) -> nn.ModuleDict:
        return add_container(get_or_create_module(self.host.base_model, HOLDER), "prefix_tunings")

    def prefix(self, name: str) -> nn.Module:
        return cast(nn.ModuleDict, self.pool[name])[LOCATION]

    # -- adapters --

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, PrefixTuningConfig):
            raise AdapterConfigError(
                f"the prefix tuning method runs PrefixTuningConfig, not {type(config).__name__}"
            )
        if not self.host.architecture.attention:
            raise AdapterConfigError(
                f"prefix tuning is not supported for {self.host.model.config.model_type!r} models: the family's "
                "map names no self-attention module that takes a cache"
            )
        layers = self.prefixed_layers(config)
        if not layers:
            raise AdapterConfigError(f"leave_out {config.leave_out} leaves no layer for the prefix")
        if config.shift_positions and self._shift_site() is None:
            raise AdapterConfigError(
                "shift_positions (PEFT's prefix positions) needs embeddings that take cache_length or a base model "
                f"that takes position_ids; {self.host.model.config.model_type!r} has neither"
            )
        heads, head_dim = self.dims()
        with seeded(config.init_weights_seed):
            module: nn.Module
            if config.flat:
                module = FlatPrefixTuning(len(layers), heads, head_dim, config)
            else:
                module = PrefixTuning(len(layers), heads, head_dim, config, input_size=self.host.hidden_size)
            if config.use_gating:  # UniPELT's gates: one per prefixed layer, in its attention module
                for index in layers:
                    gate = nn.Linear(self.host.hidden_size, 1 if config.shared_gating else 2)
                    nn.init.normal_(gate.weight, std=0.02)
                    attention = self._attention(index)
                    reference = next(attention.parameters(), None)
                    if reference is not None:
                        gate = gate.to(device=reference.device, dtype=reference.dtype)
                    gates = cast(nn.ModuleDict, self._gates(attention, create=True))
                    gates[name] = gate.train(self.host.model.training)
        module.train(self.host.model.training)
        self.pool[name] = nn.ModuleDict({LOCATION: module})

    def _attention(self, index: int) -> nn.Module:
        return get_module(self.host.layers[index], cast(str, self.host.architecture.attention))

    def _all_gates(self) -> list[tuple[nn.Module, nn.ModuleDict]]:
        """(attention module, its gates) of every layer that holds gates."""
        if not self.host.architecture.attention:
            return []
        found = [(a, self._gates(a)) for a in map(self._attention, range(len(self.host.layers)))]
        return [(a, gates) for a, gates in found if gates is not None]

    @staticmethod
    def _gates(attention: nn.Module, create: bool = False) -> nn.ModuleDict | None:
        """The gates at one attention module (``<attention>.prefix_tuning.prefix_gates``, AdapterHub names)."""
        if create:
            return add_container(get_or_create_module(attention, HOLDER), GATES)
        holder = attention._modules.get(HOLDER)
        return None if holder is None else cast(nn.ModuleDict, holder._modules[GATES])

    def delete_modules(self, name: str) -> None:
        for attention, _ in self._all_gates():
            remove_from_container(attention, HOLDER, GATES, name)
        remove_from_container(self.host.base_model, HOLDER, "prefix_tunings", name)

    def add_hooks(self, name: str) -> None:
        config = cast(PrefixTuningConfig, self.config(name))
        self.hooks.add(self.host.base_model.register_forward_pre_hook(self._prepare))
        for position, index in enumerate(self.prefixed_layers(config)):
            if index in self.host.skip_layers:  # AdapterDrop: this layer's prefix is left out
                continue
            attention = get_module(self.host.layers[index], self.host.architecture.attention)
            hook = _Inject(self, position)
            self.hooks.add(attention.register_forward_pre_hook(hook, with_kwargs=True))
        if config.shift_positions:
            module, shift = cast(tuple, self._shift_site())
            self.hooks.add(module.register_forward_pre_hook(shift(config.prefix_length), with_kwargs=True))

    def modules(self, name: str) -> list[nn.Module]:
        return [self.prefix(name)] + [gates[name] for _, gates in self._all_gates() if name in gates]

    def _embeddings(self) -> nn.Module:
        return get_module(self.host.base_model, self.host.architecture.embeddings)

    def _shift_site(self):
        """Where PEFT's position shift goes: (module, pre-hook class), or None where it cannot."""
        if "cache_length" in inspect.signature(self._embeddings().forward).parameters:
            return self._embeddings(), _ShiftCacheLength
        if "position_ids" in inspect.signature(self.host.base_model.forward).parameters:
            return self.host.base_model, _ShiftPositionIds
        return None

    # -- the forward path (re-entrant: a call's prefixes go through CallState) --

    def _prepare(self, module, args) -> None:
        if self.active is not None:
            self.calls.put("prefixes", (self.prefix(self.active)(), False))

    def layer_prefix(self, position: int) -> torch.Tensor:
        """This call's prefix of layer ``position``. The prefixes are computed once per call of the base model;
        a layer that runs again with gradients after it ran without (re-entrant activation checkpointing
        recomputes each layer in a backward pass of its own) gets prefixes with a graph of its own: one graph
        shared by those backward passes would be freed by the first of them."""
        prefixes, ran_without_grad = self.calls.take("prefixes") or (None, False)
        if prefixes is None:  # the attention runs outside a call of the base model
            prefixes = self.prefix(cast(str, self.active))()
        if not torch.is_grad_enabled() and prefixes[position].requires_grad:
            ran_without_grad = True
        self.calls.put("prefixes", (prefixes, ran_without_grad))
        if ran_without_grad and torch.is_grad_enabled():
            return self.prefix(cast(str, self.active))()[position]
        return prefixes[position]

    # -- ejection --

    def eject(self, name: str) -> None:
        """Replace the MLP of adapter ``name`` by the flat prefixes it computes (same outputs, fewer weights)."""
        config = cast(PrefixTuningConfig, self.config(name))
        if config.flat:
            return
        module = cast(PrefixTuning, self.prefix(name))
        heads, head_dim = self.dims()
        flat_config = config.replace(flat=True)
        flat = FlatPrefixTuning(len(self.prefixed_layers(config)), heads, head_dim, flat_config)
        with torch.no_grad():
            flat.control_trans.copy_(module.flat())
        flat.train(module.training)
        cast(nn.ModuleDict, self.pool[name])[LOCATION] = flat
        self.host.replace_config(name, self, flat_config)

    # -- files --

    @classmethod
    def from_saved(cls, weights):
        # the `adapters` library writes the prefixes again under every layer's attention module
        # (``...attention.self.prefix_tuning.pool.prefix_tunings.NAME...``): the same tensors, dropped here
        kept = {k: v for k, v in weights.items() if ".pool.prefix_tunings." not in k}
        by_suffix = {k[k.index("prefix_tunings.") :]: v for k, v in kept.items() if "prefix_tunings." in k}
        for key, value in weights.items():
            if key not in kept:
                main = by_suffix.get(key[key.index("prefix_tunings.") :])
                if main is None or not torch.equal(main, value):
                    raise AdapterLoadError(f"the layer copy {key} differs from the prefix pool's tensor")
        return kept

    # -- the PEFT format --

    @classmethod
    def from_peft(cls, peft_config, weights, host):
        from .peft import from_peft

        return from_peft(cls, peft_config, weights, host)

    def to_peft(self, name: str):
        from .peft import to_peft

        return to_peft(self, name)


class _Inject:
    """Forward pre-hook of one layer's self-attention: the prefix goes before this call's keys and values."""

    def __init__(self, method: PrefixTuningMethod, position: int):
        self.method = method
        self.position = position

    def __call__(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        batch, queries = hidden.shape[:2]
        key_value = self.method.layer_prefix(self.position).to(hidden.device)
        key = key_value[0].unsqueeze(0).expand(batch, -1, -1, -1)
        value = key_value[1].unsqueeze(0).expand(batch, -1, -1, -1)
        gates = self.method._gates(module)
        if gates is not None and self.method.active in gates:  # UniPELT: gated keys and values
            gate = gate_value(gates[self.method.active], hidden)
            key, value = key * gate[:, 0].view(-1, 1, 1, 1), value * gate[:, -1].view(-1, 1, 1, 1)
        name = "past_key_values" if "past_key_values" in kwargs else "cache"
        cache = kwargs.get(name)
        own = getattr(cache, "self_attention_cache", cache)
        past = 0 if own is None else own.get_seq_length(getattr(module, "layer_idx", 0) or 0)
        kwargs = dict(kwargs)
        kwargs[name] = PrefixedCache(cache, key, value)
        causal = bool(getattr(module, "is_causal", False))
        kwargs["attention_mask"] = prefixed_mask(
            kwargs.get("attention_mask"), key.shape[2], queries, past, causal, hidden.device
        )
        return args, kwargs


class _ShiftCacheLength:
    """Forward pre-hook of embeddings that take ``cache_length`` (BERT family): positions start after the prefix,
    as PEFT's prefixes (a cache of that length) make them."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, module, args, kwargs):
        return args, {**kwargs, "cache_length": kwargs.get("cache_length", 0) + self.length}


class _ShiftPositionIds:
    """Forward pre-hook of a base model that takes ``position_ids`` (decoders): the same shift, on the ids given
    (derived from the mask, as in generation) or on the default ones (after the cached tokens)."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, module, args, kwargs):
        positions = kwargs.get("position_ids")
        if positions is None:
            tokens = kwargs.get("input_ids", args[0] if args else None)
            if tokens is None:
                tokens = kwargs["inputs_embeds"]
            cache = kwargs.get("past_key_values", kwargs.get("cache"))
            past = 0 if cache is None else cache.get_seq_length()
            positions = torch.arange(past, past + tokens.shape[1], device=tokens.device).unsqueeze(0)
        return args, {**kwargs, "position_ids": positions + self.length}

"""The prefix modules (the AdapterHub format's names) and the cache view that puts a prefix before the keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HOLDER = "prefix_tuning"  # module on the base model holding the ``prefix_tunings`` dict (AdapterHub names)
LOCATION = "self_prefix"  # the prefix of the self-attention (encoders and decoders)
GATES = "prefix_gates"  # gates of gated prefixes, at ``<attention>.prefix_tuning.prefix_gates.NAME``
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU}


class PrefixTuning(nn.Module):
    """Keys and values of every prefixed layer from an MLP: ``control_trans(wte(0..P-1))``; ``wte`` is
    ``input_size`` wide (the model's hidden size, as in the AdapterHub format, also where grouped-query attention
    makes the keys narrower)."""

    def __init__(self, n_layers: int, n_heads: int, head_dim: int, config, input_size: int | None = None):
        super().__init__()
        self.shape = (config.prefix_length, n_layers * 2, n_heads, head_dim)
        input_size = input_size or n_heads * head_dim
        self.wte = nn.Embedding(config.prefix_length, input_size)
        self.control_trans = nn.Sequential(
            nn.Linear(input_size, config.bottleneck_size),
            _ACTIVATIONS[config.non_linearity.lower()](),
            nn.Linear(config.bottleneck_size, n_layers * 2 * n_heads * head_dim),
        )
        self.dropout = nn.Dropout(config.dropout)

    def flat(self) -> torch.Tensor:
        """The prefixes as one vector, the parameter of the equivalent :class:`FlatPrefixTuning`."""
        return self.control_trans(self.wte.weight).reshape(-1)

    def forward(self) -> tuple[torch.Tensor, ...]:
        """Per prefixed layer a tensor ``[2 (key, value), heads, P, head_dim]``."""
        return _per_layer(self.dropout(self.flat().view(self.shape)))


class FlatPrefixTuning(nn.Module):
    """Keys and values of every prefixed layer learned directly (``control_trans``, one flat vector)."""

    def __init__(self, n_layers: int, n_heads: int, head_dim: int, config):
        super().__init__()
        self.shape = (config.prefix_length, n_layers * 2, n_heads, head_dim)
        self.control_trans = nn.Parameter(
            torch.randn(config.prefix_length * n_layers * 2 * n_heads * head_dim)
        )
        self.dropout = nn.Dropout(config.dropout)

    def flat(self) -> torch.Tensor:
        return self.control_trans

    def forward(self) -> tuple[torch.Tensor, ...]:
        return _per_layer(self.dropout(self.control_trans.view(self.shape)))


def gate_value(gate: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The gate of a layer's prefix for each sequence, ``[batch, 1 or 2]`` (keys, values): ``sigmoid(W_g h +
    b_g)`` averaged over the positions of the attention's input ``h``, as the AdapterHub library computes it."""
    return torch.sigmoid(gate(hidden)).mean(dim=1)


def _per_layer(key_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # [P, layers*2, heads, d] -> layers x [2, heads, P, d] (the layout of both peers' files)
    return key_values.permute(1, 2, 0, 3).split(2)


class PrefixedCache:
    """What the attention module sees as its cache for one call: ``update`` returns the prefix followed by the
    keys / values of the real cache (which stores only the sequence's own) or of this call."""

    def __init__(self, cache, key: torch.Tensor, value: torch.Tensor):
        self.cache = getattr(cache, "self_attention_cache", cache)
        self.key = key
        self.value = value

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if self.cache is not None:
            key, value = self.cache.update(key, value, layer_idx, *args, **kwargs)
        return torch.cat([self.key.to(key.dtype), key], dim=2), torch.cat(
            [self.value.to(value.dtype), value], dim=2
        )


def prefixed_mask(mask, length: int, queries: int, past: int, causal: bool, device=None):
    """The attention mask with ``length`` attended prefix positions before the keys."""
    if mask is None:
        if not causal or queries == 1:
            return None  # every key is attended
        keys = past + queries
        rows = torch.arange(queries, device=device).unsqueeze(1) + past
        mask = (torch.arange(keys, device=device).unsqueeze(0) <= rows)[None, None]
    if mask.dim() == 2:  # [batch, keys] of 1 / 0
        return F.pad(mask, (length, 0), value=1)
    if mask.dtype == torch.bool:
        return F.pad(mask, (length, 0), value=True)
    return F.pad(mask, (length, 0), value=0.0)  # additive float mask

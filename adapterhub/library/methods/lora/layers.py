"""The LoRA and IA3 modules of one adapter at one linear layer, and the maths they add to it.

Parameter names follow the AdapterHub format: ``lora_A`` ``[r·g, in]``, ``lora_B`` ``[out/k·g, r]`` (LoRA) or
``lora_B`` ``[n, 1]`` (IA3), ``m.weight`` ``[out, 1]`` (DoRA's magnitudes). ``g`` is the number of enabled blocks
of a fused projection (GPT-2's ``c_attn`` holds q, k and v: ``k = 3`` blocks, each adapter block with its own A
and B); ``g = k = 1`` for a plain linear layer.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from ..base import seeded
from .config import LoRAConfig


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as ``[out, in]`` (``transformers``' ``Conv1D`` stores ``[in, out]``)."""
    weight = cast(torch.Tensor, module.weight)
    return weight if isinstance(module, nn.Linear) else weight.t()


def _dtype(config: LoRAConfig, reference: torch.Tensor) -> torch.dtype:
    return getattr(torch, config.dtype) if config.dtype else reference.dtype


class Blocks:
    """Where the adapter writes in the layer's output: ``blocks`` (which of ``parts`` equal output blocks)."""

    def __init__(self, out_features: int, parts: int = 1, blocks: tuple[int, ...] = (0,)):
        self.out_features, self.parts, self.blocks = out_features, parts, tuple(blocks)
        self.size = out_features // parts

    @property
    def whole(self) -> bool:
        return self.parts == 1

    def spread(self, pieces: list[torch.Tensor], fill: float) -> torch.Tensor:
        """The full output-sized tensor from one piece per enabled block, ``fill`` elsewhere."""
        if self.whole:
            return pieces[0]
        by_block = dict(zip(self.blocks, pieces))
        reference = pieces[0]
        return torch.cat(
            [
                by_block[b] if b in by_block else reference.new_full(reference.shape, fill)
                for b in range(self.parts)
            ],
            dim=-1,
        )


class LoRA(nn.Module):
    """``s · B A dropout(x)`` (per enabled block), optionally with DoRA's magnitudes ``m``."""

    def __init__(self, config: LoRAConfig, in_features: int, blocks: Blocks, weight: torch.Tensor):
        super().__init__()
        self.config = config
        self.blocks = blocks
        groups = len(blocks.blocks)
        dtype = _dtype(config, weight)
        self.lora_A = nn.Parameter(
            torch.zeros(config.r * groups, in_features, dtype=dtype, device=weight.device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(blocks.size * groups, config.r, dtype=dtype, device=weight.device)
        )
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None
        self.scaling = config.scaling
        with torch.no_grad(), seeded(config.init_weights_seed):
            if config.init_weights == "lora":
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            elif config.init_weights == "gaussian":
                nn.init.normal_(self.lora_A, std=1 / config.r)
            elif config.init_weights == "bert":
                nn.init.normal_(self.lora_A, std=0.02)
                nn.init.normal_(self.lora_B, std=0.02)
            else:  # ia3
                nn.init.ones_(self.lora_A)
                nn.init.ones_(self.lora_B)
            # UniPELT's gate (``use_gating``): one output per enabled block, from the layer's input
            self.gate = (
                nn.Linear(in_features, groups, dtype=dtype, device=weight.device)
                if config.use_gating
                else None
            )
            if self.gate is not None:
                nn.init.normal_(self.gate.weight, std=0.02)
        if config.use_dora:
            self.m = nn.Linear(1, blocks.out_features, bias=False, dtype=dtype, device=weight.device)
            with torch.no_grad():
                self.m.weight.copy_(self.adapted_weight(weight).norm(dim=1, keepdim=True))

    def delta_weight(self) -> torch.Tensor:
        """``s · B A`` as an ``[out, in]`` matrix (zero rows for the blocks without the adapter)."""
        groups = len(self.blocks.blocks)
        As = self.lora_A.chunk(groups, dim=0)
        Bs = self.lora_B.chunk(groups, dim=0)
        pieces = [(b @ a).t() for a, b in zip(As, Bs)]  # [in, size] each
        return self.blocks.spread(pieces, 0.0).t() * self.scaling

    def adapted_weight(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta_weight().to(weight.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """``s · B A dropout(x)`` in the layer's output shape; gated (``use_gating``): ``g · B A dropout(x)``
        instead, ``g = mean over the positions of sigmoid(W_g x + b_g)``, one per sequence and block (the
        AdapterHub library's gated LoRA: the gate takes the place of ``s``)."""
        gate = None
        if self.gate is not None:
            gate = torch.sigmoid(self.gate(x.to(self.gate.weight.dtype))).mean(dim=-2, keepdim=True)
        if self.dropout is not None:
            x = self.dropout(x)
        x = x.to(self.lora_A.dtype)
        after_a = x @ self.lora_A.t()
        groups = len(self.blocks.blocks)
        if groups == 1:
            pieces = [after_a @ self.lora_B.t()]
        else:
            pieces = [a @ b.t() for a, b in zip(after_a.chunk(groups, -1), self.lora_B.chunk(groups, 0))]
        if gate is None:
            return self.blocks.spread(pieces, 0.0) * self.scaling
        return self.blocks.spread([p * gate[..., i : i + 1] for i, p in enumerate(pieces)], 0.0)

    def forward(self, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The layer's new output, given its input ``x`` and its plain output ``W x + b``."""
        delta = self.delta(x).to(output.dtype)
        if not self.config.use_dora:
            return output + delta
        # DoRA: m · (W + s B A) x / ||W + s B A||_row + b, the norm taken as a constant (DoRA paper, 4.3)
        weight = dense_weight(module)
        norm = self.adapted_weight(weight).norm(dim=1).detach()
        scale = (self.m.weight.view(-1) / norm).to(output.dtype)
        if self.dropout is not None and self.training:
            plain = nn.functional.linear(self.dropout(x), weight)
        else:
            bias = cast("torch.Tensor | None", module.bias)
            plain = output if bias is None else output - bias
        return output + (scale - 1) * plain + scale * delta

    def merged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The ``[out, in]`` weight that computes what :meth:`forward` computes (the bias stays)."""
        adapted = self.adapted_weight(weight)
        if not self.config.use_dora:
            return adapted
        return adapted * (self.m.weight.view(-1, 1) / adapted.norm(dim=1, keepdim=True)).to(weight.dtype)


class IA3(nn.Module):
    """Scales the layer's outputs (``(W x + b) · alpha · l``) or, ``on_input``, its inputs (``W (l · x) + b``)."""

    def __init__(self, config: LoRAConfig, size: int, blocks: Blocks, on_input: bool, weight: torch.Tensor):
        super().__init__()
        self.config = config
        self.blocks = blocks
        self.on_input = on_input
        dtype = _dtype(config, weight)
        n = size if on_input else blocks.size * len(blocks.blocks)
        self.lora_B = nn.Parameter(torch.ones(n, 1, dtype=dtype, device=weight.device))
        with torch.no_grad(), seeded(config.init_weights_seed):
            if config.init_weights == "lora":
                nn.init.zeros_(self.lora_B)
            elif config.init_weights == "bert":
                nn.init.normal_(self.lora_B, std=0.02)

    def vector(self) -> torch.Tensor:
        """The factor per input (``on_input``) or per output feature, ``alpha`` applied where the adapter is."""
        values = self.lora_B.view(-1)
        if self.on_input:
            return values
        groups = len(self.blocks.blocks)
        return self.blocks.spread(list((values * self.config.alpha).chunk(groups)), 1.0)

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.vector().to(x.dtype)

    def forward(self, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output * self.vector().to(output.dtype)

    def merged(self, weight: torch.Tensor, bias: torch.Tensor | None):
        """``(weight, bias)`` of the layer that computes what the adapted layer computes (``[out, in]`` weight).

        Scaling the outputs scales the bias too (the ``adapters`` library forgets it)."""
        vector = self.vector().to(weight.dtype)
        if self.on_input:
            return weight * vector.view(1, -1), bias
        return weight * vector.view(-1, 1), None if bias is None else bias * vector

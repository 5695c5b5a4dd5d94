"""VeRA's shared random projections, drawn from a seed exactly as PEFT draws them."""

from __future__ import annotations

import math

import torch

from .config import VeRAConfig


def projections(config: VeRAConfig, in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared ``A`` ``[r, in]`` and ``B`` ``[out, r]`` (the largest sizes of the targeted layers), drawn
    from ``projection_prng_key`` as PEFT draws them: one CPU generator, ``A`` then ``B``, each uniform in
    ``±sqrt(6 / fan_in)`` (Kaiming uniform, gain sqrt(2))."""
    generator = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
    out = []
    for shape in ((config.r, in_features), (out_features, config.r)):
        bound = math.sqrt(6.0 / shape[1])
        out.append(torch.empty(shape).uniform_(-bound, bound, generator=generator))
    return out[0], out[1]

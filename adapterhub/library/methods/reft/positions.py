"""Which positions of a call get ReFT's interventions: the first and the last tokens of every sequence, padding
excluded."""

from __future__ import annotations

import torch

from ...errors import AdapterConfigError


def positions(
    mask: torch.Tensor | None, batch: int, length: int, past: int, prefix: int, suffix: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[batch, length]`` masks of this call's positions that are among the first ``prefix`` and among
    the last ``suffix`` real tokens of their sequence.

    ``mask``: the attention mask (``[batch, past + length]`` of 1 for real tokens, 0 for padding, on either side)
    or None (every token is real); ``past``: the tokens the cache holds before this call's. A token's rank is the
    number of real tokens before it, so left and right padding give the same positions as no padding. The suffix
    is that of the sequence a call starts: calls that continue a cached sequence (generation steps) put none on
    their new tokens, which follow the prompt whose last tokens had it."""
    if mask is None:
        real = torch.ones(batch, past + length, dtype=torch.bool, device=device)
    else:
        if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[1] < length:
            raise AdapterConfigError(
                f"ReFT needs a [batch, length] attention mask of 1 and 0 for {batch} x {length} tokens, "
                f"got one of shape {tuple(mask.shape)}"
            )
        real = mask.to(device) != 0
    rank = real.long().cumsum(dim=-1) - 1
    count = real.sum(dim=-1, keepdim=True)
    real, rank = real[:, -length:], rank[:, -length:]
    first = real & (rank < prefix)
    last = real & (rank >= count - suffix)
    if past > 0 or suffix == 0:
        last = torch.zeros_like(last)
    return first, last

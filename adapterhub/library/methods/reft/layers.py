"""The ReFT modules, named as the AdapterHub format names them, and the orthonormal projection.

One adapter at one layer is a :class:`ReftModule` (``<layer>.reft_layer.refts.NAME``) with one or two
:class:`ReftUnit`s (``units.0`` for the prefix positions, ``units.1`` for the suffix positions; one shared unit
with ``tied_weights``): ``learned_source`` (``Linear(hidden, r)``) and ``projection`` (``R``, ``[r, hidden]``).
With ``orthogonality`` the projection is parametrized as torch's ``orthogonal`` parametrization stores it
(``projection.parametrizations.weight.original`` and the buffer ``projection.parametrizations.weight.0.base``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..bottleneck.layers import activation
from .config import ReftConfig

HOLDER = "reft_layer"  # module on each layer holding the ``refts`` dict (AdapterHub names)
HALF = (torch.float16, torch.bfloat16)


class Orthonormal(nn.Module):
    """``weight = base @ Q(original)``: orthonormal rows (or columns, if it is taller than wide), as torch's
    ``orthogonal`` parametrization with trivialization computes it (Householder reflections, the matrix
    exponential for a square weight). ``base``, a fixed orthogonal matrix, is drawn at creation.

    One difference: the diagonal of ``original`` only gives the signs of ``Q``'s columns, and torch reads it
    with ``int()``, so a diagonal entry moved off ±1 (weight decay, which trains it although it has no gradient)
    zeroes that column and with it the intervention. Here its sign counts, so the projection stays orthonormal;
    for the diagonal of ±1 that the parametrization starts from and keeps the two agree."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        rows, cols = weight.shape
        self.transposed = rows < cols
        tall = weight.t() if self.transposed else weight
        n, k = tall.shape
        filled = torch.cat([tall, torch.randn(n, n - k, dtype=tall.dtype, device=tall.device)], dim=1)
        q, r = torch.linalg.qr(filled)
        self.register_buffer("base", q * r.diagonal().sign().unsqueeze(0))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            X = X.mT
        n, k = X.shape
        if n == k:
            lower = X.tril()
            Q = torch.matrix_exp(lower - lower.mT)
        else:
            A = X.tril(diagonal=-1)
            tau = 2.0 / (1.0 + (A * A).sum(dim=-2))
            signs = torch.where(X.diagonal().detach() < 0, -1.0, 1.0).to(X.dtype)
            Q = torch.linalg.householder_product(A, tau) * signs.unsqueeze(0)
        Q = cast(torch.Tensor, self.base) @ Q
        return Q.mT if self.transposed else Q


def _orthonormal(projection: nn.Linear) -> nn.Linear:
    """``projection`` with its weight parametrized by :class:`Orthonormal`, starting at ``weight = base[:, :r]``."""
    parametrize.register_parametrization(projection, "weight", Orthonormal(projection.weight.detach()))
    original = cast(torch.Tensor, cast(Any, projection).parametrizations.weight.original)
    with torch.no_grad():
        original.zero_()
        original.diagonal().fill_(-1.0)
    return projection


class ReftUnit(nn.Module):
    """``dropout(h + Rᵀ (act(W h + b) - R h))`` (without ``- R h`` if not ``subtract_projection``)."""

    def __init__(self, hidden: int, config: ReftConfig, dtype: torch.dtype, device):
        super().__init__()
        self.learned_source = nn.Linear(hidden, config.r, bias=True, dtype=dtype, device=device)
        # torch's orthogonal parametrizations work in full precision: a half-precision LoReFT keeps R in float32
        projection_dtype = torch.float32 if config.orthogonality and dtype in HALF else dtype
        projection = nn.Linear(hidden, config.r, bias=False, dtype=projection_dtype, device=device)
        self.projection = _orthonormal(projection) if config.orthogonality else projection
        self.subtract_projection = config.subtract_projection
        self.non_linearity = activation(config.non_linearity) if config.non_linearity else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R = self.projection.weight.to(x.dtype)
        source = self.non_linearity(self.learned_source(x))
        if self.subtract_projection:
            source = source - F.linear(x, R)
        return self.dropout(x + source @ R)


class ReftModule(nn.Module):
    """The intervention of one adapter at one layer's output, at the positions it is given."""

    def __init__(self, hidden: int, config: ReftConfig, dtype: torch.dtype, device):
        super().__init__()
        self.tied = config.tied_weights
        self.has_prefix = config.prefix_positions > 0
        self.has_suffix = config.suffix_positions > 0
        self.units = nn.ModuleList(
            [ReftUnit(hidden, config, dtype, device) for _ in range(1 if config.tied_weights else 2)]
        )

    def forward(self, hidden: torch.Tensor, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``[batch, length, hidden]`` with the intervention at the positions where ``prefix`` /
        ``suffix`` (``[batch, length]``, boolean) are set; where both are (a sequence shorter than the two), the
        suffix's intervention counts, as in the ``adapters`` library."""
        x = hidden.to(cast(ReftUnit, self.units[0]).learned_source.weight.dtype)
        out = hidden  # positions without an intervention stay as they are, bit for bit
        if self.has_prefix:
            out = torch.where(prefix.unsqueeze(-1), self.units[0](x).to(hidden.dtype), out)
        if self.has_suffix:
            unit = self.units[0 if self.tied else 1]
            out = torch.where(suffix.unsqueeze(-1), unit(x).to(hidden.dtype), out)
        return out

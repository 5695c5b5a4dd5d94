"""Bottleneck adapter modules: the sequential / parallel bottleneck and the invertible embedding adapters.

Submodule names (``adapter_down.0``, ``adapter_up``, ``adapter_norm_after``, ``gate``, ``scaling``; ``F``/``G``
for NICE, ``s1``/``s2`` for GLOW) follow the AdapterHub weight format, so saved weights load in both libraries.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn
from transformers.activations import ACT2FN

from ...errors import AdapterConfigError
from ..base import seeded


class _Activation(nn.Module):
    """A parameter-free activation by name (``transformers`` names plus ``leakyrelu``)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name.lower()
        if self.name == "leakyrelu":
            self.fn = nn.LeakyReLU()
        elif self.name in ACT2FN:
            self.fn = ACT2FN[self.name]
        else:
            raise AdapterConfigError(
                f"unknown non_linearity {name!r}; use leakyrelu or one of: {', '.join(sorted(ACT2FN))}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def activation(name: str) -> nn.Module:
    return _Activation(name)


def _init_bert(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Bottleneck(nn.Module):
    """``up(act(down(x)))`` with the residual/normalisation options of a :class:`BnConfig`.

    The sub-layer that hosts the adapter computes ``h`` (its output) from the residual stream ``r``; the
    host model then adds ``h`` to ``r`` (and applies its own LayerNorm in post-LN models). The adapter turns
    ``h`` into the value that the model should add instead (see :meth:`delta_input`).
    """

    def __init__(
        self, config, hidden_size: int, bottleneck_size: int, shared: nn.ParameterDict | None = None
    ):
        super().__init__()
        self.config = config
        self.parallel = config.is_parallel
        down: list[nn.Module] = []
        if config.ln_before:
            self.adapter_norm_before = nn.LayerNorm(hidden_size)
            down.append(self.adapter_norm_before)
        if config.phm_layer:  # Compacter: PHM projections (shared: the adapter's shared PHM weights)
            from .phm import PHMLayer

            down.append(PHMLayer(config, hidden_size, bottleneck_size, "down", shared))
            up: nn.Module = PHMLayer(config, bottleneck_size, hidden_size, "up", shared)
        else:
            down.append(nn.Linear(hidden_size, bottleneck_size))
            up = nn.Linear(bottleneck_size, hidden_size)
        down.append(activation(config.non_linearity))
        self.adapter_down = nn.Sequential(*down)
        self.adapter_up = up
        self.scaling: nn.Parameter | float
        if config.scaling == "learned":
            self.scaling = nn.Parameter(torch.ones(1))
        elif config.scaling == "channel":
            self.scaling = nn.Parameter(torch.ones(hidden_size))
        else:
            self.scaling = float(config.scaling)
        if config.ln_after:
            self.adapter_norm_after = nn.LayerNorm(hidden_size)
        if config.use_gating:
            self.gate = nn.Linear(hidden_size, 1)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        config = self.config
        linears = [m for m in self.adapter_down if isinstance(m, nn.Linear)]
        up = cast(nn.Linear, self.adapter_up)  # for these inits: PHM layers take init_weights="bert" only
        with torch.no_grad(), seeded(config.init_weights_seed):
            if config.init_weights == "bert":
                self.apply(_init_bert)
            elif config.init_weights == "mam_adapter":
                for layer in linears:
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
                    nn.init.zeros_(layer.bias)
                nn.init.zeros_(up.weight)
                nn.init.zeros_(up.bias)
                if config.use_gating:
                    _init_bert(self.gate)
            else:  # houlsby
                for layer in linears + [up]:
                    nn.init.trunc_normal_(layer.weight, mean=0.0, std=1e-2, a=-2e-2, b=2e-2)
                    nn.init.zeros_(layer.bias)

    # -- the three steps around one adapter (see the forward maths in the AdapterHub format notes) --

    def pre_forward(self, h: torch.Tensor, r: torch.Tensor, norm: nn.Module | None):
        """Returns (adapter input, adapter residual) for sub-layer output ``h`` and residual stream ``r``."""
        if self.parallel:
            return r, r
        config = self.config
        residual = h if config.residual_before_ln is True else None
        if config.original_ln_before:
            h = h + r
            if config.residual_before_ln == "post_add":
                residual = h
            if norm is not None:
                h = norm(h)
        if config.residual_before_ln is False:
            residual = h
        return h, residual

    def bottleneck_up(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled up-projection ``s * up(act(down(x)))``: what AdapterFusion mixes."""
        up = self.adapter_up(self.adapter_down(x))
        scaling = self.scaling
        if isinstance(scaling, float) and scaling == 1.0:
            return up  # x * 1.0 == x bit for bit: skip a full-size multiply (and its backward)
        return up * scaling

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        config = self.config
        up = self.bottleneck_up(x)
        out = self.dropout(up) if self.dropout is not None else up
        if config.use_gating:
            gate = torch.sigmoid(self.gate(x)).mean(dim=1).unsqueeze(-1)
            out = out * gate
        if self.parallel:
            return self.adapter_norm_after(out) if config.ln_after else out
        # ``out`` is always a fresh tensor here that no backward function saved (the outputs of linear, mul,
        # dropout and layer norm are not kept for their gradients), so the residual is added in place: same
        # values, one full-size allocation less per site.
        if config.adapter_residual_before_ln:
            out = out.add_(residual)
        if config.ln_after:
            out = self.adapter_norm_after(out)
        if not config.adapter_residual_before_ln:
            out = out.add_(residual)
        return out

    def delta_input(self, out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """What the host adds to the residual stream in place of ``h`` (before its LayerNorm, if any)."""
        return out + h if self.parallel else out


class _Subnet(nn.Sequential):
    def __init__(self, dims_in: int, dims_out: int, non_linearity: str, reduction_factor: float):
        inner = int(dims_in // reduction_factor)
        super().__init__(nn.Linear(dims_in, inner), activation(non_linearity), nn.Linear(inner, dims_out))


class NICECoupling(nn.Module):
    """Additive coupling (NICE): ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``; exactly invertible."""

    def __init__(self, hidden_size: int, non_linearity: str, reduction_factor: float):
        super().__init__()
        self.split1 = hidden_size // 2
        self.split2 = hidden_size - self.split1
        self.F = _Subnet(self.split2, self.split1, non_linearity, reduction_factor)
        self.G = _Subnet(self.split1, self.split2, non_linearity, reduction_factor)

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        x1, x2 = x[..., : self.split1], x[..., self.split1 :]
        if not rev:
            y1 = x1 + self.F(x2)
            y2 = x2 + self.G(y1)
        else:
            y2 = x2 - self.G(x1)
            y1 = x1 - self.F(y2)
        return torch.cat((y1, y2), -1)


class GLOWCoupling(nn.Module):
    """Affine coupling (GLOW/RealNVP) with soft-clamped scales; exactly invertible."""

    def __init__(self, hidden_size: int, non_linearity: str, reduction_factor: float, clamp: float = 5.0):
        super().__init__()
        self.split1 = hidden_size // 2
        self.split2 = hidden_size - self.split1
        self.clamp = clamp
        self.s1 = _Subnet(self.split1, self.split2 * 2, non_linearity, reduction_factor)
        self.s2 = _Subnet(self.split2, self.split1 * 2, non_linearity, reduction_factor)

    def _e(self, s: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.clamp * 0.636 * torch.atan(s / self.clamp))

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        x1, x2 = x[..., : self.split1], x[..., self.split1 :]
        if not rev:
            s2, t2 = self.s2(x2).split([self.split1, self.split1], -1)
            y1 = self._e(s2) * x1 + t2
            s1, t1 = self.s1(y1).split([self.split2, self.split2], -1)
            y2 = self._e(s1) * x2 + t1
        else:
            s1, t1 = self.s1(x1).split([self.split2, self.split2], -1)
            y2 = (x2 - t1) / self._e(s1)
            s2, t2 = self.s2(y2).split([self.split1, self.split1], -1)
            y1 = (x1 - t2) / self._e(s2)
        return torch.cat((y1, y2), -1)


def invertible_adapter(config, hidden_size: int) -> nn.Module:
    cls = NICECoupling if config.inv_adapter == "nice" else GLOWCoupling
    module = cls(hidden_size, config.non_linearity, config.inv_adapter_reduction_factor)
    module.apply(_init_bert)
    return module

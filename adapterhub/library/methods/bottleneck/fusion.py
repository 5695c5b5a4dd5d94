"""AdapterFusion (Pfeiffer et al., EACL 2021): attention over the outputs of several bottleneck adapters.

At a site where adapters ``a_1..a_n`` are fused, each adapter computes its scaled up-projection ``u_i`` from the
same input ``x`` (the state after the last fused adapter's pre-step). With the query ``q`` (``x``, or the
sub-layer output before the LayerNorm if ``query_before_ln``) and the adapter residual ``res``:

    Q = W_q q + b_q,   K_i = W_k u_i + b_k,   V_i = W_v u_i           (a missing projection is the identity)
    alpha = softmax_i(Q . K_i / T)
    out = sum_i alpha_i V_i + res

``residual_before`` adds ``res`` to every ``u_i`` first (and not at the end); ``value_before_softmax=False``
applies ``W_v`` to the mixed vector instead. Weight names (``query``, ``key``, ``value``) and the config fields
follow the AdapterHub format (``adapter_fusion_config.json``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
from torch import nn

from ...errors import AdapterConfigError


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    """Options of an AdapterFusion layer; defaults are those of the ``dynamic`` preset."""

    key: bool = True
    query: bool = True
    value: bool = True
    query_before_ln: bool = False
    regularization: bool = True
    residual_before: bool = False
    temperature: bool = False
    value_before_softmax: bool = True
    value_initialized: Any = True
    dropout_prob: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise AdapterConfigError(
                f"unknown AdapterFusion option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(names))}"
            )
        return cls(**data)

    @classmethod
    def load(cls, config: "FusionConfig | str | dict | None", **overrides: Any) -> "FusionConfig":
        """A preset name (``dynamic``, ``static``), a dict or a FusionConfig; ``None`` means ``dynamic``."""
        if config is None:
            config = "dynamic"
        if isinstance(config, FusionConfig):
            resolved = config
        elif isinstance(config, str):
            if config not in FUSION_PRESETS:
                raise AdapterConfigError(
                    f"unknown AdapterFusion config {config!r}; known presets: {', '.join(sorted(FUSION_PRESETS))}"
                )
            resolved = FUSION_PRESETS[config]
        elif isinstance(config, dict):
            resolved = cls.from_dict(config)
        else:
            raise AdapterConfigError(
                f"an AdapterFusion config must be a preset name, a dict or a FusionConfig, not {type(config).__name__}"
            )
        return dataclasses.replace(resolved, **overrides) if overrides else resolved

    def __post_init__(self) -> None:
        if self.dropout_prob is not None and not 0.0 <= float(self.dropout_prob) < 1.0:
            raise AdapterConfigError(
                f"AdapterFusion dropout_prob must be in [0, 1), got {self.dropout_prob!r}"
            )


FUSION_PRESETS = {
    "dynamic": FusionConfig(),
    "static": FusionConfig(value=False, regularization=False, value_initialized=False),
}


def _init_bert(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, mean=0.0, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class AdapterFusionLayer(nn.Module):
    def __init__(self, config: FusionConfig, hidden_size: int, dropout: float):
        super().__init__()
        self.config = config
        if config.query:
            self.query = nn.Linear(hidden_size, hidden_size)
        if config.key:
            self.key = nn.Linear(hidden_size, hidden_size)
        if config.value:
            self.value = nn.Linear(hidden_size, hidden_size, bias=False)
        if not (config.query or config.key or config.value):
            # kept for format compatibility: AdapterHub registers (but never uses) this projection
            self.dense = nn.Linear(hidden_size, 1)
        self.dropout = nn.Dropout(dropout)
        # Softmax temperature: with ``temperature`` it starts at 50 and is lowered by 0.05 per training step to 1.
        self.T = 50.0 if config.temperature else 1.0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for name in ("query", "key", "value"):
                if hasattr(self, name):
                    _init_bert(getattr(self, name))
            if self.config.value and self.config.value_initialized:
                # near-identity start: 1 on the diagonal, 1e-6 elsewhere
                self.value.weight.fill_(1e-6).fill_diagonal_(1.0)

    def forward(self, query: torch.Tensor, ups: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``query``, ``residual``: (..., H); ``ups``: the fused adapters' up-projections, (..., n, H)."""
        config = self.config
        if config.residual_before:
            ups = ups + residual.unsqueeze(-2)
        q = self.query(query) if config.query else query
        k = self.key(ups) if config.key else ups
        v = self.value(ups) if config.value and config.value_before_softmax else ups
        scores = torch.matmul(k, q.unsqueeze(-1)).squeeze(-1)  # (..., n)
        probs = torch.softmax(self.dropout(scores) / self.T, dim=-1)
        if self.training and config.temperature:
            self.T = max(self.T - 0.05, 1.0)
        out = torch.matmul(probs.unsqueeze(-2), v).squeeze(-2)
        if config.value and not config.value_before_softmax:
            out = self.value(out)
        return out if config.residual_before else out + residual

    def regularization_loss(self) -> torch.Tensor | None:
        """``0.01 * ||I - W_v||^2`` for fusion layers with a value matrix and ``regularization``."""
        if not (self.config.value and self.config.regularization):
            return None
        weight = self.value.weight
        identity = torch.eye(weight.shape[0], device=weight.device, dtype=weight.dtype)
        return 0.01 * (identity - weight).pow(2).sum()

"""Parameterized hypercomplex multiplication (PHM) layers: the projections of Compacter adapters.

A PHM layer replaces ``nn.Linear(d_in, d_out)`` by ``y = x @ H + b`` with

    H = sum_i  kron(A_i, W_i),   A_i: (n, n) "rule" matrices,  W_i: (d_in / n, d_out / n),  i = 1..n

so it has about ``1/n`` of the weights (Mahabadi et al., 2021). Compacter also factorises each ``W_i`` into
``W_left_i @ W_right_i`` (rank ``phm_rank``) and shares the rules ``A`` between all PHM layers of one adapter.

Parameter names follow the AdapterHub format: per layer ``W_left``, ``W_right`` (or ``W``), ``b`` and, when the
rule is not shared, ``phm_rule`` (or ``phm_rule_left`` / ``phm_rule_right``); shared weights live on the base
model as ``shared_parameters.<adapter>.{phm_rule, phm_rule_left, phm_rule_right, W_down_left, ...}``.

Initialisation follows the option names: ``hypercomplex_nonlinearity`` picks the init of ``W`` (``glorot-uniform``,
``glorot-normal``/``phm``: Xavier per slice; ``normal``: N(0, phm_init_range)); ``phm_c_init`` that of the rules.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import AdapterConfigError
from ..base import seeded

HYPERCOMPLEX_INITS = ("phm", "glorot-normal", "glorot-uniform", "normal")
RULE_INITS = ("normal", "uniform")


def phm_weight(rule: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``sum_i kron(rule[i], W[i])`` for rule (n, n, n) and W (n, p, q): the (n*p, n*q) weight, input-major."""
    n, p, q = W.shape
    # T[a, c, b, d] = sum_i rule[i, a, b] * W[i, c, d]; row a*p + c, column b*q + d is kron's layout
    return torch.einsum("iab,icd->acbd", rule, W).reshape(n * p, n * q)


def _init_W(config, *tensors: torch.Tensor) -> None:
    kind = config.hypercomplex_nonlinearity
    with torch.no_grad():
        for tensor in tensors:
            for i in range(tensor.shape[0]):
                if kind == "glorot-uniform":
                    nn.init.xavier_uniform_(tensor[i])
                elif kind == "normal":
                    nn.init.normal_(tensor[i], mean=0.0, std=config.phm_init_range)
                else:  # glorot-normal, phm
                    nn.init.xavier_normal_(tensor[i])


def _init_rule(config, tensors, shared: bool) -> None:
    # As in AdapterHub: shared rules start at N(0, phm_init_range) or U(-1, 1), per-layer rules at N(0, 0.01) or
    # U(-0.01, 0.01).
    with torch.no_grad():
        for tensor in tensors:
            if config.phm_c_init == "normal":
                nn.init.normal_(tensor, mean=0.0, std=config.phm_init_range if shared else 0.01)
            else:
                bound = 1.0 if shared else 0.01
                nn.init.uniform_(tensor, -bound, bound)


def check_phm_sizes(config, hidden_size: int, bottleneck_size: int, where: str) -> None:
    n = config.phm_dim
    for what, size in (("hidden size", hidden_size), ("bottleneck size", bottleneck_size)):
        if size % n:
            raise AdapterConfigError(
                f"Compacter (phm_layer) at {where}: the {what} {size} is not divisible by phm_dim={n}; "
                f"change reduction_factor or phm_dim"
            )


def shared_phm_parameters(config, hidden_size: int, bottleneck_size: int) -> nn.ParameterDict:
    """The weights shared by every PHM layer of one adapter (``shared_phm_rule`` / ``shared_W_phm``)."""
    n, rank = config.phm_dim, config.phm_rank
    params = nn.ParameterDict()
    with seeded(config.init_weights_seed):
        if config.shared_W_phm:
            h, d = hidden_size // n, bottleneck_size // n
            if config.factorized_phm_W:
                shapes = {
                    "W_down_left": (n, h, rank),
                    "W_down_right": (n, rank, d),
                    "W_up_left": (n, d, rank),
                    "W_up_right": (n, rank, h),
                }
            else:
                shapes = {"W_down": (n, h, d), "W_up": (n, d, h)}
            for key, shape in shapes.items():
                params[key] = nn.Parameter(torch.empty(shape))
            _init_W(config, *(params[k] for k in shapes))
        if config.shared_phm_rule:
            if config.factorized_phm_rule:
                shapes = {"phm_rule_left": (n, n, 1), "phm_rule_right": (n, 1, n)}
            else:
                shapes = {"phm_rule": (n, n, n)}
            for key, shape in shapes.items():
                params[key] = nn.Parameter(torch.empty(shape), requires_grad=bool(config.learn_phm))
            _init_rule(config, [params[k] for k in shapes], shared=True)
    return params


class PHMLayer(nn.Module):
    """A PHM projection ``d_in -> d_out``; ``position`` is ``"down"`` or ``"up"`` (which shared W it uses)."""

    def __init__(
        self,
        config,
        in_features: int,
        out_features: int,
        position: str,
        shared: nn.ParameterDict | None = None,
    ):
        super().__init__()
        n, rank = config.phm_dim, config.phm_rank
        self.config = config
        self.in_features, self.out_features, self.position = in_features, out_features, position
        # The shared weights belong to the base model; keep a reference without registering them here.
        self.__dict__["shared"] = shared
        p, q = in_features // n, out_features // n
        with seeded(config.init_weights_seed):
            if not config.shared_phm_rule:
                if config.factorized_phm_rule:
                    self.phm_rule_left = nn.Parameter(
                        torch.empty(n, n, 1), requires_grad=bool(config.learn_phm)
                    )
                    self.phm_rule_right = nn.Parameter(
                        torch.empty(n, 1, n), requires_grad=bool(config.learn_phm)
                    )
                    _init_rule(config, [self.phm_rule_left, self.phm_rule_right], shared=False)
                else:
                    self.phm_rule = nn.Parameter(torch.empty(n, n, n), requires_grad=bool(config.learn_phm))
                    _init_rule(config, [self.phm_rule], shared=False)
            if not config.shared_W_phm:
                if config.factorized_phm_W:
                    self.W_left = nn.Parameter(torch.empty(n, p, rank))
                    self.W_right = nn.Parameter(torch.empty(n, rank, q))
                    _init_W(config, self.W_left, self.W_right)
                else:
                    self.W = nn.Parameter(torch.empty(n, p, q))
                    _init_W(config, self.W)
        if config.phm_bias:
            self.b = nn.Parameter(torch.zeros(out_features))
        else:
            self.register_parameter("b", None)

    def _W(self) -> torch.Tensor:
        source, prefix = (self.shared, f"W_{self.position}") if self.config.shared_W_phm else (self, "W")
        if self.config.factorized_phm_W:
            return torch.bmm(_get(source, prefix + "_left"), _get(source, prefix + "_right"))
        return _get(source, prefix)

    def _rule(self) -> torch.Tensor:
        source = self.shared if self.config.shared_phm_rule else self
        if self.config.factorized_phm_rule:
            return torch.bmm(_get(source, "phm_rule_left"), _get(source, "phm_rule_right"))
        return _get(source, "phm_rule")

    def weight_matrix(self) -> torch.Tensor:
        """The dense (in_features, out_features) matrix H of this layer."""
        return phm_weight(self._rule(), self._W())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight_matrix())
        return y + self.b if self.b is not None else y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, phm_dim={self.config.phm_dim}"
        )


def _get(source, key: str) -> torch.Tensor:
    return source[key] if isinstance(source, nn.ParameterDict) else getattr(source, key)

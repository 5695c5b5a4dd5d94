"""The VeRA config (``"architecture": "vera"``)."""

from __future__ import annotations

import dataclasses
from typing import Union

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError


@register_config_class
@dataclasses.dataclass(frozen=True)
class VeRAConfig(AdapterConfig):
    """VeRA on chosen linear layers. ``target_modules``: module names or name suffixes, a regular expression
    matched against whole module paths (relative to the base model), or ``"all-linear"``; by default the
    attention's query and value projections. ``r``: the rank of the shared random matrices;
    ``projection_prng_key``: the seed they are drawn from; ``d_initial``: the initial value of ``λ_d``
    (``λ_b`` starts at zero, so a new adapter leaves the model unchanged)."""

    method = "vera"
    architecture = "vera"

    r: int = 256
    target_modules: Union[list, str, None] = None
    leave_out: list = dataclasses.field(default_factory=list)
    projection_prng_key: int = 0
    d_initial: float = 0.1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", sorted(int(i) for i in (self.leave_out or [])))
        if isinstance(self.target_modules, (tuple, set)):
            object.__setattr__(self, "target_modules", sorted(self.target_modules))
        problems = []
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            problems.append(f"r must be a positive integer, got {self.r!r}")
        key = self.projection_prng_key
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < 2**63:
            problems.append(f"projection_prng_key must be an integer in [0, 2^63), got {key!r}")
        if not isinstance(self.d_initial, (int, float)) or isinstance(self.d_initial, bool):
            problems.append(f"d_initial must be a number, got {self.d_initial!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        targets = self.target_modules
        if targets is not None and not (
            isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
        ):
            problems.append("target_modules must be a list of names, a regular expression or 'all-linear'")
        if problems:
            raise AdapterConfigError("invalid vera adapter config: " + "; ".join(problems))


register_preset("vera", VeRAConfig)

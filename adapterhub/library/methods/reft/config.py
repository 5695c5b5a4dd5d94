"""The ReFT configs (``"architecture": "reft"``), with the option names and defaults of the AdapterHub format."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError
from ..bottleneck.layers import activation

DTYPES = ("float32", "float16", "bfloat16", "float64")
#: options a saved ReFT config must hold (the AdapterHub base class has no defaults for them)
REQUIRED = ("layers", "prefix_positions", "suffix_positions", "r", "orthogonality")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@register_config_class
@dataclasses.dataclass(frozen=True, eq=False)
class ReftConfig(AdapterConfig):
    """Representation fine-tuning (Wu et al., 2024): an intervention on the output of each layer in ``layers``
    (``"all"`` or layer indices) at the first ``prefix_positions`` and the last ``suffix_positions`` tokens of
    every sequence (padding excluded): ``h + Rᵀ (act(W h + b) - R h)`` with a rank-``r`` projection ``R``
    (orthonormal rows with ``orthogonality``; ``subtract_projection=False`` leaves out ``- R h``), followed by
    ``dropout``. ``tied_weights``: prefix and suffix positions share one intervention (else one each).
    ``dtype``: the intervention's dtype (default: the model's)."""

    method = "reft"
    architecture = "reft"

    layers: Union[str, list]
    prefix_positions: int
    suffix_positions: int
    r: int
    orthogonality: bool
    tied_weights: bool = False
    subtract_projection: bool = True
    dropout: float = 0.05
    non_linearity: Optional[str] = None
    dtype: Optional[str] = None
    output_reft: bool = True
    init_weights_seed: Optional[int] = None

    def __eq__(self, other: object) -> bool:  # LoReftConfig() equals the ReftConfig read back from its file
        return isinstance(other, ReftConfig) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        missing = [key for key in REQUIRED if key not in data and not _has_default(cls, key)]
        if missing:
            raise AdapterConfigError(f"a reft adapter config needs the option(s) {', '.join(missing)}")
        return super().from_dict(data)

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, (list, tuple)) and all(_count(i) for i in layers):
            object.__setattr__(self, "layers", sorted(set(layers)))
        problems = []
        if layers != "all" and not (
            isinstance(layers, (list, tuple)) and layers and all(map(_count, layers))
        ):
            problems.append(f"layers must be 'all' or a non-empty list of layer indices, got {layers!r}")
        for option in ("prefix_positions", "suffix_positions"):
            if not _count(getattr(self, option)):
                problems.append(f"{option} must be a non-negative integer, got {getattr(self, option)!r}")
        if self.prefix_positions == 0 and self.suffix_positions == 0:
            problems.append(
                "prefix_positions and suffix_positions are both 0: no position gets an intervention"
            )
        if not _count(self.r) or self.r == 0:
            problems.append(f"r must be a positive integer, got {self.r!r}")
        for option in ("orthogonality", "tied_weights", "subtract_projection"):
            if not isinstance(getattr(self, option), bool):
                problems.append(f"{option} must be true or false, got {getattr(self, option)!r}")
        if self.output_reft is not True:
            problems.append("output_reft must be true (interventions sit on the layer outputs)")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.non_linearity is not None:
            try:
                activation(str(self.non_linearity))
            except AdapterConfigError as error:
                problems.append(str(error))
        if self.dtype is not None and self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES} or null, got {self.dtype!r}")
        seed = self.init_weights_seed
        if seed is not None and not _count(seed):
            problems.append(f"init_weights_seed must be a non-negative integer or null, got {seed!r}")
        if problems:
            raise AdapterConfigError("invalid reft adapter config: " + "; ".join(problems))


def _has_default(cls: type, key: str) -> bool:
    field = next(f for f in dataclasses.fields(cls) if f.name == key)
    return field.default is not dataclasses.MISSING


@dataclasses.dataclass(frozen=True, eq=False)
class LoReftConfig(ReftConfig):
    """Low-rank linear subspace ReFT (LoReFT): an orthonormal projection, the first 3 positions of every layer."""

    layers: Union[str, list] = "all"
    prefix_positions: int = 3
    suffix_positions: int = 0
    r: int = 1
    orthogonality: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class NoReftConfig(LoReftConfig):
    """LoReFT without the orthogonality constraint."""

    orthogonality: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class DiReftConfig(NoReftConfig):
    """DiReFT: no orthogonality and no subtracted projection, ``h + Rᵀ (act(W h + b))``."""

    subtract_projection: bool = False


register_preset("loreft", LoReftConfig)
register_preset("noreft", NoReftConfig)
register_preset("direft", DiReftConfig)

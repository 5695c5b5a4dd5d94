"""The prefix tuning config, with the option names and defaults of the AdapterHub format."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError

NON_LINEARITIES = ("tanh", "relu", "gelu", "silu", "swish")


@register_config_class
@dataclasses.dataclass(frozen=True)
class PrefixTuningConfig(AdapterConfig):
    """Prefix tuning (Li & Liang, 2021): ``prefix_length`` learned keys and values put before the sequence's
    own in the self-attention of every layer (minus ``leave_out``). With ``flat=False`` they are the output of
    an MLP (``wte`` -> Linear(hidden, ``bottleneck_size``) -> ``non_linearity`` -> Linear(., layers*2*hidden))
    shared by all layers, the reparametrisation of the paper; ``flat=True`` learns them directly.

    ``use_gating`` (UniPELT): each layer's prefix keys and values are scaled by a learned gate computed from the
    attention's input (one gate for both, or one each with ``shared_gating=False``).

    ``shift_positions`` (not in the AdapterHub format; set for adapters read from PEFT files): the model's
    position ids start at ``prefix_length``, as PEFT's prefixes (passed as a cache) make them.

    A format option without an effect here, whatever its value: ``cross_prefix`` (prefixes in the
    cross-attention of encoder-decoder models: no supported model family has one)."""

    method = "prefix_tuning"
    architecture = "prefix_tuning"
    extensions = {"shift_positions": False}

    encoder_prefix: bool = True
    cross_prefix: bool = True
    leave_out: list = dataclasses.field(default_factory=list)
    flat: bool = False
    prefix_length: int = 30
    bottleneck_size: int = 512
    non_linearity: str = "tanh"
    dropout: float = 0.0
    use_gating: bool = False
    shared_gating: bool = True
    init_weights_seed: Optional[int] = None
    shift_positions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", sorted(int(i) for i in (self.leave_out or [])))
        problems = []
        for option in ("prefix_length", "bottleneck_size"):
            value = getattr(self, option)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{option} must be a positive integer, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if str(self.non_linearity).lower() not in NON_LINEARITIES:
            problems.append(f"non_linearity must be one of {NON_LINEARITIES}, got {self.non_linearity!r}")
        if not self.encoder_prefix:
            problems.append("encoder_prefix=False leaves no self-attention with a prefix")
        if problems:
            raise AdapterConfigError("invalid prefix_tuning adapter config: " + "; ".join(problems))


register_preset("prefix_tuning", PrefixTuningConfig)
register_preset("prefix_tuning_flat", lambda: PrefixTuningConfig(flat=True))

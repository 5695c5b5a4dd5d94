"""Configuration of bottleneck adapters, with the option names and defaults of the AdapterHub format."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union, cast

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError

_INIT_WEIGHTS = ("bert", "mam_adapter", "houlsby")
_INV_ADAPTERS = (None, "nice", "glow")


@register_config_class
@dataclasses.dataclass(frozen=True)
class BnConfig(AdapterConfig):
    """A bottleneck adapter: ``up(act(down(x)))`` placed after the attention and/or feed-forward sub-layers.

    The fields and their defaults are those of the AdapterHub format (``adapter_config.json``), so configs
    move unchanged between this library and the ``adapters`` library.
    """

    method = "bottleneck"
    architecture = None

    mh_adapter: bool = False
    output_adapter: bool = True
    reduction_factor: Union[float, dict] = 16
    non_linearity: str = "relu"
    original_ln_before: bool = False
    original_ln_after: bool = True
    ln_before: bool = False
    ln_after: bool = False
    init_weights: str = "bert"
    init_weights_seed: Optional[int] = None
    is_parallel: bool = False
    scaling: Union[float, str] = 1.0
    use_gating: bool = False
    residual_before_ln: Union[bool, str] = True
    adapter_residual_before_ln: bool = False
    inv_adapter: Optional[str] = None
    inv_adapter_reduction_factor: Optional[float] = None
    cross_adapter: bool = False
    leave_out: list = dataclasses.field(default_factory=list)
    dropout: float = 0.0
    # Compacter (PHM) options: phm_layer=True makes both projections PHM layers (see phm.py).
    phm_layer: bool = False
    phm_dim: int = 4
    factorized_phm_W: Optional[bool] = True
    shared_W_phm: Optional[bool] = False
    shared_phm_rule: Optional[bool] = True
    factorized_phm_rule: Optional[bool] = False
    phm_c_init: Optional[str] = "normal"
    phm_init_range: Optional[float] = 0.0001
    learn_phm: Optional[bool] = True
    hypercomplex_nonlinearity: Optional[str] = "glorot-uniform"
    phm_rank: Optional[int] = 1
    phm_bias: Optional[bool] = True
    stochastic_depth: Optional[float] = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BnConfig":
        data = dict(data)
        legacy = data.pop("invertible_adapter", None)  # v1 format: nested invertible adapter settings
        if legacy:
            data.setdefault("inv_adapter", legacy.get("block_type"))
            data.setdefault("inv_adapter_reduction_factor", legacy.get("reduction_factor"))
        return cast(BnConfig, super().from_dict(data))  # an instance of this class

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", sorted(int(i) for i in (self.leave_out or [])))
        if isinstance(self.scaling, int) and not isinstance(self.scaling, bool):
            object.__setattr__(self, "scaling", float(self.scaling))
        problems = []
        if not (self.mh_adapter or self.output_adapter or self.inv_adapter):
            problems.append(
                "mh_adapter, output_adapter and inv_adapter are all off: the adapter would be empty"
            )
        rf = self.reduction_factor
        if isinstance(rf, dict):
            bad = {k: v for k, v in rf.items() if not isinstance(v, (int, float)) or v <= 0}
            if bad:
                problems.append(f"reduction_factor values must be positive numbers, got {bad}")
        elif not isinstance(rf, (int, float)) or isinstance(rf, bool) or rf <= 0:
            problems.append(f"reduction_factor must be a positive number or a per-layer dict, got {rf!r}")
        if self.init_weights not in _INIT_WEIGHTS:
            problems.append(f"init_weights must be one of {_INIT_WEIGHTS}, got {self.init_weights!r}")
        if not (isinstance(self.scaling, float) or self.scaling in ("learned", "channel")):
            problems.append(f"scaling must be a number, 'learned' or 'channel', got {self.scaling!r}")
        if self.residual_before_ln not in (True, False, "post_add"):
            problems.append(
                f"residual_before_ln must be true, false or 'post_add', got {self.residual_before_ln!r}"
            )
        if self.residual_before_ln == "post_add" and not self.original_ln_before:
            problems.append(
                "residual_before_ln='post_add' takes the residual after the sub-layer output and the residual "
                "stream are added, which only happens with original_ln_before=True (got original_ln_before=False)"
            )
        if self.inv_adapter not in _INV_ADAPTERS:
            problems.append(f"inv_adapter must be one of {_INV_ADAPTERS}, got {self.inv_adapter!r}")
        if self.inv_adapter and not self.inv_adapter_reduction_factor:
            problems.append("inv_adapter needs inv_adapter_reduction_factor")
        if not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.phm_layer:
            problems += _phm_problems(self)
        if self.stochastic_depth:
            problems.append("stochastic_depth is not supported (it is meant for vision models)")
        if self.cross_adapter:
            problems.append(
                "cross_adapter (adapters after the cross-attention of encoder-decoder models) is not supported: "
                "none of the supported model families has cross-attention"
            )
        from .layers import activation  # the activation name must be known

        try:
            activation(self.non_linearity)
        except AdapterConfigError as error:
            problems.append(str(error))
        if problems:
            raise AdapterConfigError("invalid bottleneck adapter config: " + "; ".join(problems))

    def bottleneck_size(self, hidden_size: int, layer: int) -> int:
        rf = self.reduction_factor
        if isinstance(rf, dict):
            if str(layer) in rf:
                rf = rf[str(layer)]
            elif "default" in rf:
                rf = rf["default"]
            else:
                raise AdapterConfigError(
                    f"reduction_factor {rf} gives no value for layer {layer}; add a 'default' entry"
                )
        return max(1, int(hidden_size // rf))


def _phm_problems(config: "BnConfig") -> list[str]:
    from .phm import HYPERCOMPLEX_INITS, RULE_INITS

    problems = []
    for name in ("phm_dim", "phm_rank"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name} must be a positive integer, got {value!r}")
    if config.hypercomplex_nonlinearity not in HYPERCOMPLEX_INITS:
        problems.append(
            f"hypercomplex_nonlinearity must be one of {HYPERCOMPLEX_INITS}, got {config.hypercomplex_nonlinearity!r}"
        )
    if config.phm_c_init not in RULE_INITS:
        problems.append(f"phm_c_init must be one of {RULE_INITS}, got {config.phm_c_init!r}")
    if config.init_weights != "bert":
        # the AdapterHub library fails on these too: its PHM layers have no .weight to initialise
        problems.append(f"phm_layer needs init_weights='bert', got {config.init_weights!r}")
    if config.shared_W_phm and isinstance(config.reduction_factor, dict):
        problems.append(
            "shared_W_phm shares W across layers, so reduction_factor must be one number, not a dict"
        )
    return problems


def _preset(**kwargs: Any):
    return lambda: BnConfig(**kwargs)


_SEQ = dict(
    original_ln_before=True, mh_adapter=False, output_adapter=True, non_linearity="relu", reduction_factor=16
)
_DOUBLE = dict(
    original_ln_before=False, mh_adapter=True, output_adapter=True, non_linearity="swish", reduction_factor=16
)
_PAR = dict(
    mh_adapter=False,
    output_adapter=True,
    non_linearity="relu",
    reduction_factor=2,
    init_weights="mam_adapter",
    is_parallel=True,
    scaling=4.0,
)
_INV = dict(inv_adapter="nice", inv_adapter_reduction_factor=2)
_COMPACTER = dict(phm_layer=True, reduction_factor=32, non_linearity="gelu")

for _names, _kwargs in {
    ("seq_bn", "pfeiffer"): _SEQ,
    ("double_seq_bn", "houlsby"): _DOUBLE,
    ("par_bn", "parallel"): _PAR,
    ("scaled_par_bn", "scaled_parallel"): {**_PAR, "scaling": "learned"},
    ("seq_bn_inv", "pfeiffer+inv"): {**_SEQ, **_INV},
    ("double_seq_bn_inv", "houlsby+inv"): {**_DOUBLE, **_INV},
    ("compacter",): {**_DOUBLE, **_COMPACTER},
    ("compacter++",): {**_SEQ, **_COMPACTER},
}.items():
    for _name in _names:
        register_preset(_name, _preset(**_kwargs))

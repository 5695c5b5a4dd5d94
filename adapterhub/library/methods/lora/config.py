"""LoRA and (IA)^3 configs, with the option names and defaults of the AdapterHub format.

In the AdapterHub format both are ``"architecture": "lora"`` configs; ``composition_mode`` tells them apart
(``"add"``: LoRA, ``"scale"``: IA3). Options beyond that format (``use_rslora``, ``target_modules``,
``feedforward_modules``) are written only when set, so that files with default options stay readable by the
``adapters`` library.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError

ATTN_MATRICES = ("q", "k", "v")
LORA_INITS = ("lora", "gaussian", "bert", "ia3")
IA3_INITS = ("ia3", "lora", "bert")
DTYPES = (None, "float32", "float16", "bfloat16", "float64")


@register_config_class
@dataclasses.dataclass(frozen=True)
class LoRAConfig(AdapterConfig):
    """LoRA (Hu et al., 2021): ``W x + b + s · B A dropout(x)`` on chosen linear layers, ``s = alpha / r``
    (``alpha / sqrt(r)`` with ``use_rslora``); with ``use_dora`` DoRA (Liu et al., 2024).

    Targets, AdapterHub style: ``selfattn_lora`` (the attention matrices in ``attn_matrices``, of q/k/v),
    ``intermediate_lora`` and ``output_lora`` (the feed-forward in/out projections), minus the layers in
    ``leave_out``. PEFT style: ``target_modules`` (a list of module names or name suffixes, a regular expression
    matched against whole module paths, or ``"all-linear"``), which replaces the AdapterHub targets; module
    paths are relative to the base model (``encoder.layer.0.attention.self.query``)."""

    method = "lora"
    architecture = "lora"
    extensions = {"use_rslora": False, "target_modules": None, "feedforward_modules": None}

    selfattn_lora: bool = True
    intermediate_lora: bool = False
    output_lora: bool = False
    leave_out: list = dataclasses.field(default_factory=list)
    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    attn_matrices: list = dataclasses.field(default_factory=lambda: ["q", "v"])
    composition_mode: str = "add"
    init_weights: str = "lora"
    init_weights_seed: Optional[int] = None
    use_gating: bool = False
    use_dora: bool = False
    vera_d: Optional[float] = None
    vera_b: Optional[float] = None
    dtype: Optional[str] = None
    use_rslora: bool = False
    target_modules: Union[list, str, None] = None
    feedforward_modules: Union[list, str, None] = None  # IA3 only

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        if cls is LoRAConfig and data.get("composition_mode") == "scale":
            return IA3Config.from_dict(data)
        return super().from_dict(data)

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", sorted(int(i) for i in (self.leave_out or [])))
        object.__setattr__(self, "attn_matrices", list(self.attn_matrices or []))
        if isinstance(self.target_modules, (tuple, set)):
            object.__setattr__(self, "target_modules", sorted(self.target_modules))
        if isinstance(self.feedforward_modules, (tuple, set)):
            object.__setattr__(self, "feedforward_modules", sorted(self.feedforward_modules))
        problems = self._problems()
        if problems:
            raise AdapterConfigError(f"invalid {self.method} adapter config: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            problems.append(f"r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool):
            problems.append(f"alpha must be a number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        bad = [m for m in self.attn_matrices if m not in ATTN_MATRICES]
        if bad:
            problems.append(f"attn_matrices may hold {', '.join(ATTN_MATRICES)}; got {bad}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.use_gating and (self.use_dora or self.composition_mode != "add"):
            problems.append("use_gating (gated LoRA, as in UniPELT) is for plain LoRA, not DoRA or IA3")
        if self.vera_d is not None or self.vera_b is not None:
            problems.append("vera_d / vera_b: VeRA is its own method here, the `vera` config")
        targets = self.target_modules
        if targets is not None and not (
            isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
        ):
            problems.append("target_modules must be a list of names, a regular expression or 'all-linear'")
        if targets is None and not (
            (self.selfattn_lora and self.attn_matrices) or self.intermediate_lora or self.output_lora
        ):
            problems.append(
                "no target: selfattn_lora (with attn_matrices), intermediate_lora and output_lora are off"
            )
        if self.composition_mode == "add":
            if self.init_weights not in LORA_INITS:
                problems.append(f"init_weights must be one of {LORA_INITS}, got {self.init_weights!r}")
            if self.feedforward_modules is not None:
                problems.append("feedforward_modules is an IA3 option (composition_mode='scale')")
        elif self.composition_mode != "scale":
            problems.append(
                f"composition_mode must be 'add' (LoRA) or 'scale' (IA3), got {self.composition_mode!r}"
            )
        return problems


@dataclasses.dataclass(frozen=True)
class IA3Config(LoRAConfig):
    """(IA)^3 (Liu et al., 2022): learned vectors that scale the outputs of the targeted layers
    (``(W x + b) · alpha · l``), or, for layers matched by ``feedforward_modules`` (PEFT's option), their inputs
    (``W (l · x) + b``). Targets as for :class:`LoRAConfig`; by default the keys, values and the feed-forward
    intermediate projection."""

    method = "ia3"

    selfattn_lora: bool = True
    intermediate_lora: bool = True
    output_lora: bool = False
    r: int = 1
    alpha: float = 1
    attn_matrices: list = dataclasses.field(default_factory=lambda: ["k", "v"])
    composition_mode: str = "scale"
    init_weights: str = "ia3"

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if self.composition_mode != "scale":
            problems.append("an IA3 config has composition_mode 'scale'")
        if self.r != 1:
            problems.append(f"IA3 needs r=1, got {self.r!r}")
        if self.dropout:
            problems.append("IA3 has no dropout")
        if self.use_dora:
            problems.append("IA3 has no DoRA form")
        if self.use_rslora:
            problems.append("use_rslora is a LoRA option")
        if self.init_weights not in IA3_INITS:
            problems.append(f"init_weights must be one of {IA3_INITS}, got {self.init_weights!r}")
        return problems


register_preset("lora", LoRAConfig)
register_preset("dora", lambda: LoRAConfig(use_dora=True))
register_preset("ia3", IA3Config)

"""``ConfigUnion`` (``"architecture": "union"``, the AdapterHub format: ``{"architecture": "union", "configs":
[<config>, ...]}``) and the ``mam`` and ``unipelt`` presets."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...configs import UNION, AdapterConfig, register_config_class, register_preset, resolve_config
from ...errors import AdapterConfigError
from ..base import method_for
from ..bottleneck.config import BnConfig
from ..lora.config import LoRAConfig
from ..prefix.config import PrefixTuningConfig


@register_config_class
@dataclasses.dataclass(frozen=True, init=False)
class ConfigUnion(AdapterConfig):
    """Several methods' configs as one adapter: ``ConfigUnion(PrefixTuningConfig(), BnConfig(...))``.

    Two parts that the same method runs are refused unless that method can keep both under one name
    (bottleneck adapters at different positions, :meth:`Method.combinable`); parts that still meet at the same
    place (through ``leave_out`` or two invertible adapters) are refused when the adapter is added.
    ``replace(option=value)`` (and ``"mam[option=value]"``) changes every part that has the option."""

    method = "union"
    architecture = UNION

    configs: tuple = ()

    def __init__(self, *configs: AdapterConfig):
        if len(configs) == 1 and isinstance(configs[0], (list, tuple)):
            configs = tuple(configs[0])
        object.__setattr__(self, "configs", tuple(configs))
        self._check()

    def _check(self) -> None:
        if not self.configs:
            raise AdapterConfigError("a ConfigUnion needs at least one config")
        for config in self.configs:
            if isinstance(config, ConfigUnion):
                raise AdapterConfigError(
                    "a ConfigUnion cannot hold another ConfigUnion; list its configs instead"
                )
            if not isinstance(config, AdapterConfig):
                raise AdapterConfigError(
                    f"a ConfigUnion holds adapter configs, not {type(config).__name__} ({config!r})"
                )
        for i, a in enumerate(self.configs):
            for j in range(i):
                b = self.configs[j]
                method = method_for(a)
                if method is method_for(b) and not method.combinable(a, b):
                    raise AdapterConfigError(
                        f"configs {j} and {i} of the union are both {method.name} configs ({type(b).__name__}, "
                        f"{type(a).__name__}), which cannot be combined in one adapter"
                    )

    def parts(self) -> tuple[AdapterConfig, ...]:
        return self.configs

    def with_part(self, old: AdapterConfig, new: AdapterConfig) -> AdapterConfig:
        if not any(part is old for part in self.configs):
            raise AdapterConfigError(f"{old!r} is not a part of this union")
        return ConfigUnion(*[new if part is old else part for part in self.configs])

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": UNION, "configs": [config.to_dict() for config in self.configs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        unknown = sorted(set(data) - {"architecture", "configs"})
        if unknown:
            raise AdapterConfigError(f"unknown option(s) {', '.join(map(repr, unknown))} for a union config")
        configs = data.get("configs")
        if not isinstance(configs, (list, tuple)) or not all(isinstance(c, dict) for c in configs):
            raise AdapterConfigError("a union config needs 'configs': a list of config dicts")
        return cls(*[resolve_config(dict(c)) for c in configs])

    def replace(self, **changes: Any) -> AdapterConfig:
        options = [set(part.to_dict()) for part in self.configs]
        unknown = sorted(k for k in changes if not any(k in own for own in options))
        if unknown:
            raise AdapterConfigError(
                f"no part of the union ({', '.join(type(c).__name__ for c in self.configs)}) has the option(s) "
                f"{', '.join(map(repr, unknown))}"
            )
        return ConfigUnion(
            *[
                part.replace(**{k: v for k, v in changes.items() if k in own}) if own & set(changes) else part
                for part, own in zip(self.configs, options)
            ]
        )


def mam_config(
    prefix_tuning: PrefixTuningConfig | None = None, adapter: BnConfig | None = None
) -> ConfigUnion:
    """Mix-and-Match adapters (He et al., 2022): prefix tuning (bottleneck 800) and a parallel bottleneck
    adapter (``par_bn``), as the AdapterHub ``MAMConfig``."""
    return ConfigUnion(
        prefix_tuning or PrefixTuningConfig(bottleneck_size=800),
        adapter or resolve_config("par_bn"),
    )


def unipelt_config(
    prefix_tuning: PrefixTuningConfig | None = None,
    adapter: BnConfig | None = None,
    lora: LoRAConfig | None = None,
) -> ConfigUnion:
    """UniPELT (Mao et al., 2022): prefix tuning (length 10), a sequential bottleneck adapter (reduction 16)
    and LoRA (r 8, alpha 2), each with a learned gate (``use_gating``), as the AdapterHub ``UniPELTConfig``."""
    parts = (
        prefix_tuning or PrefixTuningConfig(prefix_length=10),
        adapter or resolve_config("seq_bn[reduction_factor=16]"),
        lora or LoRAConfig(r=8, alpha=2),
    )
    return ConfigUnion(*[part.replace(use_gating=True) for part in parts])


register_preset("mam", mam_config)
register_preset("unipelt", unipelt_config)

"""VeRA inside a model: the shared random projections, the per-layer scaling vectors and their hooks."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import get_module
from ..base import Hooks, Method, register_method
from ..layer_targets import LayerTargets
from ..lora.layers import dense_weight
from ..lora.method import LINEAR_TYPES, matches
from .config import VeRAConfig
from .projections import projections


class VeRA(nn.Module):
    """The trained vectors of one adapter at one layer (``lambda_b`` ``[out]``, ``lambda_d`` ``[r]``) and
    non-persistent views of the shared projections, sliced to the layer."""

    def __init__(self, config: VeRAConfig, A: torch.Tensor, B: torch.Tensor, weight: torch.Tensor):
        super().__init__()
        out_features, in_features = weight.shape
        dtype, device = weight.dtype, weight.device
        self.lambda_b = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))
        self.lambda_d = nn.Parameter(
            torch.full((config.r,), float(config.d_initial), dtype=dtype, device=device)
        )
        self.register_buffer("vera_A", A[:, :in_features].to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("vera_B", B[:out_features, :].to(device=device, dtype=dtype), persistent=False)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x) if self.dropout is not None else x
        A, B = cast(torch.Tensor, self.vera_A), cast(torch.Tensor, self.vera_B)
        return self.lambda_b * F.linear(self.lambda_d * F.linear(x.to(A.dtype), A), B)

    def merged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        A, B = cast(torch.Tensor, self.vera_A), cast(torch.Tensor, self.vera_B)
        return weight + (self.lambda_b[:, None] * B) @ (self.lambda_d[:, None] * A)


class Target:
    """One linear layer holding VeRA modules in ``.veras``."""

    def __init__(self, module: nn.Module):
        self.module = module
        if "veras" not in module._modules:
            module.add_module("veras", nn.ModuleDict())
        self.veras = cast(nn.ModuleDict, module.veras)
        self.active: str | None = None
        self.original: torch.Tensor | None = None
        self.hooks = Hooks()

    def set_active(self, name: str | None) -> None:
        self.hooks.clear()
        self.active = name if name is not None and name in self.veras else None
        if self.active is not None:
            self.hooks.add(self.module.register_forward_hook(self._adapt_output))

    def merge(self, name: str) -> None:
        with torch.no_grad():
            stored = cast(torch.Tensor, self.module.weight)
            self.original = stored.detach().clone()
            new = cast(VeRA, self.veras[name]).merged_weight(dense_weight(self.module))
            stored.copy_(new if isinstance(self.module, nn.Linear) else new.t())

    def unmerge(self) -> None:
        if self.original is not None:
            with torch.no_grad():
                cast(torch.Tensor, self.module.weight).copy_(self.original)
            self.original = None

    def _adapt_output(self, module, args, output):  # reads only the configuration, keeps nothing of a call
        return output + cast(VeRA, self.veras[self.active]).delta(args[0]).to(output.dtype)


@register_method
class VeRAMethod(LayerTargets, Method):
    """VeRA adapters on the linear layers of one model (one active at a time)."""

    name = "vera"
    config_classes = (VeRAConfig,)
    containers = ("veras",)
    compositions = frozenset()
    peft_types = ("VERA",)

    def __init__(self, host) -> None:
        super().__init__(host)
        self.targets: dict[str, Target] = {}
        self.merged_name: str | None = None

    def _paths(self, config: VeRAConfig) -> list[str]:
        arch = self.host.architecture
        layers = arch.layers + "."
        if config.target_modules is None:
            if "qkv" in arch.linears:
                raise AdapterConfigError(
                    "this model family fuses q, k and v into one projection: name VeRA's target_modules"
                )
            wanted = [
                f"{layers}{i}.{arch.linears[m]}"
                for i in range(len(self.host.layers))
                for m in ("q", "v")
                if i not in config.leave_out
            ]
            return wanted
        found = []
        for path, module in self.host.base_model.named_modules():
            if not isinstance(module, LINEAR_TYPES) or ".veras." in path or ".loras." in path:
                continue
            if path.startswith(layers) and int(path[len(layers) :].split(".")[0]) in config.leave_out:
                continue
            if matches(config.target_modules, path, self.host.prefix):
                found.append(path)
        return found

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, VeRAConfig):
            raise AdapterConfigError(f"the VeRA method runs VeRA configs, not {type(config).__name__}")
        paths = self._paths(config)
        if not paths:
            raise AdapterConfigError(f"target_modules {config.target_modules!r} matches no linear layer")
        modules = {}
        for path in paths:
            module = get_module(self.host.base_model, path)
            if not isinstance(module, LINEAR_TYPES):
                raise AdapterConfigError(
                    f"VeRA target {path!r} is a {type(module).__name__}, not a linear layer"
                )
            modules[path] = module
        shapes = [dense_weight(m).shape for m in modules.values()]
        A, B = projections(config, max(s[1] for s in shapes), max(s[0] for s in shapes))
        for path, module in modules.items():
            target = self.targets.setdefault(path, Target(module))
            vera = VeRA(config, A, B, dense_weight(module).detach())
            vera.train(module.training)
            target.veras[name] = vera

    # -- the PEFT format --

    @classmethod
    def from_peft(cls, peft_config, weights, host):
        from .peft import from_peft

        return from_peft(peft_config, weights, host)

    def to_peft(self, name: str):
        from .peft import to_peft

        return to_peft(self, name)

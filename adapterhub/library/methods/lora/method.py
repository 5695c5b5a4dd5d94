"""LoRA and IA3 inside a model: which linear layers they target, the hooks that apply them, merging."""

from __future__ import annotations

import re
from typing import cast

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import get_module
from ..base import Hooks, Method, register_method
from ..layer_targets import LayerTargets
from .config import ATTN_MATRICES, IA3Config, LoRAConfig
from .layers import IA3, LoRA, Blocks, dense_weight

LINEAR_TYPES = (nn.Linear, Conv1D)


def matches(patterns, path: str, prefix: str = "") -> bool:
    """PEFT's rule: a regular expression matches the whole path; a list entry the path or a suffix of it.
    ``path`` is relative to the base model; ``prefix`` (``bert.``) makes the path PEFT sees in a model with a
    head, which a regular expression may have been written against."""
    if patterns is None:
        return False
    if isinstance(patterns, str):
        if patterns == "all-linear":
            return True
        return any(re.fullmatch(patterns, p) is not None for p in {path, prefix + path})
    return any(path == p or path.endswith("." + p) for p in patterns)


class Target:
    """One linear layer (``nn.Linear`` or GPT-2's ``Conv1D``) that holds LoRA / IA3 modules in ``.loras``."""

    def __init__(self, path: str, module: nn.Module):
        self.path = path
        self.module = module
        if "loras" not in module._modules:
            module.add_module("loras", nn.ModuleDict())
        self.loras = cast(nn.ModuleDict, module.loras)
        self.active: str | None = None
        self.original: tuple[torch.Tensor, torch.Tensor | None] | None = None  # weights before a merge
        self.hooks = Hooks()

    @property
    def in_features(self) -> int:
        return dense_weight(self.module).shape[1]

    @property
    def out_features(self) -> int:
        return dense_weight(self.module).shape[0]

    def set_active(self, name: str | None) -> None:
        self.hooks.clear()
        self.active = name if name is not None and name in self.loras else None
        if self.active is None:
            return
        adapter = self.loras[self.active]
        if isinstance(adapter, IA3) and adapter.on_input:
            self.hooks.add(self.module.register_forward_pre_hook(self._scale_input))
        else:
            self.hooks.add(self.module.register_forward_hook(self._adapt_output))

    # hooks: they read only the configuration (the active adapter), never keep anything of a call
    def _scale_input(self, module, args):
        return (self.loras[self.active].scale_input(args[0]),) + tuple(args[1:])

    def _adapt_output(self, module, args, output):
        return self.loras[self.active](module, args[0], output)

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return cast(torch.Tensor, self.module.weight), cast("torch.Tensor | None", self.module.bias)

    def merge(self, name: str) -> None:
        adapter = self.loras[name]
        stored, bias = self._weights()
        weight = dense_weight(self.module)
        with torch.no_grad():
            if isinstance(adapter, IA3):
                new_weight, new_bias = adapter.merged(weight, bias)
            else:
                new_weight, new_bias = cast(LoRA, adapter).merged_weight(weight), None
            self.original = (stored.detach().clone(), None if bias is None else bias.detach().clone())
            stored.copy_(new_weight if isinstance(self.module, nn.Linear) else new_weight.t())
            if bias is not None and new_bias is not None:
                bias.copy_(new_bias)

    def unmerge(self) -> None:
        if self.original is None:
            return
        weight, bias = self.original
        stored, stored_bias = self._weights()
        with torch.no_grad():
            stored.copy_(weight)
            if bias is not None and stored_bias is not None:
                stored_bias.copy_(bias)
        self.original = None


@register_method
class LoRAMethod(LayerTargets, Method):
    """LoRA (with DoRA and rsLoRA) and IA3 adapters on the linear layers of one model."""

    name = "lora"
    config_classes = (LoRAConfig, IA3Config)
    containers = ("loras",)
    compositions = frozenset()  # one LoRA/IA3 adapter active at a time (next to adapters of other methods)
    peft_types = ("LORA", "IA3")

    def __init__(self, host) -> None:
        super().__init__(host)
        self.targets: dict[str, Target] = {}  # module path (relative to the base model) -> target
        self.merged_name: str | None = None

    # -- targets --

    def _layer_paths(self, config: LoRAConfig) -> list[tuple[str, tuple[int, ...] | None]]:
        """AdapterHub targets: (module path, the enabled q/k/v blocks of a fused projection, else None)."""
        arch = self.host.architecture
        wanted: list[tuple[str, tuple[int, ...] | None]] = []
        for index in range(len(self.host.layers)):
            if index in config.leave_out:
                continue
            prefix = f"{arch.layers}.{index}."
            roles = []
            if config.selfattn_lora and config.attn_matrices:
                if "qkv" in arch.linears:  # one fused projection for q, k and v
                    blocks = tuple(ATTN_MATRICES.index(m) for m in ATTN_MATRICES if m in config.attn_matrices)
                    wanted.append((prefix + arch.linears["qkv"], blocks))
                else:
                    roles += [m for m in ATTN_MATRICES if m in config.attn_matrices]
            # the family's map says which linear layers the feed-forward options wrap (the AdapterHub format's)
            if config.intermediate_lora:
                roles.append(arch.ffn_lora_roles["intermediate_lora"])
            if config.output_lora:
                roles.append(arch.ffn_lora_roles["output_lora"])
            for role in roles:
                if role not in arch.linears:
                    raise AdapterConfigError(f"this model family has no {role!r} linear layer for LoRA")
                wanted.append((prefix + arch.linears[role], None))
        return wanted

    def _pattern_paths(self, config: LoRAConfig) -> list[tuple[str, None]]:
        """PEFT-style targets: the linear layers of the base model whose path matches ``target_modules``."""
        layers = self.host.architecture.layers + "."
        found = []
        for path, module in self.host.base_model.named_modules():
            if not isinstance(module, LINEAR_TYPES) or ".loras." in path:
                continue
            if path.startswith(layers) and int(path[len(layers) :].split(".")[0]) in config.leave_out:
                continue
            if matches(config.target_modules, path, self.host.prefix):
                found.append((path, None))
        return found

    def _target(self, path: str) -> Target:
        if path not in self.targets:
            module = get_module(self.host.base_model, path)
            if not isinstance(module, LINEAR_TYPES):
                raise AdapterConfigError(
                    f"LoRA target {path!r} is a {type(module).__name__}, not a linear layer"
                )
            self.targets[path] = Target(path, module)
        return self.targets[path]

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, LoRAConfig):
            raise AdapterConfigError(
                f"the LoRA method runs LoRA and IA3 configs, not {type(config).__name__}"
            )
        wanted = (
            self._pattern_paths(config) if config.target_modules is not None else self._layer_paths(config)
        )
        if not wanted:
            raise AdapterConfigError(
                f"target_modules {config.target_modules!r} matches no linear layer of this model"
            )
        for path, fused in wanted:
            target = self._target(path)
            weight = dense_weight(target.module).detach()
            if fused is not None:
                blocks = Blocks(target.out_features, len(ATTN_MATRICES), fused)
            else:
                blocks = Blocks(target.out_features)
            module: nn.Module
            if isinstance(config, IA3Config):
                on_input = matches(config.feedforward_modules, path, self.host.prefix)
                module = IA3(config, target.in_features, blocks, on_input, weight)
            else:
                module = LoRA(config, target.in_features, blocks, weight)
            module.train(target.module.training)
            target.loras[name] = module

    def merge(self, name: str) -> None:
        if cast(LoRAConfig, self.config(name)).use_gating:
            raise AdapterConfigError(
                f"{name!r} is a gated LoRA adapter (use_gating): its gate depends on each input, so it cannot be "
                "folded into the weights; use it unmerged"
            )
        super().merge(name)

    def paths(self, name: str) -> list[str]:
        return [path for path, t in self.targets.items() if name in t.loras]

    # -- the PEFT format --

    @classmethod
    def from_peft(cls, peft_config, weights, host):
        from .peft import from_peft

        return from_peft(peft_config, weights, host)

    def to_peft(self, name: str):
        from .peft import to_peft

        return to_peft(self, name)

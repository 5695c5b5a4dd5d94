"""Runs bottleneck adapters inside a model through forward hooks (no modeling code is copied or patched).

One :class:`BottleneckSite` per (layer, location). While at least one adapter is active there it holds the
hooks that the active setup needs: a pre-hook that captures the residual stream ``r``; a forward hook on the
sub-layer that replaces its output ``h`` by what the host must add to ``r`` instead; and (only for
``original_ln_after=False`` in post-LN models) a hook on the host's LayerNorm that returns the adapter's output
unchanged.

With no active adapter there are no hooks at all, so the model computes exactly what it computed before. What
one hook hands to the next within a call (``r``, the norm's replacement) is kept per thread
(:class:`~..base.CallState`), so several threads can run one model at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import torch
from torch import nn

from ...architectures import Site
from ...composition import Block, Fuse
from ...paths import add_container, get_module, get_or_create_module
from ..base import CallState, Hooks
from .fusion import AdapterFusionLayer
from .layers import Bottleneck


class _Adapters(Protocol):
    """A site's ``adapters`` ModuleDict as the site uses it: adapter name -> its :class:`Bottleneck`."""

    def __getitem__(self, name: str) -> Bottleneck: ...
    def __setitem__(self, name: str, module: nn.Module) -> None: ...
    def __delitem__(self, name: str) -> None: ...
    def __contains__(self, name: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...


class BottleneckSite:
    def __init__(self, layer: nn.Module, index: int, location: str, spec: Site):
        self.index = index
        self.location = location
        self.spec = spec
        container = get_or_create_module(layer, spec.container)
        self.adapters = cast(_Adapters, add_container(container, "adapters"))  # holds Bottleneck modules only
        self.container = container
        self.output_module = get_module(layer, spec.output)
        self.residual_module = get_module(layer, spec.residual)
        self.norm = get_module(layer, spec.norm) if spec.norm else None
        self.active: list[str] = []
        self.plan: list = []  # the active setup at this site: adapter names and Fuse blocks, in order
        self.hooks = Hooks()
        self._call = CallState()  # "residual": r seen by the pre-hook; "override": the norm's replacement

    @property
    def fusion_layers(self) -> nn.ModuleDict | None:
        return cast("nn.ModuleDict | None", self.container._modules.get("adapter_fusion_layer"))

    def add_fusion(self, name: str, layer: nn.Module) -> None:
        add_container(self.container, "adapter_fusion_layer")[name] = layer

    def delete_fusion(self, name: str) -> None:
        layers = self.fusion_layers
        if layers is not None and name in layers:
            del layers[name]
            if not len(layers):
                del self.container._modules["adapter_fusion_layer"]

    def _plan(self, setup: Block | None) -> list:
        """The steps of ``setup`` that exist here (a Fuse runs where its fusion layer is, i.e. all its adapters)."""
        if setup is None:
            return []
        plan: list[str | Fuse] = []
        for step in [setup] if isinstance(setup, Fuse) else setup.children:
            if isinstance(step, str):
                if step in self.adapters:
                    plan.append(step)
            elif self.fusion_layers is not None and step.name in self.fusion_layers:
                plan.append(step)
        return plan

    def set_active(self, names: list[str], setup: Block | None = None) -> None:
        """Activate ``setup`` (a Stack or Fuse; without it, ``names`` as a stack) at this site."""
        self.plan = self._plan(setup) if setup is not None else [n for n in names if n in self.adapters]
        self.active = [n for step in self.plan for n in ([step] if isinstance(step, str) else step.names())]
        self.hooks.clear()
        if not self.plan:
            return
        last = self.adapters[self._last_name()]
        self.hooks.add(self.residual_module.register_forward_pre_hook(self._capture, with_kwargs=True))
        self.hooks.add(self.output_module.register_forward_hook(self._replace_output))
        if not last.config.original_ln_after and self.norm is not None:
            self.hooks.add(self.norm.register_forward_hook(self._replace_norm_output))

    def _last_name(self) -> str:
        step = self.plan[-1]
        return step if isinstance(step, str) else step.last()

    def _fuse(self, block: Fuse, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """AdapterFusion: the fused adapters all read the state after the last one's pre-step (as AdapterHub)."""
        layers = self.fusion_layers
        assert layers is not None  # a Fuse block is planned only where its fusion layer is
        fusion = cast(AdapterFusionLayer, layers[block.name])
        last = self.adapters[block.last()]
        adapter_input, residual = last.pre_forward(x, r, self.norm)
        query = x if fusion.config.query_before_ln and not last.parallel else adapter_input
        ups = torch.stack([self._child_up(child, adapter_input, r) for child in block.children], dim=-2)
        return fusion(query, ups, residual)

    def _child_up(self, child, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The up-projection that a Fuse child contributes: an adapter's on ``x``; a Stack's last adapter's after
        the stack ran on ``x`` (each of its adapters with its own pre-step, as AdapterHub)."""
        if isinstance(child, str):
            return self.adapters[child].bottleneck_up(x)
        names = [n for n in child.children if n in self.adapters]
        for name in names[:-1]:
            adapter = self.adapters[name]
            x = adapter(*adapter.pre_forward(x, r, self.norm))
        last = self.adapters[names[-1]]
        return last.bottleneck_up(last.pre_forward(x, r, self.norm)[0])

    def _capture(self, module, args, kwargs):
        position, name = self.spec.residual_arg
        self._call.put("residual", args[position] if len(args) > position else kwargs[name])

    def _replace_output(self, module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        r = self._call.take("residual")
        if r is None:
            raise RuntimeError(
                f"adapter site {self.location} of layer {self.index}: the residual input was not seen before the "
                f"sub-layer output; the architecture description does not match this model"
            )
        new_h = self.forward(h, r)
        return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

    def _replace_norm_output(self, module, args, output):
        override = self._call.take("override")
        return output if override is None else override

    def forward(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """The active setup on sub-layer output ``h``; returns the host's new ``h``."""
        x = h
        for step in self.plan:
            if isinstance(step, str):
                adapter = self.adapters[step]
                adapter_input, residual = adapter.pre_forward(x, r, self.norm)
                x = adapter(adapter_input, residual)
            else:
                x = self._fuse(step, x, r)
        last = self.adapters[self._last_name()]
        new_h = last.delta_input(x, h)
        if last.config.original_ln_after:
            return new_h  # the host computes norm(new_h + r) or r + new_h: the AdapterHub post-forward
        if self.norm is not None:
            self._call.put("override", new_h)  # the host's norm returns the adapter output as it is
            return h
        return new_h - r


class InvertibleSite:
    """Invertible adapters on the embedding output. Their inverse is applied by the flexible LM heads
    (``AdapterModel.add_masked_lm_head`` / ``add_causal_lm_head``), as in AdapterHub: a standard Transformers LM
    head (``BertForMaskedLM``, ``GPT2LMHeadModel``...) gets no inverse, except in the families whose architecture
    says ``inverse_before_output_embeddings`` (``output_embeddings`` given here), as the `adapters` library does
    for them."""

    def __init__(
        self, base_model: nn.Module, embeddings: nn.Module, output_embeddings: nn.Module | None = None
    ):
        self.adapters: nn.ModuleDict = add_container(base_model, "invertible_adapters")
        self.embeddings = embeddings
        self.output_embeddings = output_embeddings
        self.active: str | None = None
        self.hooks = Hooks()

    def set_active(self, names: list[str]) -> None:
        # As in AdapterHub: the first adapter of the active setup decides, if it has an invertible adapter.
        self.active = names[0] if names and names[0] in self.adapters else None
        self.hooks.clear()
        if self.active is None:
            return
        self.hooks.add(self.embeddings.register_forward_hook(self._forward))
        if self.output_embeddings is not None:
            self.hooks.add(self.output_embeddings.register_forward_pre_hook(self._inverse_input))

    def _forward(self, module, args, output):
        return self.adapters[self.active](output)

    def _inverse_input(self, module, args):
        return (self.inverse(args[0]), *args[1:])

    def inverse(self, hidden: torch.Tensor) -> torch.Tensor:
        """The active invertible adapter's inverse of ``hidden`` (unchanged if none is active)."""
        return hidden if self.active is None else self.adapters[self.active](hidden, rev=True)

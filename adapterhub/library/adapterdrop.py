"""AdapterDrop (Rücklé et al., 2021): the adapters of some layers, usually the lowest, are left out.

``set_active_adapters(setup, skip_layers=...)`` takes the layers to drop: a number ``n`` (the ``n`` lowest layers)
or a list of layer indices. The methods leave their modules in those layers inactive (no hooks there), in
training and in inference alike. When nothing below the lowest layer that keeps an adapter is trained, its
input is detached, so that backward stops there even if the inputs require gradients (as they do with
gradient checkpointing); below that layer the model is only run forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import AdapterConfigError
from .methods.base import containers
from .paths import get_module


def parse_skip_layers(value: Any, n_layers: int) -> frozenset[int]:
    """``None`` -> no layer; ``n`` -> the ``n`` lowest layers; a list/tuple/set of layer indices -> those."""
    if value is None:
        return frozenset()
    if isinstance(value, bool):
        raise AdapterConfigError(
            f"skip_layers takes a number of layers or a list of layer indices, not {value!r}"
        )
    if isinstance(value, int):
        if not 0 <= value <= n_layers:
            raise AdapterConfigError(f"skip_layers={value}: this model has {n_layers} layers")
        return frozenset(range(value))
    if isinstance(value, (list, tuple, set, frozenset, range)):
        layers = list(value)
        bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers]
        if bad:
            raise AdapterConfigError(
                f"skip_layers: {bad!r} are not layer indices of this model (0 to {n_layers - 1})"
            )
        return frozenset(layers)
    raise AdapterConfigError(
        f"skip_layers takes a number of layers or a list of layer indices, not {type(value).__name__}"
    )


class BackwardStop:
    """A forward pre-hook on the lowest layer that keeps adapters: detaches its hidden-state input while no
    parameter that runs below it requires a gradient: none of the lower layers (their adapters are dropped and
    do not run) and none of the modules before the layers (embeddings, invertible adapters). Reads only the
    model's configuration (which parameters are trainable)."""

    def __init__(self, dropped: list[nn.Module], before: list[nn.Module]):
        self.dropped = dropped
        self.before = before

    def _trainable_below(self) -> bool:
        adapter_parts = tuple(f".{name}." for name in containers())
        if any(p.requires_grad for m in self.before for p in m.parameters()):
            return True
        return any(
            p.requires_grad and not any(part in f".{n}" for part in adapter_parts)
            for m in self.dropped
            for n, p in m.named_parameters()
        )

    def __call__(self, module, args, kwargs):
        if not torch.is_grad_enabled() or self._trainable_below():
            return None
        if args and isinstance(args[0], torch.Tensor):
            return (args[0].detach(),) + tuple(args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), torch.Tensor):
            return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach()}
        return None


def install(state) -> None:
    """(Re)install the backward stop for ``state.skip_layers`` (removing the previous one)."""
    handle = state.__dict__.pop("_backward_stop", None)
    if handle is not None:
        handle.remove()
    if not state.skip_layers or state.active is None:
        return
    kept = [i for i in range(len(state.layers)) if i not in state.skip_layers]
    if not kept or kept[0] == 0:
        return
    lowest = kept[0]
    # what runs before the layers: the embeddings (token and position), invertible adapters
    before = [
        module
        for name, module in state.base_model.named_children()
        if "embed" in name or name in ("wte", "wpe", "invertible_adapters")
    ]
    if state.architecture.embeddings:
        before.append(get_module(state.base_model, state.architecture.embeddings))
    state.__dict__["_backward_stop"] = state.layers[lowest].register_forward_pre_hook(
        BackwardStop(state.layers[:lowest], before), with_kwargs=True
    )

"""ReFT inside a model: where the interventions live, and the hooks that apply them to the layer outputs."""

from __future__ import annotations

import inspect
from typing import cast

import torch
from torch import nn

from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import add_container, get_or_create_module, remove_from_container
from ..base import CallState, OneActiveMethod, register_method, seeded
from .config import ReftConfig
from .layers import HOLDER, ReftModule
from .positions import positions

_POSITIONS = "positions"


@register_method
class ReftMethod(OneActiveMethod):
    """ReFT (LoReFT, NoReFT, DiReFT): an intervention on the output of chosen layers at the first and last tokens.

    A forward pre-hook on the base model finds, once per call, the positions of the first ``prefix_positions``
    and last ``suffix_positions`` real tokens of every row (from the attention mask, so left and right padding
    are both handled); a forward hook on each layer with an intervention replaces its hidden-state output there.
    """

    name = "reft"
    config_classes = (ReftConfig,)
    containers = ("refts",)

    def __init__(self, host) -> None:
        super().__init__(host)
        self.calls = CallState()
        self._arguments: list[str] = []

    # -- adapters --

    def layer_indices(self, config: ReftConfig) -> list[int]:
        count = len(self.host.layers)
        if config.layers == "all":
            return list(range(count))
        outside = [i for i in cast(list, config.layers) if i >= count]
        if outside:
            raise AdapterConfigError(
                f"reft layers {outside} do not exist: this model has {count} layers (0 to {count - 1})"
            )
        return list(config.layers)

    def _held(self, index: int) -> nn.ModuleDict | None:
        holder = self.host.layers[index]._modules.get(HOLDER)
        return None if holder is None else cast(nn.ModuleDict, holder.refts)

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, ReftConfig):
            raise AdapterConfigError(f"the ReFT method runs ReftConfig, not {type(config).__name__}")
        for index in self.layer_indices(config):
            layer = self.host.layers[index]
            reference = next(layer.parameters())
            dtype = getattr(torch, config.dtype) if config.dtype else reference.dtype
            # on the CPU first, so that init_weights_seed gives the same weights on every device
            with seeded(config.init_weights_seed):
                module = ReftModule(self.host.hidden_size, config, dtype, "cpu")
            module.to(reference.device).train(self.host.model.training)
            refts = add_container(get_or_create_module(layer, HOLDER), "refts")
            refts[name] = module

    def delete_modules(self, name: str) -> None:
        for layer in self.host.layers:
            remove_from_container(layer, HOLDER, "refts", name)

    def modules(self, name: str) -> list[nn.Module]:
        held = [self._held(i) for i in range(len(self.host.layers))]
        return [refts[name] for refts in held if refts is not None and name in refts]

    def add_hooks(self, name: str) -> None:
        base = self.host.base_model
        self._arguments = list(inspect.signature(base.forward).parameters)
        self.hooks.add(base.register_forward_pre_hook(self._prepare, with_kwargs=True))
        for index, layer in enumerate(self.host.layers):
            refts = self._held(index)
            if index in self.host.skip_layers or refts is None or name not in refts:
                continue  # AdapterDrop leaves this layer's intervention out
            self.hooks.add(layer.register_forward_hook(_Intervene(self, cast(ReftModule, refts[name]))))

    # -- the forward path (re-entrant: a call's positions go through CallState) --

    def active_config(self) -> ReftConfig:
        return cast(ReftConfig, self.config(cast(str, self.active)))

    def _prepare(self, module, args, kwargs) -> None:
        given = dict(zip(self._arguments, args))
        given.update(kwargs)
        tokens = given.get("input_ids")
        if tokens is None:
            tokens = given.get("inputs_embeds")
        if tokens is None:
            self.calls.put(_POSITIONS, None)
            return
        cache = given.get("cache")
        if cache is None:  # the name before transformers 5.20
            cache = given.get("past_key_values")
        length = getattr(cache, "get_seq_length", None)
        past = length() if length is not None else 0
        config = self.active_config()
        self.calls.put(
            _POSITIONS,
            positions(
                given.get("attention_mask"),
                tokens.shape[0],
                tokens.shape[1],
                past,
                config.prefix_positions,
                config.suffix_positions,
                tokens.device,
            ),
        )

    def layer_positions(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found = self.calls.take(_POSITIONS)
        self.calls.put(_POSITIONS, found)
        if found is not None:
            if tuple(found[0].shape) != tuple(hidden.shape[:2]):
                raise AdapterConfigError(
                    f"ReFT: a layer outputs {tuple(hidden.shape[:2])} positions for inputs of {tuple(found[0].shape)} "
                    "(batch, length); an adapter that changes the sequence length (prompt tuning) cannot run with it"
                )
            return found
        if _in_backward():
            raise AdapterConfigError(
                "ReFT: a layer is recomputed in the backward pass (gradient checkpointing) on a thread other than the "
                "forward pass's (as on CUDA), where the call's token positions are not known; train ReFT adapters "
                "without gradient checkpointing there"
            )
        # the layer runs outside a call of the base model (no input ids or embeddings): every token is real
        config = self.active_config()
        batch, length = hidden.shape[:2]
        return positions(
            None, batch, length, 0, config.prefix_positions, config.suffix_positions, hidden.device
        )


class _Intervene:
    """Forward hook of one layer: its hidden-state output with the intervention at this call's positions."""

    def __init__(self, method: ReftMethod, module: ReftModule):
        self.method = method
        self.module = module

    def __call__(self, layer, args, output):
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        first, last = self.method.layer_positions(hidden)
        adapted = self.module(hidden, first.to(hidden.device), last.to(hidden.device))
        if isinstance(output, torch.Tensor):
            return adapted
        return (adapted,) + tuple(output[1:])


def _in_backward() -> bool:
    """Whether this thread runs an autograd backward pass now (where checkpointed layers are recomputed)."""
    current = getattr(torch._C, "_current_graph_task_id", None)
    return current is not None and current() != -1

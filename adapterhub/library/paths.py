"""Addressing submodules by dotted path."""

from __future__ import annotations

import torch
from torch import nn


# Names a torch module already has (methods such as `double`, `train`, `to`; attributes such as `training`):
# adapters and heads are kept in ``nn.ModuleDict`` containers under their names, which cannot take these.
_MODULE_ATTRIBUTES = frozenset(dir(nn.ModuleDict()))


def check_container_key(kind: str, name: str) -> str | None:
    """Why ``name`` cannot name an adapter / head (``kind``) in a module container, or ``None`` if it can."""
    if name in _MODULE_ATTRIBUTES:
        return f"invalid {kind} name {name!r}: it is the name of a torch.nn.Module attribute; choose another"
    return None


def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        module = getattr(module, part)
    return module


def layer_index(layers_path: str, path: str) -> int | None:
    """The index of the layer that module ``path`` is in, given the path of the layer list (both relative to the
    base model): ``layer_index("encoder.layer", "encoder.layer.3.attention.self.query")`` -> 3; else None."""
    prefix = layers_path + "."
    if not path.startswith(prefix):
        return None
    head = path[len(prefix) :].split(".")[0]
    return int(head) if head.isdigit() else None


def get_or_create_module(root: nn.Module, path: str) -> nn.Module:
    """Like :func:`get_module`, adding empty container modules where the path does not exist yet."""
    module = root
    for part in path.split(".") if path else []:
        if not hasattr(module, part):
            module.add_module(part, nn.Module().train(module.training))
        module = getattr(module, part)
    return module


def add_container(parent: nn.Module, name: str) -> nn.ModuleDict:
    """``parent.name``, an empty ``nn.ModuleDict`` made in ``parent``'s train/eval mode if there is none yet."""
    if name not in parent._modules:
        parent.add_module(name, nn.ModuleDict().train(parent.training))
    container = parent._modules[name]
    if not isinstance(container, nn.ModuleDict):
        raise TypeError(
            f"{type(parent).__name__}.{name} is a {type(container).__name__}, not an nn.ModuleDict"
        )
    return container


def remove_from_container(parent: nn.Module, holder: str, container: str, name: str) -> None:
    """Delete ``name`` from ``parent.<holder>.<container>`` (the undoing of :func:`get_or_create_module` and
    :func:`add_container`): the container goes once it is empty, the holder once it holds nothing; no error if
    any of them is absent."""
    held = parent._modules.get(holder)
    if held is None:
        return
    items = held._modules.get(container)
    if items is not None:
        if name in items._modules:
            del items._modules[name]
        if not items._modules:
            del held._modules[container]
    if not held._modules:
        del parent._modules[holder]


def get_tensor(root: nn.Module, path: str) -> torch.Tensor:
    """The parameter or buffer that ``root``'s state dict names ``path`` (``...lora_A``, a parametrization's
    ``...parametrizations.weight.0.base``), to copy saved values into."""
    module_path, _, leaf = path.rpartition(".")
    module = root.get_submodule(module_path)
    for store in (module._parameters, module._buffers):
        found = store.get(leaf)
        if found is not None:
            return found
    raise AttributeError(f"{path} is neither a parameter nor a buffer of the model")

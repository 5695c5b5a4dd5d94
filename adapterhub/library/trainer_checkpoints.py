"""Checkpoints of adapter training that hold only what is trained (bound to models by ``adapterhub.init``).

``transformers.Trainer`` saves a checkpoint with ``model.save_pretrained(folder)`` and restores one (on resume and
for ``load_best_model_at_end``) with ``model.load_state_dict(weights, strict=False)``. While a model is set up for
adapter training (after ``train_adapter`` or ``train_adapter_fusion``), its ``save_pretrained`` writes only:

* ``model.safetensors``: every weight that requires a gradient (the adapters being trained, their fusion layers,
  the task head), named as in ``model.state_dict()`` (what the Trainer reads back);
* the trained setup in the AdapterHub format: ``adapter_setup.json`` and one folder per adapter (with its head)
  and per fusion layer, ready for ``load_adapter(folder / name)`` or ``load_adapter_setup(folder)``.

No ``config.json`` is written, so the folder cannot be taken for a whole model. ``save_pretrained(folder,
adapters_only=False)`` writes the whole model as before. ``load_state_dict(weights, strict=False)`` with weights
that are all trainable ones does not report the frozen weights as missing (the checkpoint leaves them out on
purpose); trainable weights it lacks are still reported, and ``strict=True`` is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..common.files import atomic_write
from .model import _state, full_state_dict, register_api
from .setups import save_adapter_setup

WEIGHTS_NAME = "model.safetensors"
FORMAT = "adapterhub.trainable-weights"


def trainable_state_dict(model: nn.Module, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` (default: the model's) whose parameters require a gradient."""
    names = {name for name, param in model.named_parameters() if param.requires_grad}
    source = full_state_dict(model) if state_dict is None else state_dict
    return {key: value for key, value in source.items() if key in names}


def save_pretrained(self, save_directory, *args: Any, adapters_only: bool | None = None, **kwargs: Any):
    """While the model is set up for adapter training (or with ``adapters_only=True``): write the trained
    weights and setup only (see the module's documentation). Otherwise: the model class's ``save_pretrained``."""
    state = _state(self)
    if adapters_only is None:
        adapters_only = state.training is not None
    if not adapters_only:
        return type(self).save_pretrained(self, save_directory, *args, **kwargs)
    if state.training is None:
        raise ValueError(
            "save_pretrained(adapters_only=True) saves the setup being trained: call train_adapter(...) first"
        )
    if not kwargs.get("is_main_process", True):  # distributed training: one process writes
        return None
    folder = Path(save_directory)
    weights = trainable_state_dict(self, kwargs.get("state_dict"))
    if not weights:
        raise ValueError("nothing in this model requires a gradient: there is nothing to checkpoint")
    save_adapter_setup(self, folder, state.training, use_safetensors=kwargs.get("safe_serialization", True))
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
    atomic_write(
        folder / WEIGHTS_NAME,
        lambda tmp: save_file(plain, tmp, metadata={"format": "pt", "content": FORMAT}),
    )
    return None


def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
    """``nn.Module.load_state_dict``; a non-strict load of trainable weights only (a checkpoint written by
    :func:`save_pretrained`) does not count the frozen weights as missing."""
    result = type(self).load_state_dict(self, state_dict, strict=strict, assign=assign)
    if strict:
        return result
    trainable = {name for name, param in self.named_parameters() if param.requires_grad}
    if trainable and set(state_dict) <= trainable:
        missing = [key for key in result.missing_keys if key in trainable]
        result = type(result)(missing, result.unexpected_keys)
    return result


register_api({"save_pretrained": save_pretrained, "load_state_dict": load_state_dict})

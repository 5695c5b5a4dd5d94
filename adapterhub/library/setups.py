"""Saving and loading whole adapter setups (bound to models by ``adapterhub.init``).

A saved setup is a folder with ``adapter_setup.json`` (``{"adapter_setup": <Stack/Fuse as a dict>,
"head_setup": ..., "version": ...}``), one sub-folder per adapter (``<folder>/<adapter>/``, a normal saved
adapter) and one per fusion layer (``<folder>/<fusion name>/``, e.g. ``a,b/``), as the AdapterHub format has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import saving
from ..version import __version__
from .composition import Block, Setup, parse_setup
from .errors import AdapterConfigError, AdapterLoadError
from .fusion import load_adapter_fusion, save_adapter_fusion
from .model import _state, delete_adapter, register_api, validate_setup

SETUP_CONFIG_NAME = "adapter_setup.json"


def _head_names(head_setup) -> list[str]:
    if head_setup is None or head_setup is True or head_setup is False:
        return []
    if isinstance(head_setup, str):
        return [head_setup]
    if isinstance(head_setup, Block):
        return head_setup.names()
    if isinstance(head_setup, (list, tuple)):
        return list(head_setup)
    raise AdapterConfigError(
        f"head_setup must be a head name, a list of names or a block, got {head_setup!r}"
    )


def save_adapter_setup(
    self,
    save_directory,
    adapter_setup: Setup,
    head_setup: Any = None,
    meta_dict: dict | None = None,
    use_safetensors: bool = True,
) -> None:
    """Write every adapter and fusion layer of ``adapter_setup`` plus ``adapter_setup.json`` to ``save_directory``.

    ``head_setup``: ``None`` (the heads saved with each adapter, if any), a head name or a list of head names
    (flexible-head models: each saved in ``<folder>/<head>/``)."""
    setup = parse_setup(adapter_setup)
    if setup is None:
        raise AdapterConfigError("save_adapter_setup needs an adapter setup, got None")
    validate_setup(_state(self), setup)
    heads = _head_names(head_setup)
    flex_save = getattr(self, "save_head", None)
    if heads and flex_save is None:
        raise AdapterConfigError(
            f"head_setup {head_setup!r} names flexible prediction heads; this model ({type(self).__name__}) has none"
        )
    folder = Path(save_directory)
    for name in setup.names():
        self.save_adapter(folder / name, name, meta_dict=meta_dict, use_safetensors=use_safetensors)
    for block in setup.fuse_blocks():
        save_adapter_fusion(
            self, folder / block.name, block, meta_dict=meta_dict, use_safetensors=use_safetensors
        )
    if flex_save is not None:
        for head in heads:
            flex_save(folder / head, head, use_safetensors=use_safetensors)
    head_value = head_setup.to_dict() if isinstance(head_setup, Block) else head_setup
    saving.write_json(
        folder / SETUP_CONFIG_NAME,
        {
            "adapter_setup": setup.to_dict(),
            "head_setup": head_value,
            "version": f"adapterhub.{__version__}",
        },
    )


def load_adapter_setup(
    self, adapter_setup_name_or_path, set_active: bool = False, with_head: bool = True, **kwargs: Any
) -> tuple[Block, Any]:
    """Load a saved setup (its adapters, fusion layers and heads); returns ``(adapter_setup, head_setup)``.

    Nothing is half-applied: if any part fails to load, the parts already loaded are removed again. Hub
    identifiers take the options of ``load_adapter`` (``version=``, ``endpoint=``, ``token=``, ``cache_dir=``...)."""
    state = _state(self)
    folder = saving.resolve_location(adapter_setup_name_or_path, **kwargs)
    config_path, data = saving.read_folder_json(folder, SETUP_CONFIG_NAME)
    try:
        setup = Block.from_dict(data.get("adapter_setup"))
    except AdapterConfigError as error:
        raise AdapterLoadError(f"{config_path}: {error}") from None
    head_setup = data.get("head_setup")
    if isinstance(head_setup, dict):
        try:
            head_setup = Block.from_dict(head_setup)
        except AdapterConfigError as error:
            raise AdapterLoadError(f"{config_path}: head_setup: {error}") from None
    for name in setup.names() + [b.name for b in setup.fuse_blocks()]:
        if not (folder / name).is_dir():
            raise AdapterLoadError(f"{config_path} names {name!r}, but {folder / name} is missing")
    flex_load = getattr(self, "load_head", None)
    heads = _head_names(head_setup) if with_head and flex_load is not None else []
    heads_before = set(self.heads) if flex_load is not None else set()
    loaded: list[str] = []
    try:
        for name in setup.names():
            loaded.append(self.load_adapter(folder / name, load_as=name, with_head=with_head))
        for block in setup.fuse_blocks():
            load_adapter_fusion(self, folder / block.name, load_as=block.name, with_head=False)
        if flex_load is not None:
            for head in heads:
                if head not in self.heads:
                    flex_load(folder / head, load_as=head)
        if set_active:
            self.set_active_adapters(setup)
            if heads:
                self.active_head = heads[0] if len(heads) == 1 else heads
    except BaseException:
        for name in reversed(loaded):  # also removes the fusion layers over them
            if name in state.configs:
                delete_adapter(self, name)
        for head in set(getattr(self, "heads", {})) - heads_before:
            self.delete_head(head)
        raise
    return setup, head_setup


register_api({"save_adapter_setup": save_adapter_setup, "load_adapter_setup": load_adapter_setup})

"""What the library needs from an adapter hub, without importing the hub client.

The hub client registers its functions here when it is imported (:mod:`adapterhub.client`): finding the local
folder of a hub identifier (``load_adapter("me/sst-2")``) and pushing (``model.push_adapter_to_hub``). The
package ``adapterhub`` registers an importer that brings the client in the first time one of them is needed,
so ``import adapterhub`` alone does not import the client, and the library never imports it at all.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import AdapterError

HOOKS = ("adapter_folder", "push_adapter", "push_adapter_setup")

_hooks: dict[str, Callable[..., Any]] = {}
_importers: list[Callable[[], None]] = []


def register(**functions: Callable[..., Any]) -> None:
    """Register hub functions by name (one of :data:`HOOKS`); a later registration replaces an earlier one."""
    unknown = sorted(set(functions) - set(HOOKS))
    if unknown:
        raise ValueError(f"unknown hub hooks {unknown}; known: {list(HOOKS)}")
    _hooks.update(functions)


def register_importer(importer: Callable[[], None]) -> None:
    """``importer()`` imports the module that registers the hooks; it is called when a hook is first needed."""
    if importer not in _importers:
        _importers.append(importer)


def registered(name: str) -> Callable[..., Any] | None:
    """The registered function ``name`` (importing the client first if an importer is registered), else None."""
    if name not in _hooks:
        for importer in list(_importers):
            importer()
    return _hooks.get(name)


def hook(name: str, purpose: str) -> Callable[..., Any]:
    """The registered function ``name``; ``purpose`` says in the error what needed it."""
    function = registered(name)
    if function is None:
        raise AdapterError(
            f"{purpose} needs the hub client, which is not loaded: import adapterhub.client first"
        )
    return function

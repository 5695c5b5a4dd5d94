"""The interface every adaptation method implements, and the registry that method packages fill.

A method is a package ``adapterhub/library/methods/<method>/`` that defines

* its config class(es): frozen :class:`~adapterhub.library.configs.AdapterConfig` dataclasses, registered with
  ``register_config_class`` (the saved ``"architecture"`` value selects the class) and its presets with
  ``register_preset``;
* one :class:`Method` subclass, registered with :func:`register_method`, that puts the adapters of that
  method into one model: one instance per model and method, created on first use, holding the modules it added.

The rest of the library only talks to methods through this interface: the model API (``add_adapter``,
``delete_adapter``, ``set_active_adapters``, ``merge_adapter``...), saving and loading (weight names come from
:attr:`Method.containers`), ``adapter_summary()``, hub validation (:meth:`Method.modules`), AdapterFusion and
whole-model checkpoints (:attr:`Method.compositions`, :attr:`Method.fusions`), and the PEFT file dialect
(:attr:`Method.peft_types`, :meth:`Method.from_peft`, :meth:`Method.to_peft`).

Weight names. A method keeps each adapter's modules in ``nn.ModuleDict`` containers whose keys are adapter
names: ``<path>.<container>.<adapter name>.<parameter>`` (``encoder.layer.0.output.adapters.sst.adapter_up.weight``,
``encoder.layer.0.attention.self.query.loras.sst.lora_A``). The container names (:attr:`Method.containers`)
are the AdapterHub format's; every container name of every method must be unique to that method, because an
adapter's weights are found (and renamed on load) by the pattern ``(^|.)<container>.<name>.``.

Forward path. Methods change a model's computation only through forward hooks and forward pre-hooks that
they register while one of their adapters is active, and remove when none is (so an inactive method leaves
the model bit for bit as it was). Hooks must be re-entrant: they may read configuration kept on the method
(the active setup, the adapter modules) but never keep values of one call on a module or a method; values
that one hook hands to another within a call go through :class:`CallState` (per thread).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import AdapterConfigError

if TYPE_CHECKING:
    from ..configs import AdapterConfig


class Method:
    """One adaptation method inside one model. Subclasses set the class attributes and implement the hooks.

    ``host`` is the model's :class:`~adapterhub.library.model.AdapterState`: ``host.model``,
    ``host.base_model``, ``host.architecture`` (the model family's map), ``host.layers``,
    ``host.hidden_size``, ``host.active`` (the active setup, a :class:`~adapterhub.library.composition.Block`).
    """

    #: the method's name, as ``AdapterConfig.method`` of its configs and in ``adapter_summary()``
    name: ClassVar[str] = ""
    #: the config classes it runs (a config is handled by the method registered for its class)
    config_classes: ClassVar[tuple[type, ...]] = ()
    #: names of the ``nn.ModuleDict`` containers keyed by adapter name that hold its weights
    containers: ClassVar[tuple[str, ...]] = ()
    #: composition blocks its adapters can take part in: "Stack" (several adapters in sequence), "Fuse"
    compositions: ClassVar[frozenset[str]] = frozenset({"Stack"})
    #: ``peft_type`` values of PEFT ``adapter_config.json`` files this method reads (and writes)
    peft_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, host):
        self.host = host

    # -- adapters --

    def add(self, name: str, config: "AdapterConfig") -> None:
        """Create the modules of adapter ``name`` (inactive). May raise; ``delete(name)`` then cleans up."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove every module of adapter ``name`` (no error if some or all are absent)."""
        raise NotImplementedError

    def set_active(self, names: list[str]) -> None:
        """Make exactly the adapters ``names`` of this method active (in ``host.active``'s structure)."""
        raise NotImplementedError

    def own(self, names: list[str]) -> list[str]:
        """The adapters among ``names`` that this method runs (alone or as a part of a union), in their order."""
        return [n for n in names if n in self.host.configs and self in self.host.methods_of(n)]

    def config(self, name: str) -> "AdapterConfig":
        """The config that this method runs for adapter ``name`` (its part, if the adapter is a union)."""
        return self.host.config_of(name, self)

    @classmethod
    def combinable(cls, a: "AdapterConfig", b: "AdapterConfig") -> bool:
        """Whether two configs of this method can be parts of one union (one adapter name); default: no."""
        return False

    def modules(self, name: str) -> list[nn.Module]:
        """The modules of adapter ``name``, one per place where it changes the model."""
        raise NotImplementedError

    # -- optional abilities --

    #: AdapterFusion layers, for methods that support "Fuse": fusion name -> (fused adapters, FusionConfig)
    fusions: dict[str, tuple[list[str], Any]]

    def add_fusion(self, name: str, adapter_names: list[str], config: Any) -> None:
        """Add the AdapterFusion layer ``name`` over ``adapter_names`` (methods that support "Fuse")."""
        raise AdapterConfigError(f"{self.name} adapters cannot be fused")

    def delete_fusion(self, name: str) -> None:
        """Remove the AdapterFusion layer ``name`` (no error if it is absent)."""

    def fusion_layers(self, name: str) -> list[Any]:
        """The modules of the AdapterFusion layer ``name``, one per place where it mixes the adapters."""
        return []

    def merge(self, name: str) -> None:
        """Fold adapter ``name`` into the base weights (``merge_adapter``)."""
        raise AdapterConfigError(f"{self.name} adapters cannot be merged into the model's weights")

    def unmerge(self) -> None:
        """Undo every merge of this method (``reset_adapter``)."""

    def merged(self) -> list[str]:
        """Names of this method's adapters that are merged now."""
        return []

    @classmethod
    def from_saved(cls, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An AdapterHub-format file's weights of one adapter (keyed as this model's state dict) without the
        redundant copies a peer may have written (default: all of them)."""
        return weights

    @classmethod
    def from_peft(cls, peft_config: dict[str, Any], weights: dict[str, torch.Tensor], host):
        """A PEFT adapter as ``(config, weights)``. ``peft_config``: the ``adapter_config.json`` dict;
        ``weights``: the adapter's tensors keyed like the model's state dict without PEFT's ``base_model.model.``
        prefix and without the ``modules_to_save`` head (``bert.encoder...query.lora_A.weight``). Returns our
        config and the weights as this model names them for an adapter called ``default``
        (``bert.encoder...query.loras.default.lora_A``); the loader renames, checks and installs them."""
        raise AdapterConfigError(f"{cls.name} adapters have no PEFT form")

    def to_peft(self, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Adapter ``name`` as a PEFT ``adapter_config.json`` dict (the method's part: ``peft_type`` and its
        options; the saver adds the task type, ``modules_to_save`` and the model name) and weights keyed like the
        model's state dict with PEFT's names (``bert.encoder...query.lora_A.weight``; the saver adds
        ``base_model.model.``)."""
        raise AdapterConfigError(f"{self.name} adapters cannot be saved in the PEFT format")


class Hooks:
    """The forward hooks and pre-hooks that one method (or one of its targets) has registered on the model.

    ``add(module.register_forward_hook(...))`` keeps a hook's handle; ``clear()`` removes every hook kept, as a
    method does whenever its active adapters change (and so when one is deactivated before it is deleted)."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def clear(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class OneActiveMethod(Method):
    """A method whose adapters run one at a time (next to adapters of other methods), from hooks that it registers
    for the active one: ``self.active`` names that adapter (or is ``None``), ``self.hooks`` holds its hooks.

    A subclass implements :meth:`add_hooks` (register the active adapter's hooks with ``self.hooks.add``) and
    :meth:`delete_modules`; activation and deletion (which deactivates the adapter first) are the same for all."""

    compositions: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, host) -> None:
        super().__init__(host)
        self.active: str | None = None
        self.hooks = Hooks()

    def add_hooks(self, name: str) -> None:
        """Register the hooks that run adapter ``name`` (the active one) with ``self.hooks.add``."""
        raise NotImplementedError

    def delete_modules(self, name: str) -> None:
        """Remove every module of the inactive adapter ``name`` (no error if some or all are absent)."""
        raise NotImplementedError

    def set_active(self, names: list[str]) -> None:
        self.hooks.clear()
        mine = self.own(names)
        self.active = mine[0] if mine else None
        if self.active is not None:
            self.add_hooks(self.active)

    def delete(self, name: str) -> None:
        if self.active == name:
            self.set_active([])
        self.delete_modules(name)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Initialise weights from ``init_weights_seed``: inside, random draws come from ``torch.manual_seed(seed)``,
    and the global CPU generator is left as it was; with ``seed`` None they come from the global generators."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class CallState:
    """Values that one hook hands to another within one forward call, kept per thread (hooks stay re-entrant).

    ``put(key, value)`` in the first hook, ``take(key)`` (which removes it) in the second."""

    def __init__(self):
        self._local = threading.local()

    def put(self, key: Any, value: Any) -> None:
        values = self._local.__dict__.setdefault("values", {})
        values[key] = value

    def take(self, key: Any) -> Any:
        return self._local.__dict__.get("values", {}).pop(key, None)


# ----------------------------------------------------------------------------------------------- registry

_METHODS: dict[str, type[Method]] = {}
_BY_CONFIG: dict[type, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register a :class:`Method` subclass (its package calls this once, at import)."""
    taken = {c: m.name for m in _METHODS.values() if m is not cls for c in m.containers}
    clash = [c for c in cls.containers if c in taken]
    if clash:
        raise ValueError(
            f"method {cls.name!r}: container name(s) {clash} already used by {taken[clash[0]]!r}"
        )
    _METHODS[cls.name] = cls
    for config_class in cls.config_classes:
        _BY_CONFIG[config_class] = cls
    return cls


def method_for(config: "AdapterConfig") -> type[Method]:
    """The method class that runs ``config`` (looked up by the config's class and its bases)."""
    load_methods()
    for cls in type(config).__mro__:
        if cls in _BY_CONFIG:
            return _BY_CONFIG[cls]
    raise AdapterConfigError(f"no adaptation method runs {type(config).__name__} configs")


def method_for_peft(peft_type: str) -> type[Method]:
    load_methods()
    for cls in _METHODS.values():
        if str(peft_type).upper() in cls.peft_types:
            return cls
    known = sorted(t for m in _METHODS.values() for t in m.peft_types)
    raise AdapterConfigError(
        f"PEFT adapters of type {peft_type!r} are not supported; supported: {', '.join(known) or 'none'}"
    )


def containers() -> list[str]:
    """Every container name of every registered method (the parts of adapter weight names)."""
    load_methods()
    return [c for cls in _METHODS.values() for c in cls.containers]


def load_methods() -> None:
    """Import the method packages (each registers itself)."""
    from . import PACKAGES  # noqa: F401  (importing the methods package imports every method package)

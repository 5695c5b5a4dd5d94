"""What methods that put adapters on chosen modules share (LoRA/IA3, VeRA): one target object per module path,
holding the adapters in the module's container (the method's first container name), one adapter active at a
time, at most one merged."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..errors import AdapterConfigError

from ..paths import layer_index


class LayerTargets:
    """Mixin for a :class:`~.base.Method` with ``self.targets`` (module path -> target: ``.module``,
    ``.active``, ``.set_active(name or None)``, ``.merge(name)``, ``.unmerge()``) and ``self.merged_name``."""

    containers: ClassVar[tuple[str, ...]]
    targets: dict[str, Any]
    merged_name: str | None
    host: Any
    own: Any  # Method.own

    def _held(self, target) -> nn.ModuleDict:
        return target.module._modules[self.containers[0]]

    def delete(self, name: str) -> None:
        if self.merged_name == name:
            self.unmerge()
        for path, target in list(self.targets.items()):
            held = self._held(target)
            if name in held:
                if target.active == name:
                    target.set_active(None)
                del held[name]
            if not len(held):
                del target.module._modules[self.containers[0]]
                del self.targets[path]

    def set_active(self, names: list[str]) -> None:
        mine = self.own(names)
        name = mine[0] if mine and mine[0] != self.merged_name else None  # a merged adapter acts already
        skip = self.host.skip_layers  # AdapterDrop
        for path, target in self.targets.items():
            target.set_active(
                None if skip and layer_index(self.host.architecture.layers, path) in skip else name
            )

    def modules(self, name: str) -> list[nn.Module]:
        return [self._held(t)[name] for t in self.targets.values() if name in self._held(t)]

    def merge(self, name: str) -> None:
        if self.merged_name == name:
            return
        if self.merged_name is not None:
            raise AdapterConfigError(
                f"adapter {self.merged_name!r} is merged into the model; call reset_adapter() before merging {name!r}"
            )
        for target in self.targets.values():
            if name in self._held(target):
                target.merge(name)
        self.merged_name = name
        self.set_active(self.host.active.names() if self.host.active is not None else [])

    def unmerge(self) -> None:
        for target in self.targets.values():
            target.unmerge()
        self.merged_name = None
        self.set_active(self.host.active.names() if self.host.active is not None else [])

    def merged(self) -> list[str]:
        return [self.merged_name] if self.merged_name else []

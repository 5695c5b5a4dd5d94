"""Bottleneck adapters (Houlsby, Pfeiffer, parallel, scaled parallel, with optional invertible adapters)."""

from __future__ import annotations

from torch import nn

from .config import BnConfig
from .layers import Bottleneck, invertible_adapter
from ...paths import get_module
from .sites import BottleneckSite, InvertibleSite

__all__ = ["BnConfig", "BottleneckMethod"]


def _place_like(module: nn.Module, reference: nn.Module) -> nn.Module:
    param = next(reference.parameters(), None)
    return module if param is None else module.to(device=param.device, dtype=param.dtype)


class BottleneckMethod:
    """Adds, removes and activates bottleneck adapters of one model."""

    config_class = BnConfig

    def __init__(self, host):
        self.host = host  # the model's AdapterState
        self.sites: list[BottleneckSite] = []
        self.invertible: InvertibleSite | None = None

    def _ensure_sites(self) -> None:
        if self.sites:
            return
        arch = self.host.architecture
        for index, layer in enumerate(self.host.layers):
            for location, spec in arch.sites.items():
                self.sites.append(BottleneckSite(layer, index, location, spec))

    def add(self, name: str, config: BnConfig) -> None:
        self._ensure_sites()
        hidden = self.host.hidden_size
        for site in self.sites:
            wanted = config.mh_adapter if site.location == "mh_adapter" else config.output_adapter
            if not wanted or site.index in config.leave_out:
                continue
            adapter = Bottleneck(config, hidden, config.bottleneck_size(hidden, site.index))
            site.adapters[name] = _place_like(adapter, site.output_module)
        if config.inv_adapter:
            if self.invertible is None:
                base = self.host.base_model
                embeddings = get_module(base, self.host.architecture.embeddings)
                self.invertible = InvertibleSite(base, embeddings, self.host.output_embeddings)
            module = invertible_adapter(config, self.host.embedding_size)
            self.invertible.adapters[name] = _place_like(module, self.invertible.embeddings)

    def delete(self, name: str) -> None:
        for site in self.sites:
            if name in site.adapters:
                del site.adapters[name]
        if self.invertible is not None and name in self.invertible.adapters:
            del self.invertible.adapters[name]

    def set_active(self, names: list[str]) -> None:
        for site in self.sites:
            site.set_active(names)
        if self.invertible is not None:
            self.invertible.set_active(names)

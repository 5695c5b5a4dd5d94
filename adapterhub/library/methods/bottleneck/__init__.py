"""Bottleneck adapters (Houlsby, Pfeiffer, parallel, scaled parallel, with optional invertible adapters)."""

from __future__ import annotations

from typing import Any, cast

from torch import nn

from .config import BnConfig
from .fusion import AdapterFusionLayer, FusionConfig
from .layers import Bottleneck, invertible_adapter
from ...configs import AdapterConfig
from ...errors import AdapterConfigError
from ...paths import add_container, get_module
from .phm import check_phm_sizes, shared_phm_parameters
from .sites import BottleneckSite, InvertibleSite
from ..base import Method, register_method

__all__ = ["BnConfig", "BottleneckMethod", "FusionConfig"]


def _place_like(module: nn.Module, reference: nn.Module) -> nn.Module:
    """``module`` on the device and dtype of ``reference``'s weights and in its train/eval mode (so that an
    adapter added to a model in eval mode runs without dropout)."""
    param = next(reference.parameters(), None)
    if param is not None:
        module = module.to(device=param.device, dtype=param.dtype)
    return module.train(reference.training)


@register_method
class BottleneckMethod(Method):
    """Adds, removes and activates bottleneck adapters (and Compacter, invertible adapters, AdapterFusion)."""

    name = "bottleneck"
    config_classes = (BnConfig,)
    # per-site adapters, invertible adapters on the embeddings, Compacter's shared PHM weights
    containers = ("adapters", "invertible_adapters", "shared_parameters")
    compositions = frozenset({"Stack", "Fuse"})

    def __init__(self, host: Any) -> None:
        super().__init__(host)
        self.sites: list[BottleneckSite] = []
        self.invertible: InvertibleSite | None = None
        self.fusions: dict[str, tuple[list[str], FusionConfig]] = {}  # name -> (fused adapters, config)

    @classmethod
    def combinable(cls, a, b) -> bool:
        # as the AdapterHub ConfigUnion: at different positions (one after attention, the other after the
        # feed-forward block), or with leave_out (an overlap is then refused when the adapter is added)
        different = a.mh_adapter != b.mh_adapter and a.output_adapter != b.output_adapter
        return different or bool(a.leave_out or b.leave_out)

    def _ensure_sites(self) -> None:
        if self.sites:
            return
        arch = self.host.architecture
        for index, layer in enumerate(self.host.layers):
            for location, spec in arch.sites.items():
                self.sites.append(BottleneckSite(layer, index, location, spec))

    def _wanted_sites(self, config: BnConfig) -> list[BottleneckSite]:
        return [
            site
            for site in self.sites
            if site.index not in config.leave_out
            and (config.mh_adapter if site.location == "mh_adapter" else config.output_adapter)
        ]

    def _shared_parameters(self, name: str, config: BnConfig):
        """Compacter's weights shared by all its PHM layers, kept at ``<base>.shared_parameters.<name>``."""
        hidden = self.host.hidden_size
        sites = self._wanted_sites(config)
        for site in sites:
            check_phm_sizes(
                config,
                hidden,
                config.bottleneck_size(hidden, site.index),
                f"layer {site.index} ({site.location})",
            )
        if not (config.shared_phm_rule or config.shared_W_phm) or not sites:
            return None
        params = shared_phm_parameters(config, hidden, config.bottleneck_size(hidden, sites[0].index))
        shared = add_container(self.host.base_model, "shared_parameters")
        shared[name] = _place_like(params, sites[0].output_module)
        return shared[name]

    def add(self, name: str, config: AdapterConfig) -> None:
        if not isinstance(config, BnConfig):
            raise AdapterConfigError(
                f"the bottleneck method runs BnConfig configs, not {type(config).__name__}"
            )
        self._ensure_sites()
        hidden = self.host.hidden_size
        shared = self._shared_parameters(name, config) if config.phm_layer else None
        for site in self._wanted_sites(config):
            adapter = Bottleneck(config, hidden, config.bottleneck_size(hidden, site.index), shared)
            site.adapters[name] = _place_like(adapter, site.output_module)
        if config.inv_adapter:
            if self.invertible is None:
                base = self.host.base_model
                embeddings = get_module(base, self.host.architecture.embeddings)
                before_head = self.host.architecture.inverse_before_output_embeddings
                self.invertible = InvertibleSite(
                    base, embeddings, self.host.output_embeddings if before_head else None
                )
            module = invertible_adapter(config, self.host.embedding_size)
            self.invertible.adapters[name] = _place_like(module, self.host.base_model)

    def delete(self, name: str) -> None:
        for fusion, (fused, _) in list(self.fusions.items()):
            if name in fused:
                self.delete_fusion(fusion)
        shared = self.host.base_model._modules.get("shared_parameters")
        if shared is not None and name in shared:
            del shared[name]
            if not len(shared):
                del self.host.base_model._modules["shared_parameters"]
        for site in self.sites:
            if name in site.adapters:
                del site.adapters[name]
        if self.invertible is not None and name in self.invertible.adapters:
            del self.invertible.adapters[name]

    def modules(self, name: str) -> list[nn.Module]:
        found: list[nn.Module] = [site.adapters[name] for site in self.sites if name in site.adapters]
        if self.invertible is not None and name in self.invertible.adapters:
            found.append(self.invertible.adapters[name])
        return found

    # -- AdapterFusion layers: one per site that holds every fused adapter --

    def add_fusion(self, name: str, adapter_names: list[str], config: FusionConfig) -> None:
        if name in self.fusions:
            raise AdapterConfigError(f"an AdapterFusion layer named {name!r} already exists")
        model_config = self.host.model.config
        dropout = config.dropout_prob
        if dropout is None:
            dropout = getattr(model_config, "attention_probs_dropout_prob", 0.0) or 0.0
        sites = [s for s in self.sites if all(n in s.adapters for n in adapter_names)]
        if not sites:
            raise AdapterConfigError(
                f"the adapters {adapter_names} share no adapter position, so there is nothing to fuse"
            )
        for site in sites:
            layer = AdapterFusionLayer(config, self.host.hidden_size, dropout)
            site.add_fusion(name, _place_like(layer, site.output_module))
        self.fusions[name] = (list(adapter_names), config)

    def delete_fusion(self, name: str) -> None:
        for site in self.sites:
            site.delete_fusion(name)
        self.fusions.pop(name, None)

    def fusion_layers(self, name: str) -> list[AdapterFusionLayer]:
        return [
            cast(AdapterFusionLayer, s.fusion_layers[name])
            for s in self.sites
            if s.fusion_layers is not None and name in s.fusion_layers
        ]

    def set_active(self, names: list[str]) -> None:
        setup = self.host.active  # the structure (Stack / Fuse) behind ``names``
        for site in self.sites:
            if site.index in self.host.skip_layers:  # AdapterDrop
                site.set_active([], None)
            else:
                site.set_active(names, setup)
        if self.invertible is not None:
            self.invertible.set_active(names)

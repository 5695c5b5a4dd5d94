"""The adapter library: add, train, save, load and activate adapters in Transformers models."""

from .architectures import Architecture, Site, register_architecture, supported_model_types
from .composition import Fuse, Stack
from .configs import AdapterConfig, config_hash, parse_config_string, preset_names, resolve_config
from .errors import (
    AdapterConfigError,
    AdapterError,
    AdapterExistsError,
    AdapterLoadError,
    AdapterNotFoundError,
    UnsupportedModelError,
)
from .methods.bottleneck import BnConfig, FusionConfig
from .methods.lora import IA3Config, LoRAConfig
from .methods.union import ConfigUnion
from .model import init
from . import fusion as _fusion, setups as _setups, trainer_checkpoints as _trainer_checkpoints  # noqa: E402,F401  (register their model methods)
from .adapter_model import AdapterModel

__all__ = [
    "AdapterConfig",
    "AdapterConfigError",
    "AdapterError",
    "AdapterExistsError",
    "AdapterLoadError",
    "AdapterModel",
    "AdapterNotFoundError",
    "Architecture",
    "BnConfig",
    "ConfigUnion",
    "Fuse",
    "FusionConfig",
    "IA3Config",
    "LoRAConfig",
    "Site",
    "Stack",
    "UnsupportedModelError",
    "config_hash",
    "init",
    "parse_config_string",
    "preset_names",
    "register_architecture",
    "resolve_config",
    "supported_model_types",
]

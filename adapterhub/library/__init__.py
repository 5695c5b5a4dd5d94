"""The adapter library: add, train, save, load and activate adapters in Transformers models."""

from .architectures import Architecture, Site, register_architecture, supported_model_types
from .composition import Stack
from .configs import AdapterConfig, config_hash, parse_config_string, preset_names, resolve_config
from .errors import (
    AdapterConfigError,
    AdapterError,
    AdapterExistsError,
    AdapterLoadError,
    AdapterNotFoundError,
    UnsupportedModelError,
)
from .methods.bottleneck import BnConfig
from .model import init

__all__ = [
    "AdapterConfig", "AdapterConfigError", "AdapterError", "AdapterExistsError", "AdapterLoadError",
    "AdapterNotFoundError", "Architecture", "BnConfig", "Site", "Stack", "UnsupportedModelError", "config_hash",
    "init", "parse_config_string", "preset_names", "register_architecture", "resolve_config",
    "supported_model_types",
]

"""adapterhub: adapters for Transformers models, and a hub to share and find them.

import adapterhub
adapterhub.init(model)
model.add_adapter("sst", config="seq_bn")
model.train_adapter("sst")

The names below come from the library (``adapterhub.library``) and the hub client (``adapterhub.client``),
each imported when one of its names is first used: ``import adapterhub`` alone loads neither torch nor the
client, so a program (the ``adapterhub`` command) can still set up the process before torch loads.
"""

import importlib

from .version import __version__

_LIBRARY_NAMES = (  # adapterhub.library.__all__
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
)
_CLIENT_NAMES = ("list_adapters", "search_adapters", "adapter_info")

__all__ = ["__version__", *_LIBRARY_NAMES]


def _import_client() -> None:
    importlib.import_module("adapterhub.client")  # importing it registers the hub functions with the library


def __getattr__(name: str):
    if name in _CLIENT_NAMES:
        return getattr(importlib.import_module("adapterhub.client"), name)
    if name in _LIBRARY_NAMES:
        # The library asks for the hub client (load_adapter by identifier, push_adapter_to_hub) through
        # adapterhub.library.remote; this tells it how to import the client when one of them is first needed.
        importlib.import_module("adapterhub.library.remote").register_importer(_import_client)
        return getattr(importlib.import_module("adapterhub.library"), name)
    raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LIBRARY_NAMES, *_CLIENT_NAMES})

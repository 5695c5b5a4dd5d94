"""adapterhub: adapters for Transformers models, and a hub to share and find them.

    import adapterhub
    adapterhub.init(model)
    model.add_adapter("sst", config="seq_bn")
    model.train_adapter("sst")
"""

__version__ = "0.1.0"

from .library import *  # noqa: E402,F401,F403
from .library import __all__  # noqa: E402,F401

_CLIENT_NAMES = ("list_adapters", "search_adapters", "adapter_info")


def __getattr__(name: str):
    """``adapterhub.list_adapters(...)`` and friends come from the hub client, imported only when used."""
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")

"""adapterhub: adapters for Transformers models, and a hub to share and find them.

import adapterhub
adapterhub.init(model)
model.add_adapter("sst", config="seq_bn")
model.train_adapter("sst")
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# Idle OpenMP threads of torch spin for ~300,000 iterations before they sleep. On a CPU shared with other
# processes a spinning thread holds the core that the thread it waits for needs: a training step of the
# quickstart then took 4-9 s instead of 0.8 s at load 8 on 2 cores. A short spin keeps the unloaded speed.
# libgomp reads this once, when torch loads it, so it only applies if torch is not imported yet; any explicit
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "torch" not in _sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ):
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from .library import *  # noqa: E402,F401,F403
from .library import __all__  # noqa: E402,F401

_CLIENT_NAMES = ("list_adapters", "search_adapters", "adapter_info")


def __getattr__(name: str):
    """``adapterhub.list_adapters(...)`` and friends come from the hub client, imported only when used."""
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")

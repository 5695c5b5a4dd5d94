"""Prefix tuning: learned keys and values put before the sequence's own in every layer's self-attention.

The prefixes of adapter NAME live in one module on the base model (``prefix_tuning.prefix_tunings.NAME.
self_prefix.*``, the AdapterHub format); ``eject_prefix_tuning(name)`` replaces the MLP reparametrisation by the
flat prefixes it computes.
"""

from ...model import register_api
from .config import PrefixTuningConfig
from .method import PrefixTuningMethod


def eject_prefix_tuning(self, name: str) -> None:
    """Replace the MLP of prefix tuning adapter ``name`` by the prefixes it computes (``flat=True``)."""
    from ...model import _known, _state

    state = _state(self)
    _known(state, name)
    method = next((m for m in state.methods_of(name) if isinstance(m, PrefixTuningMethod)), None)
    if method is None:
        raise TypeError(f"adapter {name!r} is not a prefix tuning adapter")
    method.eject(name)  # also the prefix part of a union


register_api({"eject_prefix_tuning": eject_prefix_tuning})

__all__ = ["PrefixTuningConfig", "PrefixTuningMethod", "eject_prefix_tuning"]

"""ReFT (Wu et al., 2024): interventions on the hidden states that chosen layers output, at the first and last
tokens of every sequence (``loreft``, ``noreft``, ``direft``).

Adapter NAME's intervention at layer i lives in ``<layers>.i.reft_layer.refts.NAME`` (``units.0`` / ``units.1``:
``learned_source``, ``projection``), the AdapterHub format; a forward hook on the layer applies the active one.
"""

from .config import DiReftConfig, LoReftConfig, NoReftConfig, ReftConfig
from .method import ReftMethod

__all__ = ["DiReftConfig", "LoReftConfig", "NoReftConfig", "ReftConfig", "ReftMethod"]

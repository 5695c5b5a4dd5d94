"""Config unions: one adapter made of several methods' configs (``ConfigUnion``), and the presets built from
them, ``mam`` (prefix tuning + a parallel bottleneck adapter) and ``unipelt`` (gated prefix tuning, gated
sequential bottleneck adapter and gated LoRA).

A union is no method of its own: each part is added, activated, trained, saved and deleted by its own method
under the adapter's one name (the model asks ``config.parts()``), so its weights are the parts' weights with
their usual names (``...attention.self.query.loras.NAME.lora_A``, ``...output.adapters.NAME.adapter_up.weight``).
"""

from .config import ConfigUnion, mam_config, unipelt_config

__all__ = ["ConfigUnion", "mam_config", "unipelt_config"]

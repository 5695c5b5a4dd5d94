"""LoRA (with DoRA and rsLoRA) and (IA)^3: adapters that change the weights of chosen linear layers.

Each targeted layer (``nn.Linear`` or GPT-2's ``Conv1D``) holds the adapters in a ``loras`` dict
(``encoder.layer.0.attention.self.query.loras.NAME.lora_A``, the AdapterHub format); a forward hook on the
layer applies the active one. ``merge_adapter(name)`` folds one adapter into the layers' weights (and, for
IA3, biases); ``reset_adapter()`` puts back the weights it replaced.
"""

from .config import IA3Config, LoRAConfig
from .method import LoRAMethod

__all__ = ["IA3Config", "LoRAConfig", "LoRAMethod"]

"""Prompt tuning: learned vectors put into the sequence after the embeddings (before it, or after its first token).

The prompt of adapter NAME lives in one module on the base model (``prompt_tuning.prompt_tunings.NAME.
prompt_embedding.weight``, the AdapterHub format).
"""

from .config import PromptTuningConfig
from .method import PromptTuningMethod

__all__ = ["PromptTuningConfig", "PromptTuningMethod"]

"""The prompt tuning config, with the option names and defaults of the AdapterHub format."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ...configs import AdapterConfig, register_config_class, register_preset
from ...errors import AdapterConfigError

PROMPT_INITS = ("random_uniform", "from_string")
COMBINES = ("prefix", "prefix_after_bos")


@register_config_class
@dataclasses.dataclass(frozen=True)
class PromptTuningConfig(AdapterConfig):
    """Prompt tuning (Lester et al., 2021): ``prompt_length`` learned vectors put into the sequence after the
        embeddings, before it (``combine="prefix"``) or after its first token (``"prefix_after_bos"``); the outputs
        are ``prompt_length`` positions longer than the input. ``prompt_init``: ``"random_uniform"`` (in
        ``[-random_uniform_scale, random_uniform_scale]``) or ``"from_string"`` (the embeddings of
        ``prompt_init_text``'s tokens, repeated to the prompt length, with the tokenizer named by the model config's
        ``tokenizer_name_or_path`` or ``_name_or_path``). ``input_embeddings`` (PEFT's form, set for adapters read
    from PEFT files): the prompt joins the token embeddings, before the model adds positions."""

    method = "prompt_tuning"
    architecture = "prompt_tuning"
    # random_uniform_scale is a class attribute in the AdapterHub format, not a saved option
    extensions = {"random_uniform_scale": 0.5, "input_embeddings": False}

    prompt_length: int = 10
    prompt_init: str = "random_uniform"
    prompt_init_text: Optional[str] = None
    combine: str = "prefix"
    init_weights_seed: Optional[int] = None
    random_uniform_scale: float = 0.5
    input_embeddings: bool = False

    def __post_init__(self) -> None:
        problems = []
        if (
            not isinstance(self.prompt_length, int)
            or isinstance(self.prompt_length, bool)
            or self.prompt_length < 1
        ):
            problems.append(f"prompt_length must be a positive integer, got {self.prompt_length!r}")
        if self.prompt_init not in PROMPT_INITS:
            problems.append(f"prompt_init must be one of {PROMPT_INITS}, got {self.prompt_init!r}")
        if self.prompt_init == "from_string" and not (
            isinstance(self.prompt_init_text, str) and self.prompt_init_text
        ):
            problems.append("prompt_init='from_string' needs a non-empty prompt_init_text")
        if self.combine not in COMBINES:
            problems.append(f"combine must be one of {COMBINES}, got {self.combine!r}")
        if not isinstance(self.random_uniform_scale, (int, float)) or self.random_uniform_scale <= 0:
            problems.append(
                f"random_uniform_scale must be a positive number, got {self.random_uniform_scale!r}"
            )
        if problems:
            raise AdapterConfigError("invalid prompt_tuning adapter config: " + "; ".join(problems))


register_preset("prompt_tuning", PromptTuningConfig)

"""Tiny randomly initialised models of every supported architecture, built from configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

#: the project's ../shared folder (data, interop fixtures)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

_COMMON = dict(vocab_size=100, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)

CONFIGS = {
    "bert": lambda: transformers.BertConfig(hidden_size=32, pad_token_id=0, **_COMMON),
    "roberta": lambda: transformers.RobertaConfig(
        hidden_size=32, pad_token_id=1, max_position_embeddings=40, **_COMMON
    ),
    "xlm-roberta": lambda: transformers.XLMRobertaConfig(
        hidden_size=32, pad_token_id=1, max_position_embeddings=40, **_COMMON
    ),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37, pad_token_id=0
    ),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=100,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=40,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "llama": lambda: transformers.LlamaConfig(
        hidden_size=32, num_key_value_heads=2, pad_token_id=0, **_COMMON
    ),
    "mistral": lambda: transformers.MistralConfig(
        hidden_size=32, num_key_value_heads=2, pad_token_id=0, **_COMMON
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        hidden_size=32, num_key_value_heads=2, pad_token_id=0, **_COMMON
    ),
}
ARCHS = list(CONFIGS)
DECODERS = {"gpt2", "llama", "mistral", "qwen2"}


def make_model(arch: str, kind: str = "base", seed: int = 0, num_labels: int = 3):
    """kind: "base" (AutoModel), "seqcls" (AutoModelForSequenceClassification) or "lm" (AutoModelForCausalLM)."""
    config = CONFIGS[arch]()
    config.num_labels = num_labels
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    cls = {
        "base": transformers.AutoModel,
        "seqcls": transformers.AutoModelForSequenceClassification,
        "lm": transformers.AutoModelForCausalLM,
    }[kind]
    model = cls.from_config(config)
    with torch.no_grad():  # make biases and norms non-trivial so that mistakes are not hidden
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model.eval()


def inputs(seed: int = 1, batch: int = 2, length: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


def output_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def random_token_examples(n: int, seed: int) -> list[dict]:
    """Random token sequences of 4-11 tokens; the label says whether most tokens are above the middle id."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = torch.randint(3, 100, (length,), generator=generator)
        examples.append({"input_ids": ids.tolist(), "labels": int((ids > 50).float().mean() > 0.5)})
    return examples


def collate_examples(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad ``random_token_examples`` (with 0) into a batch with an attention mask and labels."""
    width = max(len(e["input_ids"]) for e in examples)
    return {
        "input_ids": torch.tensor([e["input_ids"] + [0] * (width - len(e["input_ids"])) for e in examples]),
        "attention_mask": torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        ),
        "labels": torch.tensor([e["labels"] for e in examples]),
    }


def perturb_adapter(model, name: str, seed: int = 7, scale: float = 0.1) -> None:
    """Add seeded noise to every weight of adapter ``name`` (so that it changes the model's output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def model_with_adapter(arch: str, config, kind: str = "base", perturb: bool = True, scale: float = 0.1):
    """A tiny ``arch`` model (``make_model``) with adapter ``a`` of ``config`` added (inactive), perturbed."""
    import adapterhub

    model = adapterhub.init(make_model(arch, kind))
    model.add_adapter("a", config=config)
    if perturb:
        perturb_adapter(model, "a", scale=scale)
    return model

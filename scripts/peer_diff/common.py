"""Shared by both sides of the differential harness (adapterhub in its venv, the `adapters` library in
.venv-adapters): tiny model configs, the padded batch, the randomisation of adapter weights, the forward and
backward pass whose outputs and gradients are compared, and the file exchange (safetensors + json only).

Imports only torch, transformers and safetensors, so that it runs under both transformers versions.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

# the tiny configs of the test suite (tests/tiny_models.py imports only torch and transformers), plus ELECTRA
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from tiny_models import CONFIGS as _TINY  # noqa: E402

CONFIGS = {
    **_TINY,
    "electra": lambda: transformers.ElectraConfig(
        vocab_size=100,
        hidden_size=32,
        embedding_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        pad_token_id=0,
    ),  # fmt: skip
}
DECODERS = {"gpt2", "llama", "mistral", "qwen2"}
#: model kinds: a bare base model, a Transformers model with a static head, an LM, flexible heads
AUTO = {
    "base": "AutoModel",
    "seqcls": "AutoModelForSequenceClassification",
    "mlm": "AutoModelForMaskedLM",
    "clm": "AutoModelForCausalLM",
}
#: parameters that a case randomises (and whose gradients are compared by name): adapter modules, fusion
#: layers, flexible heads; static heads are added per model (see :func:`randomise`)
ADAPTER_KEYS = re.compile(
    r"(^|\.)(adapters|invertible_adapters|shared_parameters|adapter_fusion_layer|loras|refts|heads|prefix_tunings"
    r"|prefix_gates)\."
)
#: the peer registers its prefix pool again under every layer's attention module; named_parameters() may list
#: the pool under the first of these names, which is renamed to the pool's own (``<base>.prefix_tuning.``)
_POOL_COPY = re.compile(r"[^ ]*?\.prefix_tuning\.pool\.")


def lm_kind(arch: str) -> str:
    return "clm" if arch in DECODERS else "mlm"


def build_base_models(folder: Path) -> None:
    """Every (architecture, kind) checkpoint, with non-trivial biases and norms, saved with save_pretrained."""
    for arch, make in CONFIGS.items():
        for kind in ("base", "seqcls", lm_kind(arch)):
            config = make()
            config.num_labels = 3
            torch.manual_seed(0)
            model = getattr(transformers, AUTO[kind]).from_config(config)
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(torch.randn_like(param) * 0.02)
            model.save_pretrained(folder / arch / kind)


def batch(arch: str, padding: str = "right") -> dict[str, torch.Tensor]:
    """Three rows of length 9, the last two padded (by 2 and 5 positions) on the ``padding`` side (right or left),
    with the pad id."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    mask[2, -5:] = 0
    if padding == "left":
        mask = mask.flip(-1)
    pad = CONFIGS[arch]().pad_token_id
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    return {"input_ids": ids, "attention_mask": mask}


def randomise(model, seed: int, static_head_prefix: str | None = None) -> None:
    """Every adapter, fusion and head parameter drawn at random (so that no up-projection is zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in sorted(model.named_parameters()):
            static = static_head_prefix is not None and not key.startswith(static_head_prefix)
            if ADAPTER_KEYS.search(key) or static:
                noise = torch.randn(param.shape, generator=generator) * 0.2
                param.copy_(noise + (1.0 if "norm" in key and key.endswith("weight") else 0.0))
                if key.endswith("parametrizations.weight.original"):  # an orthogonal parametrization (ReFT):
                    param.diagonal().copy_(noise.diagonal().sign())  # its diagonal only gives signs, of ±1


def _output_tensor(output):
    for name in ("logits", "last_hidden_state"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    if isinstance(output, (list, tuple)):
        return _output_tensor(output[0])
    return output[0]


def forward_backward(
    model, arch: str, train_steps: int = 0, padding: str = "right"
) -> dict[str, torch.Tensor]:
    """Outputs (padding positions zeroed) and the gradient of a fixed random projection of them w.r.t.
    every adapter/head parameter, in eval mode, after ``train_steps`` forward passes in train mode (state that
    training changes, such as AdapterFusion's temperature schedule); ``padding``: the side of the batch's padding."""
    inputs = batch(arch, padding)
    model.train()
    with torch.no_grad():
        for _ in range(train_steps):
            model(**inputs)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
        param.grad = None
    out = _output_tensor(model(**inputs))
    if out.dim() >= 2 and tuple(out.shape[:2]) == tuple(inputs["input_ids"].shape):  # one row per token
        mask = inputs["attention_mask"].to(out.dtype)
        out = out * mask.view(*mask.shape, *([1] * (out.dim() - 2)))
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()
    result = {"output": out.detach().clone()}
    base = "" if getattr(model, "base_model", model) is model else model.base_model_prefix + "."
    for key, param in model.named_parameters():
        if param.grad is not None and ADAPTER_KEYS.search(key):
            key = _POOL_COPY.sub(base + "prefix_tuning.", key, count=1)
            result["grad:" + key] = param.grad.detach().clone()
    return result


def write_result(path: Path, tensors: dict[str, torch.Tensor] | None, error: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tensors is not None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps({"error": error}))


def read_result(path: Path) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    meta = path.with_suffix(".json")
    if not meta.is_file():
        return None, "no result"
    error = json.loads(meta.read_text())["error"]
    tensors = path.with_suffix(".safetensors")
    return (load_file(str(tensors)) if tensors.is_file() else None), error

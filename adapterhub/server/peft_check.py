"""Structural check of PEFT LoRA and IA3 adapters against their base model, for the hub's upload
validation while the library cannot load PEFT adapters itself.

The base model is built on the meta device from its ``config.json`` (no memory, no weights). Every module
that ``target_modules`` selects must have its adapter tensors with the right shapes
(LoRA: ``lora_A`` [r, in], ``lora_B`` [out, r]; embeddings: ``lora_embedding_A`` [r, num], ``lora_embedding_B``
[dim, r]; IA3: ``ia3_l`` [out, 1], or [1, in] for feed-forward modules), and no tensor may name a module that
is not targeted or does not exist. Only safetensors are read (header only).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SUPPORTED = ("LORA", "IA3")
WEIGHT_FILE = "adapter_model.safetensors"


def _targets(cfg: dict, names: list[str], linear: set[str]) -> set[str]:
    tm = cfg.get("target_modules")
    if isinstance(tm, str):
        if tm == "all-linear":
            return {
                n
                for n in linear
                if n.rsplit(".", 1)[-1] not in ("lm_head", "classifier", "score", "qa_outputs")
            }
        return {n for n in names if re.fullmatch(tm, n)}
    tm = tm or []
    return {n for n in names if any(n == t or n.endswith("." + t) for t in tm)}


def _in_out(module) -> tuple[int, int] | None:
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    if isinstance(module, torch.nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    return None


def check_peft(adapter_dir: Path, base_config: dict) -> dict[str, Any] | None:
    """A load-check result dict (ok, errors, method, num_params, missing_keys, unexpected_keys,
    changed_modules), or None if this PEFT method is not one of ``SUPPORTED``."""
    import torch
    import transformers
    from safetensors import safe_open

    folder = Path(adapter_dir)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    kind = str(cfg.get("peft_type", "")).upper()
    if kind not in SUPPORTED:
        return None
    out: dict[str, Any] = {
        "method": kind.lower(),
        "errors": [],
        "missing_keys": [],
        "unexpected_keys": [],
        "num_params": 0,
        "changed_modules": 0,
    }
    if not (folder / WEIGHT_FILE).is_file():
        out["errors"].append(f"no {WEIGHT_FILE}")
        out["ok"] = False
        return out
    data = dict(base_config)
    config = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config)
    modules = dict(model.named_modules())
    linear = {n for n, m in modules.items() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"}
    targets = _targets(cfg, list(modules), linear)
    prefix = getattr(model, "base_model_prefix", "") or ""
    if isinstance(cfg.get("target_modules"), str) and cfg["target_modules"] != "all-linear" and prefix:
        targets |= {n for n in modules if re.fullmatch(cfg["target_modules"], f"{prefix}.{n}")}
    keep = cfg.get("modules_to_save") or []
    ff = set(cfg.get("feedforward_modules") or []) if kind == "IA3" else set()
    r_default = cfg.get("r")
    strict_rank = not cfg.get("rank_pattern")
    partial = cfg.get("layers_to_transform") is not None
    seen: dict[str, set[str]] = {}
    with safe_open(str(folder / WEIGHT_FILE), "pt") as f:
        for key in f.keys():
            shape = list(f.get_slice(key).get_shape())
            n = 1
            for d in shape:
                n *= d
            out["num_params"] += n
            path = key[len("base_model.model.") :] if key.startswith("base_model.model.") else key
            if (
                prefix
                and path.startswith(prefix + ".")
                and path[len(prefix) + 1 :].split(".")[0] in {k.split(".")[0] for k in modules if k}
            ):
                path = path[len(prefix) + 1 :]
            m = re.match(
                r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|ia3_l)(?:\.weight)?$", path
            )
            if m is None:
                if any(path == k or path.startswith(k + ".") or f".{k}." in f".{path}" for k in keep):
                    continue  # a module saved whole (modules_to_save, e.g. a classifier)
                out["unexpected_keys"].append(key)
                continue
            mod, part = m.groups()
            if mod not in targets or mod not in modules:
                out["unexpected_keys"].append(key)
                continue
            seen.setdefault(mod, set()).add(part)
            dims = _in_out(modules[mod])
            if dims is None:
                out["errors"].append(
                    f"{key}: {mod} is a {type(modules[mod]).__name__}, not a layer {kind} can adapt"
                )
                continue
            fan_in, fan_out = dims
            want = {
                "lora_A": [r_default, fan_in], "lora_B": [fan_out, r_default],
                "lora_embedding_A": [r_default, fan_in], "lora_embedding_B": [fan_out, r_default],
                "ia3_l": [1, fan_in] if any(mod == t or mod.endswith("." + t) for t in ff) else [fan_out, 1],
            }[part]  # fmt: skip
            if not strict_rank and part != "ia3_l":
                want = [shape[0], fan_in] if part.endswith("A") else [fan_out, shape[1]]
            if shape != want:
                out["errors"].append(f"shape mismatch: {key} is {shape}, the base model needs {want}")
    need = {"ia3_l"} if kind == "IA3" else None
    for mod in sorted(targets):
        have = seen.get(mod, set())
        parts = need or (
            {"lora_embedding_A", "lora_embedding_B"}
            if isinstance(modules[mod], torch.nn.Embedding)
            else {"lora_A", "lora_B"}
        )
        if not have and partial:
            continue
        for p in sorted(parts - have):
            out["missing_keys"].append(f"base_model.model.{mod}.{p}" + ("" if p == "ia3_l" else ".weight"))
    out["changed_modules"] = len(seen)
    if not targets:
        out["errors"].append("target_modules selects no module of the base model")
    out["ok"] = (
        not (out["errors"] or out["missing_keys"] or out["unexpected_keys"]) and out["changed_modules"] > 0
    )
    return out

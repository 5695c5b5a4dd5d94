"""Checks that a saved adapter really fits its base model, without the base model's weights.

Used by the hub to validate every upload: the adapter is loaded into a randomly initialised model built
from the base model's ``config.json``; it must have no missing or unexpected keys, and it must change the
model's output. Only safetensors weights are read (pickle files are refused, never loaded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import transformers

from .errors import AdapterError
from .keys import local_weights
from .model import init
from .saving import (
    CONFIG_NAME,
    HEAD_CONFIG_NAME,
    LEGACY_WEIGHTS_NAME,
    WEIGHTS_NAME,
    compare_keys,
    read_json,
    read_tensors,
)

#: Above this many base parameters the model is built without memory (meta device): keys and shapes are
#: still checked, the forward pass is not.
MAX_FORWARD_PARAMS = 150_000_000


@dataclasses.dataclass
class ValidationReport:
    ok: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)
    method: str = ""
    num_params: int = 0
    missing_keys: list[str] = dataclasses.field(default_factory=list)
    unexpected_keys: list[str] = dataclasses.field(default_factory=list)
    changed_modules: int = 0
    output_checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(base_config: dict[str, Any], head: dict | None, meta: bool) -> torch.nn.Module:
    data = dict(base_config)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise AdapterError("the base model's config.json has no model_type")
    config = transformers.AutoConfig.for_model(model_type, **data)
    config._attn_implementation = "eager"
    cls = transformers.AutoModel
    if head and head.get("config") is None and head.get("model_class"):
        cls = getattr(transformers, head["model_class"], transformers.AutoModel)
        config.num_labels = head.get("num_labels") or config.num_labels
    with torch.device("meta") if meta else torch.device("cpu"):
        model = cls.from_config(config) if cls is transformers.AutoModel else cls(config)
    return model.eval()


def _estimate_params(base_config: dict[str, Any]) -> int:
    with torch.device("meta"):
        model = _build(base_config, None, meta=True)
    return sum(p.numel() for p in model.parameters())


def validate_adapter(adapter_dir: str | Path, base_config: dict[str, Any]) -> ValidationReport:
    report = ValidationReport()
    folder = Path(adapter_dir)
    try:
        header = read_json(folder / CONFIG_NAME)
    except (AdapterError, OSError) as error:
        report.errors.append(f"{CONFIG_NAME}: {error}")
        return report
    if "peft_type" in header:
        report.method = str(header["peft_type"]).lower()
        report.errors.append(f"PEFT adapters ({header['peft_type']}) cannot be validated by this hub yet")
        return report
    if not (folder / WEIGHTS_NAME).is_file():
        if (folder / LEGACY_WEIGHTS_NAME).is_file():
            report.errors.append(f"pickle weights ({LEGACY_WEIGHTS_NAME}) are refused: upload {WEIGHTS_NAME}")
        else:
            report.errors.append(f"no {WEIGHTS_NAME}")
        return report
    head = read_json(folder / HEAD_CONFIG_NAME) if (folder / HEAD_CONFIG_NAME).is_file() else None
    try:
        meta = _estimate_params(base_config) > MAX_FORWARD_PARAMS
        model = init(_build(base_config, head, meta=meta))
        state = model.adapterhub_state
        if header.get("model_type") and header["model_type"] != model.config.model_type:
            raise AdapterError(
                f"adapter is for a {header['model_type']!r} model, the base model is "
                f"{model.config.model_type!r}"
            )
        if header.get("hidden_size") not in (None, state.hidden_size):
            raise AdapterError(
                f"adapter is for hidden size {header['hidden_size']}, the base model has {state.hidden_size}"
            )
        name = header.get("name") or "adapter"
        model.add_adapter(name, header.get("config"))
        report.method = state.configs[name].method
        weights, _ = read_tensors(folder, (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME))
        weights = local_weights(weights, state, name, name)
        expected = state.adapter_state_dict(name)
        missing, unexpected, wrong = compare_keys(expected, weights)
        report.missing_keys, report.unexpected_keys = missing, unexpected
        report.num_params = sum(p.numel() for p in state.adapter_parameters(name).values())
        report.changed_modules = len(state.method_of(name).modules(name))
        if missing:
            report.errors.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            report.errors.append(f"unexpected keys: {', '.join(unexpected)}")
        if wrong:
            report.errors.append("shape mismatch: " + ", ".join(wrong))
        if head is not None and head.get("config") is None:
            head_weights, _ = read_tensors(folder, ("model_head.safetensors", "pytorch_model_head.bin"))
            expected_head = {k: p.detach() for k, p in state.head_parameters().items()}
            h_missing, h_unexpected, h_wrong = compare_keys(expected_head, head_weights)
            report.missing_keys += h_missing
            report.unexpected_keys += h_unexpected
            wrong += h_wrong
        if report.changed_modules == 0:
            report.errors.append("the adapter adds no module to the model")
        if not report.errors and not meta:
            with torch.no_grad():
                for key, value in weights.items():
                    model.get_parameter(key).copy_(value)
                ids = torch.randint(
                    0, min(100, model.config.vocab_size), (1, 8), generator=torch.Generator().manual_seed(0)
                )
                before = model(input_ids=ids)[0]
                model.set_active_adapters(name)
                after = model(input_ids=ids)[0]
            report.output_checked = True
            if torch.equal(before, after):
                report.errors.append("the adapter does not change the model's output (all-zero weights?)")
            if not torch.isfinite(after).all():
                report.errors.append("the adapter makes the model's output NaN or infinite")
    except (AdapterError, ValueError, KeyError, TypeError, OSError) as error:
        report.errors.append(str(error))
    report.ok = not report.errors
    return report

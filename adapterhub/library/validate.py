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

from .adapter_io import LEGACY_PEFT_WEIGHTS_NAME, PEFT_DEFAULT_NAME, PEFT_PREFIX, PEFT_WEIGHTS_NAME, read_peft
from .errors import AdapterConfigError, AdapterError
from .adapter_model import AdapterModel
from .keys import local_weights
from .methods.base import method_for_peft
from .model import init
from .paths import get_tensor
from .saving import (
    CONFIG_NAME,
    HEAD_CONFIG_NAME,
    HEAD_WEIGHTS_NAME,
    LEGACY_HEAD_WEIGHTS_NAME,
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


def _build(base_config: dict[str, Any], head: dict | None, meta: bool) -> Any:  # a Transformers model
    """A randomly initialised model of the base config: with the fixed head class that ``head`` names
    (``model_class``), as an ``AdapterModel`` for a flexible head, else the bare base model."""
    data = dict(base_config)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise AdapterError("the base model's config.json has no model_type")
    config = transformers.AutoConfig.for_model(model_type, **data)
    config._attn_implementation = "eager"
    cls: Any = transformers.AutoModel
    if head and head.get("config") is None and head.get("model_class"):
        cls = model_class(head["model_class"])
        num_labels = head.get("num_labels")
        if num_labels is not None and not (isinstance(num_labels, int) and 0 < num_labels <= 100_000):
            raise AdapterError(
                f"{HEAD_CONFIG_NAME}: num_labels must be a positive integer, got {num_labels!r}"
            )
        if num_labels:
            config.num_labels = num_labels
    with torch.device("meta") if meta else torch.device("cpu"):
        model = cls.from_config(config) if cls is transformers.AutoModel else cls(config)
        if head and isinstance(head.get("config"), dict):
            model = AdapterModel(model)
    return model.eval()


def model_class(name: Any) -> type:
    """The transformers model class ``name`` (a head's ``model_class``), refused unless it is a subclass of
    ``PreTrainedModel``: an upload names it, so nothing else of transformers may be called with it."""
    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise AdapterError(
            f"{HEAD_CONFIG_NAME}: model_class {name!r} is not a transformers model class "
            "(a PreTrainedModel subclass such as BertForSequenceClassification)"
        )
    return cls


def _estimate_params(base_config: dict[str, Any]) -> int:
    with torch.device("meta"):
        model = _build(base_config, None, meta=True)
    return sum(p.numel() for p in model.parameters())


def validate_adapter(adapter_dir: str | Path, base_config: dict[str, Any]) -> ValidationReport:
    """Check the adapter saved in ``adapter_dir`` against a model of ``base_config`` (see the module docstring):
    read the upload, build the model, load the adapter and its head, compare keys, then run the model."""
    report = ValidationReport()
    folder = Path(adapter_dir)
    try:
        upload = _read_upload(folder, base_config, report)
    except _Refused as problem:
        report.errors.append(str(problem))
        return report
    try:
        _load_check(upload, base_config, report)
    except (AdapterError, ValueError, KeyError, TypeError, OSError) as error:
        report.errors.append(str(error).replace(f"{folder}/", ""))  # names files, not where they were checked
    report.ok = not report.errors
    return report


class _Refused(Exception):
    """An upload that cannot be checked at all; the message is the report's only error."""


@dataclasses.dataclass
class _Upload:
    folder: Path
    header: dict[str, Any]  # adapter_config.json
    peft: bool  # the PEFT dialect (read through the library like AdapterHub files)
    head: dict[str, Any] | None  # the head it carries, as a head_config.json describes it


def _read_upload(folder: Path, base_config: dict[str, Any], report: ValidationReport) -> _Upload:
    """The upload's config, dialect and head; :class:`_Refused` if it has no config, a PEFT type this library
    cannot load, no safetensors weights, or an unreadable head description."""
    try:
        header = read_json(folder / CONFIG_NAME)
    except (AdapterError, OSError) as error:
        raise _Refused(f"{CONFIG_NAME}: {error}") from None
    peft = "peft_type" in header
    if peft:
        try:
            method_for_peft(header["peft_type"])
        except AdapterConfigError:
            report.method = str(header["peft_type"]).lower()
            raise _Refused(
                f"PEFT adapters ({header['peft_type']}) cannot be validated by this hub yet"
            ) from None
    weights_name, legacy_name = (
        (PEFT_WEIGHTS_NAME, LEGACY_PEFT_WEIGHTS_NAME) if peft else (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME)
    )
    if not (folder / weights_name).is_file():
        if (folder / legacy_name).is_file():
            raise _Refused(f"pickle weights ({legacy_name}) are refused: upload {weights_name}")
        raise _Refused(f"no {weights_name}")
    try:
        if peft:
            head = _peft_head(folder, header, base_config)
        else:
            head = read_json(folder / HEAD_CONFIG_NAME) if (folder / HEAD_CONFIG_NAME).is_file() else None
    except (AdapterError, OSError) as error:
        raise _Refused(str(error).replace(f"{folder}/", "")) from None
    return _Upload(folder, header, peft, head)


def _load_check(upload: _Upload, base_config: dict[str, Any], report: ValidationReport) -> None:
    """Load the upload into a random model of ``base_config`` and fill ``report``; raises on the first problem
    that stops the check (the caller reports it)."""
    meta = _estimate_params(base_config) > MAX_FORWARD_PARAMS
    model: Any = init(_build(base_config, upload.head, meta=meta))  # with the adapter API bound to it
    state = model.adapterhub_state
    _check_model_fits(upload.header, model, state)
    name, config, weights, head_weights = _read_adapter(upload, state)
    model.add_adapter(name, config)
    report.method = state.configs[name].method
    _compare_adapter(state, name, weights, report)
    if upload.peft:
        report.errors += _fixed_head_errors(state, head_weights, report) if upload.head else []
    else:
        report.errors += _head_errors(model, state, upload.folder, upload.head, name, report)
    if report.changed_modules == 0:
        report.errors.append("the adapter adds no module to the model")
    if not report.errors and not meta:
        _check_output(model, name, weights, report)


def _check_model_fits(header: dict[str, Any], model: Any, state: Any) -> None:
    """The model type and hidden size the adapter was saved for (if it says) are the base model's."""
    if header.get("model_type") and header["model_type"] != model.config.model_type:
        raise AdapterError(
            f"adapter is for a {header['model_type']!r} model, the base model is {model.config.model_type!r}"
        )
    if header.get("hidden_size") not in (None, state.hidden_size):
        raise AdapterError(
            f"adapter is for hidden size {header['hidden_size']}, the base model has {state.hidden_size}"
        )


def _read_adapter(upload: _Upload, state: Any) -> tuple[str, Any, dict, dict]:
    """(name, config, weights keyed as in the model, PEFT head weights) of the uploaded adapter."""
    if upload.peft:
        config, weights, head_weights, _ = read_peft(
            state, upload.folder, upload.folder / CONFIG_NAME, upload.header
        )
        return PEFT_DEFAULT_NAME, config, weights, head_weights
    name = upload.header.get("name") or "adapter"
    weights, _ = read_tensors(upload.folder, (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME))
    return name, upload.header.get("config"), local_weights(weights, state, name, name), {}


def _compare_adapter(state: Any, name: str, weights: dict, report: ValidationReport) -> None:
    """The adapter's saved weights against the weights adding it made: keys and shapes; its size."""
    missing, unexpected, wrong = compare_keys(state.adapter_state_dict(name), weights)
    report.missing_keys, report.unexpected_keys = missing, unexpected
    report.num_params = sum(p.numel() for p in state.adapter_parameters(name).values())
    report.changed_modules = sum(len(m.modules(name)) for m in state.methods_of(name))
    if missing:
        report.errors.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        report.errors.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        report.errors.append("shape mismatch: " + ", ".join(wrong))


def _check_output(model: Any, name: str, weights: dict, report: ValidationReport) -> None:
    """With its weights in place, the active adapter changes the model's output, to finite values."""
    with torch.no_grad():
        for key, value in weights.items():
            get_tensor(model, key).copy_(value)
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


def _head_errors(
    model, state, folder: Path, head: dict | None, name: str, report: ValidationReport
) -> list[str]:
    """The saved head checked like the adapter's weights: a fixed head's keys and shapes against the head of
    ``model_class``, a flexible head through the loader users run (``AdapterModel.prepare_saved_head``)."""
    if head is None:
        return []
    if isinstance(head.get("config"), dict):
        model.prepare_saved_head(
            folder, name
        )  # raises AdapterError naming any key or shape that does not fit
        return []
    if head.get("config") is not None:
        return [f"{HEAD_CONFIG_NAME}: 'config' must be an object (a flexible head) or null (a fixed head)"]
    head_weights, _ = read_tensors(folder, (HEAD_WEIGHTS_NAME, LEGACY_HEAD_WEIGHTS_NAME))
    return _fixed_head_errors(state, head_weights, report)


def _fixed_head_errors(state, head_weights: dict, report: ValidationReport) -> list[str]:
    """A fixed head's saved weights against the head of the model built for it (keys and shapes)."""
    expected = {k: p.detach() for k, p in state.head_parameters().items()}
    missing, unexpected, wrong = compare_keys(expected, head_weights)
    report.missing_keys += [f"head: {k}" for k in missing]
    report.unexpected_keys += [f"head: {k}" for k in unexpected]
    errors = []
    if missing:
        errors.append(f"head: missing keys: {', '.join(missing)}")
    if unexpected:
        errors.append(f"head: unexpected keys: {', '.join(unexpected)}")
    if wrong:
        errors.append("head: shape mismatch: " + ", ".join(wrong))
    return errors


_PEFT_TASK_CLASSES = {  # PEFT task_type -> the transformers mapping of model types to head classes
    "SEQ_CLS": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "TOKEN_CLS": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "QUESTION_ANS": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
}


def _peft_head(folder: Path, header: dict, base_config: dict[str, Any]) -> dict | None:
    """The fixed head that a PEFT adapter's ``modules_to_save`` holds, as a head_config.json would describe it
    (``model_class`` from PEFT's ``auto_mapping`` or its ``task_type``, ``num_labels`` from the head's output
    layer), else None."""
    from transformers.models.auto import modeling_auto

    modules = header.get("modules_to_save") or []
    model_class = (header.get("auto_mapping") or {}).get("base_model_class")
    mapping = _PEFT_TASK_CLASSES.get(str(header.get("task_type")))
    if model_class is None and mapping is not None:
        model_class = getattr(modeling_auto, mapping).get(base_config.get("model_type"))
    if not modules or not model_class:
        return None
    weights, _ = read_tensors(folder, (PEFT_WEIGHTS_NAME, LEGACY_PEFT_WEIGHTS_NAME))
    prefixes = tuple(f"{PEFT_PREFIX}{m}." for m in modules if isinstance(m, str))
    matrices = sorted(k for k, v in weights.items() if k.startswith(prefixes) and v.dim() == 2)
    if not matrices:
        return None
    return {"config": None, "model_class": model_class, "num_labels": int(weights[matrices[-1]].shape[0])}

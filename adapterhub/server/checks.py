"""The checks an upload must pass before it is stored, each on its own file: ``adapter_config.json`` in the
AdapterHub or the PEFT dialect, the model card's YAML front matter, a ``.safetensors`` header against the
file's size. They read bytes and return errors; ``validation.py`` runs them on the tree of a commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import struct
from pathlib import Path

import yaml

from adapterhub.common.cards import opens_front_matter, split_front_matter

ADAPTER_CONFIG = "adapter_config.json"
SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


@dataclasses.dataclass
class AdapterInfo:
    """What the checks before storing learn about one adapter folder."""

    folder: str  # "" for the repo root
    dialect: str  # "adapterhub" | "peft"
    base_model: str
    base_revision: str | None
    config: dict


def check_adapter_config(
    data: bytes, card_meta: dict | None = None, folder: str = ""
) -> tuple[AdapterInfo | None, list[str]]:
    """Parse and check one ``adapter_config.json``; returns (info, errors)."""
    where = posixpath.join(folder, ADAPTER_CONFIG)
    try:
        cfg = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, [f"{where}: not valid JSON ({e})"]
    if not isinstance(cfg, dict):
        return None, [f"{where}: must be a JSON object"]
    errors: list[str] = []
    card_base = _card_base_model(card_meta or {})
    if "peft_type" in cfg:
        dialect = "peft"
        if not isinstance(cfg["peft_type"], str) or not cfg["peft_type"]:
            errors.append(f"{where}: peft_type must be a non-empty string")
        base = cfg.get("base_model_name_or_path") or card_base
        revision = cfg.get("revision") or None
        if "r" in cfg and not (isinstance(cfg["r"], int) and cfg["r"] > 0):
            errors.append(f"{where}: r must be a positive integer")
        tm = cfg.get("target_modules")
        if tm is not None and not isinstance(tm, (str, list)):
            errors.append(f"{where}: target_modules must be a string, a list or null")
        if cfg.get("task_type") is not None and not isinstance(cfg["task_type"], str):
            errors.append(f"{where}: task_type must be a string or null")
    elif "config" in cfg and ("model_type" in cfg or "model_name" in cfg):
        dialect = "adapterhub"
        if not isinstance(cfg["config"], (dict, str)):
            errors.append(f"{where}: 'config' must be an object (the adapter configuration) or a config name")
        elif isinstance(cfg["config"], dict) and not cfg["config"]:
            errors.append(f"{where}: 'config' is empty")
        for key in ("model_type", "name", "model_name", "model_class"):
            if key in cfg and cfg[key] is not None and not isinstance(cfg[key], str):
                errors.append(f"{where}: '{key}' must be a string")
        hs = cfg.get("hidden_size")
        if hs is not None and not (isinstance(hs, int) and hs > 0):
            errors.append(f"{where}: hidden_size must be a positive integer or null")
        base = cfg.get("model_name") or card_base
        revision = cfg.get("model_revision") or None
    else:
        return None, [
            f"{where}: neither an AdapterHub config (keys 'config' and 'model_type') nor a PEFT config (key 'peft_type')"
        ]
    if not base or not isinstance(base, str):
        errors.append(
            f"{where}: the base model is not named (set 'model_name' / 'base_model_name_or_path' "
            "or 'base_model' in the README card)"
        )
        base = ""
    if revision is not None and not isinstance(revision, str):
        errors.append(f"{where}: the base model revision must be a string")
        revision = None
    if errors:
        return None, errors
    return AdapterInfo(folder, dialect, base.strip(), revision, cfg), []


def _card_base_model(meta: dict) -> str | None:
    b = meta.get("base_model")
    if isinstance(b, list) and b:
        b = b[0]
    return b if isinstance(b, str) and b else None


def parse_card(text: bytes) -> tuple[dict, list[str]]:
    """YAML front matter of a README.md: (metadata, errors). No front matter is allowed (empty dict)."""
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        return {}, ["README.md: not UTF-8 text"]
    if not opens_front_matter(s):
        return {}, []
    front, _ = split_front_matter(s)
    if front is None:
        return {}, ["README.md: YAML front matter opened with '---' but never closed"]
    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError as e:
        return {}, [f"README.md: invalid YAML front matter ({e})"]
    if not isinstance(meta, dict):
        return {}, ["README.md: the YAML front matter must be a mapping"]
    errors = []
    for key in ("license", "library_name", "pipeline_tag"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            errors.append(f"README.md: '{key}' must be a string")
    for key in ("tags", "datasets", "language", "base_model"):
        v = meta.get(key)
        if (
            v is not None
            and not isinstance(v, str)
            and not (isinstance(v, list) and all(isinstance(x, str) for x in v))
        ):
            errors.append(f"README.md: '{key}' must be a string or a list of strings")
    return meta, errors


def check_safetensors(path: Path, name: str) -> tuple[dict[str, list[int]], list[str]]:
    """Check a safetensors file's header against its size; returns ({tensor: shape}, errors)."""
    size = os.path.getsize(path)
    bad = f"{name}: not a valid safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return {}, [f"{bad} (too short)"]
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 * 1024 * 1024):
            return {}, [f"{bad} (header length {n} does not fit the file)"]
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}, [f"{bad} (header is not JSON)"]
    if not isinstance(header, dict):
        return {}, [f"{bad} (header is not an object)"]
    shapes: dict[str, list[int]] = {}
    spans: list[tuple[int, int, str]] = []
    for key, t in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = t["dtype"], t["shape"], t["data_offsets"]
            numel = 1
            for d in shape:
                numel *= int(d)
            if dtype not in SAFETENSORS_DTYPES or b - a != numel * SAFETENSORS_DTYPES[dtype] or a < 0:
                return {}, [f"{bad} (tensor {key!r}: dtype/shape/offsets disagree)"]
        except (KeyError, TypeError, ValueError):
            return {}, [f"{bad} (tensor {key!r}: malformed entry)"]
        shapes[key] = list(shape)
        spans.append((a, b, key))
    end = 0  # tensors must tile the data section in order, as the safetensors loader requires
    for a, b, key in sorted(spans):
        if a != end:
            why = "overlaps the tensor before it" if a < end else "leaves a gap before it"
            return {}, [f"{bad} (tensor {key!r} at bytes {a}-{b} {why})"]
        end = b
    if 8 + n + end != size:
        return {}, [f"{bad} (data section is {size - 8 - n} bytes, the header describes {end})"]
    return shapes, []


def fingerprint(files: dict[str, str], base_commit: str) -> str:
    """Identity of one validation job: the adapter folder's files (path -> sha256) and the base commit."""
    h = hashlib.sha256(base_commit.encode())
    for p in sorted(files):
        h.update(f"\n{p}\0{files[p]}".encode())
    return h.hexdigest()

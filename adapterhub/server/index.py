"""Adapter-aware metadata extraction for the hub index.

`extract_metadata` is a pure function: it takes the files of one commit (the paths with their sizes and the
bytes of the few small metadata files) and returns an `AdapterMetadata`. It understands both dialects of
`adapter_config.json` (AdapterHub's `adapters` library and PEFT), `head_config.json` and the YAML front
matter of the model card `README.md`. `indexing.index_commit` stores the result in the index tables (it is
registered as a post-commit hook of the hub).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import yaml

from adapterhub.common.cards import split_front_matter

log = logging.getLogger(__name__)

#: Files whose bytes the extractor reads (all small JSON / Markdown files).
METADATA_FILES = (
    "adapter_config.json",
    "head_config.json",
    "README.md",
    "adapter_setup.json",
    "adapter_fusion_config.json",
)
#: File names counted as weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: The most bytes read from a metadata file; bigger files are ignored (an index must never be a DoS vector).
MAX_METADATA_BYTES = 1 << 20

# HF model classes -> head type (static heads, e.g. BertForSequenceClassification).
_CLASS_HEADS = (
    ("ForSequenceClassification", "classification"),
    ("ForTokenClassification", "tagging"),
    ("ForQuestionAnswering", "question_answering"),
    ("ForMultipleChoice", "multiple_choice"),
    ("ForCausalLM", "causal_lm"),
    ("ForMaskedLM", "masked_lm"),
    ("ForConditionalGeneration", "seq2seq_lm"),
    ("LMHeadModel", "causal_lm"),
)
# PEFT task_type -> head type.
_PEFT_TASK_HEADS = {
    "SEQ_CLS": "classification",
    "TOKEN_CLS": "tagging",
    "QUESTION_ANS": "question_answering",
    "CAUSAL_LM": "causal_lm",
    "SEQ_2_SEQ_LM": "seq2seq_lm",
}
# A few language names used by legacy cards -> ISO 639-1 codes.
LANGUAGE_NAMES = {
    "english": "en",
    "german": "de",
    "french": "fr",
    "spanish": "es",
    "chinese": "zh",
    "japanese": "ja",
    "arabic": "ar",
    "russian": "ru",
    "romanian": "ro",
    "hindi": "hi",
    "multilingual": "multilingual",
}


@dataclass
class FileInfo:
    path: str
    size: int
    sha256: str | None = None


@dataclass
class AdapterMetadata:
    """Everything the index knows about one commit of an adapter repository."""

    is_adapter: bool = False
    library: str | None = None  # "adapters" (AdapterHub dialect) or "peft"
    config_path: str | None = None
    adapter_name: str | None = None
    method: str | None = None  # seq_bn, double_seq_bn, par_bn, compacter, lora, ia3, prefix_tuning, ...
    method_family: str | None = None  # bottleneck, lora, prefix, prompt, reft, union, ...
    hyperparams: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None  # the method config (AdapterHub `config`, or the whole PEFT config)
    config_hash: str | None = None  # AdapterHub config hash (legacy ids resolve through it)
    base_model: str | None = None
    base_model_revision: str | None = None
    model_type: str | None = None
    model_class: str | None = None
    hidden_size: int | None = None
    library_version: str | None = None
    head_type: str | None = None
    num_labels: int | None = None
    labels: list[str] = field(default_factory=list)
    task: str | None = None
    subtask: str | None = None
    language: str | None = None
    languages: list[str] = field(default_factory=list)
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    description: str | None = None
    card: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    weights_bytes: int = 0
    num_params: int | None = None  # every tensor of the weight files, heads included
    head_params: int | None = None  # of which in prediction heads (see is_head_tensor)
    sub_adapters: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- helpers
def _nonempty(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [v for v in value if v is not None and v != ""]
    return [value]


def config_hash(config: Mapping[str, Any]) -> str:
    """AdapterHub's config hash (`adapters`' `get_adapter_config_hash`), from the core library."""
    from adapterhub.library.configs import config_hash as _hash

    return _hash(dict(config))


def normalize_language(value: Any) -> str | None:
    value = _nonempty(value)
    if not isinstance(value, str):
        return None
    value = value.strip().lower().replace("_", "-")
    return LANGUAGE_NAMES.get(value, value)


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Splits a model card into its YAML front matter (a dict, empty when absent or invalid) and body."""
    front, body = split_front_matter(text)
    if front is None:
        return {}, body
    try:
        data = yaml.safe_load(front)
    except yaml.YAMLError:
        return {}, body
    return (data if isinstance(data, dict) else {}), body


def card_description(body: str, limit: int = 500) -> str | None:
    """The first prose paragraph of a Markdown card (headings, comments and placeholders skipped)."""
    body = re.sub(r"<!--.*?-->", "", body, flags=re.S)
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        if not para or para.startswith(("#", "```", "|", "- **", "[More Information Needed]")):
            continue
        para = " ".join(para.split())
        para = re.sub(r"(\*\*|__|`)", "", para)  # the list shows plain text
        return para[:limit]
    return None


def safetensors_header(header_bytes: bytes) -> dict[str, dict[str, Any]] | None:
    """The tensors a safetensors file declares, ``name -> {"dtype", "shape", "data_offsets"}``, from its
    first bytes (8-byte length + JSON header); None if they are not a complete, well-formed header."""
    if len(header_bytes) < 8:
        return None
    (n,) = struct.unpack("<Q", header_bytes[:8])
    if n > len(header_bytes) - 8:
        return None
    try:
        header = json.loads(header_bytes[8 : 8 + n])
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            return None
        tensors[key] = info
    return tensors


def tensor_size(info: Mapping[str, Any]) -> int:
    count = 1
    for dim in info["shape"]:
        count *= int(dim)
    return count


def safetensors_num_params(header_bytes: bytes) -> int | None:
    """Parameter count from the first bytes of a safetensors file (8-byte length + JSON header)."""
    tensors = safetensors_header(header_bytes)
    return None if tensors is None else sum(tensor_size(t) for t in tensors.values())


def is_head_tensor(path: str, key: str, saved_modules: Iterable[str] = ()) -> bool:
    """Whether a saved tensor belongs to a prediction head rather than to the adapter itself: a head file of
    the AdapterHub format (``model_head.safetensors``), or a module that PEFT saves whole (its config's
    ``modules_to_save``, such as the classifier)."""
    if path.rsplit("/", 1)[-1].startswith("model_head."):
        return True
    dotted = f".{key}."
    return ".modules_to_save." in dotted or any(f".{m}." in dotted for m in saved_modules)


# ------------------------------------------------------------------------------------------ config dialects
def bottleneck_method(c: Mapping[str, Any]) -> str:
    if c.get("phm_layer"):
        name = "compacter" if c.get("mh_adapter") else "compacter++"
    elif c.get("is_parallel"):
        name = "scaled_par_bn" if c.get("scaling") == "learned" else "par_bn"
    elif c.get("mh_adapter") and c.get("output_adapter"):
        name = "double_seq_bn"
    else:
        name = "seq_bn"
    if c.get("inv_adapter"):
        name += "_inv"
    return name


_BN_KEYS = (
    "reduction_factor",
    "non_linearity",
    "mh_adapter",
    "output_adapter",
    "is_parallel",
    "scaling",
    "leave_out",
    "phm_dim",
    "inv_adapter",
)
_LORA_KEYS = (
    "r",
    "alpha",
    "attn_matrices",
    "dropout",
    "selfattn_lora",
    "intermediate_lora",
    "output_lora",
    "composition_mode",
    "use_dora",
    "leave_out",
)


def _adapterhub_method(c: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    arch = c.get("architecture")
    if arch in (None, "bottleneck"):
        hp = {k: c[k] for k in _BN_KEYS if k in c and c[k] not in (None, [])}
        for key, default in (("is_parallel", False), ("scaling", 1.0), ("inv_adapter", None)):
            if hp.get(key) == default:
                hp.pop(key, None)
        if not c.get("phm_layer"):
            hp.pop("phm_dim", None)
        return bottleneck_method(c), "bottleneck", hp
    hp: dict[str, Any]
    if arch in ("lora", "mtl_lora"):
        hp = {k: c[k] for k in _LORA_KEYS if k in c and c[k] not in (None, [])}
        if c.get("composition_mode") == "scale":
            method = "ia3"
        elif c.get("vera_d") is not None or c.get("vera_b") is not None:
            method = "vera"
        elif c.get("use_dora"):
            method = "dora"
        else:
            method = arch
        return method, "lora", hp
    if arch == "vera":
        keys = ("r", "target_modules", "leave_out", "projection_prng_key", "d_initial", "dropout")
        return arch, "lora", {k: c[k] for k in keys if k in c and c[k] not in (None, [])}
    if arch == "prefix_tuning":
        keys = ("prefix_length", "bottleneck_size", "flat", "non_linearity", "leave_out")
        return arch, "prefix", {k: c[k] for k in keys if k in c}
    if arch == "prompt_tuning":
        keys = ("prompt_length", "prompt_init", "combine")
        return arch, "prompt", {k: c[k] for k in keys if k in c}
    if arch == "reft":
        keys = ("r", "layers", "prefix_positions", "suffix_positions", "orthogonality", "tied_weights")
        return arch, "reft", {k: c[k] for k in keys if k in c}
    if arch == "union":
        parts = [
            (_adapterhub_method(sub)[0] if isinstance(sub, Mapping) else "?") for sub in c.get("configs", [])
        ]
        return "union", "union", {"components": parts}
    return str(arch), str(arch), {}


_PEFT_KEYS = (
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "feedforward_modules",
    "use_rslora",
    "use_dora",
    "bias",
    "modules_to_save",
    "num_virtual_tokens",
    "prefix_projection",
    "encoder_hidden_size",
    "token_dim",
    "num_layers",
    "layers_to_transform",
    "init_lora_weights",
)


def _peft_method(c: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    ptype = str(c.get("peft_type", "")).lower()
    method = "dora" if ptype == "lora" and c.get("use_dora") else ptype
    family = {
        "lora": "lora",
        "adalora": "lora",
        "ia3": "lora",
        "vera": "lora",
        "loha": "lora",
        "lokr": "lora",
        "prefix_tuning": "prefix",
        "prompt_tuning": "prompt",
        "p_tuning": "prompt",
    }.get(ptype, ptype)
    hp = {}
    for k in _PEFT_KEYS:
        v = c.get(k)
        if v in (None, [], {}):
            continue
        if k in ("target_modules", "feedforward_modules", "modules_to_save") and isinstance(v, list):
            v = sorted(set(map(str, v)))  # PEFT writes sets in a random order
        hp[k] = v
    return method, family, hp


def head_from_class(model_class: str | None) -> str | None:
    for suffix, head in _CLASS_HEADS:
        if model_class and model_class.endswith(suffix):
            return head
    return None


def _labels(label2id: Any, id2label: Any = None) -> list[str]:
    if isinstance(label2id, Mapping) and label2id:
        try:
            return [str(k) for k, _ in sorted(label2id.items(), key=lambda kv: int(kv[1]))]
        except (TypeError, ValueError):
            return [str(k) for k in label2id]
    if isinstance(id2label, Mapping) and id2label:
        try:
            return [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
        except (TypeError, ValueError):
            return [str(v) for v in id2label.values()]
    return []


def _choose_config(paths: Iterable[str]) -> str | None:
    candidates = [p for p in paths if p == "adapter_config.json" or p.endswith("/adapter_config.json")]
    if not candidates:
        return None
    return sorted(candidates, key=lambda p: (p.count("/"), p))[0]


def _load_json(data: bytes | None, path: str, meta: AdapterMetadata) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        meta.warnings.append(f"{path}: not valid JSON ({e})")
        return None
    if not isinstance(value, dict):
        meta.warnings.append(f"{path}: expected a JSON object")
        return None
    return value


# ---------------------------------------------------------------------------------------------- extraction
def extract_metadata(
    files: Iterable[FileInfo | tuple[str, int]],
    read: Callable[[str], bytes | None] | Mapping[str, bytes],
    read_header: Callable[[str], bytes | None] | None = None,
) -> AdapterMetadata:
    """Extracts the index metadata of one commit.

    `files` lists every file of the commit (path and size); `read(path)` returns the bytes of a small file
    (only the names in `METADATA_FILES` are asked for) or None. `read_header(path)`, when given, returns the
    first bytes of a safetensors file (its header), from which the parameter count is computed.
    Never raises on bad input: problems are recorded in `warnings`.

    The steps: sizes; the adapter config (the shallowest `adapter_config.json`, either dialect); the other
    adapter folders of a composition; the head config beside the adapter config; the model card; the
    parameter counts from the safetensors headers.
    """
    infos = [f if isinstance(f, FileInfo) else FileInfo(f[0], int(f[1])) for f in files]
    get = _bounded_reader(read)
    paths = {f.path for f in infos}
    weights = [f for f in infos if f.path.endswith(WEIGHT_SUFFIXES)]
    meta = AdapterMetadata(size_bytes=sum(f.size for f in infos), weights_bytes=sum(f.size for f in weights))

    folder = _read_configs(meta, paths, get)
    card_path = next((p for p in ("README.md", folder + "README.md") if p in paths), None)
    card_bytes = get(card_path) if card_path else None
    if card_bytes is not None:
        _read_card(meta, card_bytes)
    _count_params(meta, weights, read_header)
    return meta


def _read_configs(meta: AdapterMetadata, paths: set[str], get: Callable[[str], bytes | None]) -> str:
    """The adapter config (the shallowest ``adapter_config.json``), the other adapter folders of a composition
    (``adapter_setup.json`` with one folder per adapter) and the head config beside the adapter config. Returns
    the adapter's folder (``""`` or ``"name/"``)."""
    cfg_path = _choose_config(paths)
    folder = cfg_path[: -len("adapter_config.json")] if cfg_path else ""
    if cfg_path:
        _read_adapter_config(meta, cfg_path, get(cfg_path))
    meta.sub_adapters = sorted(
        p.rsplit("/", 1)[0] for p in paths if p.endswith("/adapter_config.json") and p != cfg_path
    )
    head_path = folder + "head_config.json"
    if head_path in paths:
        _read_head_config(meta, head_path, get(head_path))
    if meta.head_type is None and meta.library == "adapters":
        meta.head_type = head_from_class(meta.model_class)
    return folder


def _bounded_reader(
    read: Callable[[str], bytes | None] | Mapping[str, bytes],
) -> Callable[[str], bytes | None]:
    """``read`` as a function that answers None for a file it cannot read or one over `MAX_METADATA_BYTES`."""
    reader = read.get if isinstance(read, Mapping) else read

    def get(path: str) -> bytes | None:
        try:
            data = reader(path)
        except (OSError, KeyError):
            return None
        if data is not None and len(data) > MAX_METADATA_BYTES:
            return None
        return data

    return get


def _read_adapter_config(meta: AdapterMetadata, cfg_path: str, data: bytes | None) -> None:
    cfg = _load_json(data, cfg_path, meta)
    if cfg is None:
        return
    meta.config_path = cfg_path
    if "peft_type" in cfg:
        _apply_peft_config(meta, cfg)
    elif isinstance(cfg.get("config"), Mapping):
        _apply_adapterhub_config(meta, cfg, cfg_path)
    else:
        meta.warnings.append(f"{cfg_path}: neither an AdapterHub (`config`) nor a PEFT (`peft_type`) config")


def _apply_peft_config(meta: AdapterMetadata, cfg: Mapping[str, Any]) -> None:
    meta.is_adapter, meta.library = True, "peft"
    meta.method, meta.method_family, meta.hyperparams = _peft_method(cfg)
    meta.config = dict(cfg)
    meta.base_model = _nonempty(cfg.get("base_model_name_or_path"))
    meta.base_model_revision = _nonempty(cfg.get("revision"))
    meta.library_version = cfg.get("peft_version")
    auto = cfg.get("auto_mapping") or {}
    if isinstance(auto, Mapping):
        meta.model_class = auto.get("base_model_class")
        m = re.match(r"transformers\.models\.([a-z0-9_]+)\.", str(auto.get("parent_library") or ""))
        meta.model_type = m.group(1).replace("_", "-") if m else None
    task_type = cfg.get("task_type")
    head = _PEFT_TASK_HEADS.get(str(task_type)) if task_type else None
    if head:
        meta.head_type = head


def _apply_adapterhub_config(meta: AdapterMetadata, cfg: Mapping[str, Any], cfg_path: str) -> None:
    meta.is_adapter, meta.library = True, "adapters"
    inner = cfg["config"]
    meta.config = dict(inner)
    meta.method, meta.method_family, meta.hyperparams = _adapterhub_method(inner)
    meta.base_model = _nonempty(cfg.get("model_name"))
    meta.model_type = _nonempty(cfg.get("model_type"))
    meta.model_class = _nonempty(cfg.get("model_class"))
    meta.hidden_size = cfg.get("hidden_size") if isinstance(cfg.get("hidden_size"), int) else None
    meta.adapter_name = _nonempty(cfg.get("name"))
    meta.library_version = cfg.get("version")
    try:
        meta.config_hash = config_hash(inner)
    except Exception as e:  # noqa: BLE001 - a bad config must not break indexing
        meta.warnings.append(f"{cfg_path}: cannot compute the config hash ({e})")


def _read_head_config(meta: AdapterMetadata, head_path: str, data: bytes | None) -> None:
    head = _load_json(data, head_path, meta)
    if head is None:
        return
    hc = head.get("config")
    if isinstance(hc, Mapping):
        meta.head_type = _nonempty(hc.get("head_type")) or meta.head_type
        meta.labels = _labels(hc.get("label2id"), hc.get("id2label"))
        meta.num_labels = hc.get("num_labels") if isinstance(hc.get("num_labels"), int) else None
    else:  # a static HF head saved with the adapter: label2id at the top level
        meta.head_type = head_from_class(head.get("model_class")) or meta.head_type
        meta.labels = _labels(head.get("label2id"), head.get("id2label"))
        meta.num_labels = head.get("num_labels") if isinstance(head.get("num_labels"), int) else None
    if meta.num_labels is None and meta.labels:
        meta.num_labels = len(meta.labels)
    meta.model_type = meta.model_type or _nonempty(head.get("model_type"))


def _read_card(meta: AdapterMetadata, data: bytes) -> None:
    front, body = parse_front_matter(data.decode("utf-8", errors="replace"))
    meta.card = _json_safe(front)
    _apply_card(meta, front)
    meta.description = card_description(body)


def _count_params(
    meta: AdapterMetadata, weights: list[FileInfo], read_header: Callable[[str], bytes | None] | None
) -> None:
    """Parameters of every safetensors weight file (and of those, the ones in prediction heads); None when no
    header could be read."""
    total, heads, seen = 0, 0, False
    saved = [str(m) for m in _as_list((meta.config or {}).get("modules_to_save")) if meta.library == "peft"]
    for f in weights:
        if not f.path.endswith(".safetensors"):
            continue
        head_bytes = _safe_call(read_header, f.path) if read_header else None
        tensors = safetensors_header(head_bytes) if head_bytes else None
        if tensors is None:
            continue
        seen = True
        for key, info in tensors.items():
            n = tensor_size(info)
            total += n
            heads += n if is_head_tensor(f.path, key, saved) else 0
    meta.num_params = total if seen else None
    meta.head_params = heads if seen else None


def _safe_call(fn: Callable[[str], bytes | None], path: str) -> bytes | None:
    try:
        return fn(path)
    except (OSError, KeyError, ValueError):
        return None


def _json_safe(value: Any) -> Any:
    """YAML front matter may contain dates and other non-JSON values."""
    return json.loads(json.dumps(value, default=str))


def _apply_card(meta: AdapterMetadata, front: Mapping[str, Any]) -> None:
    tags = [str(t) for t in _as_list(front.get("tags"))]
    meta.tags = tags
    for tag in tags:  # the HF Hub convention for AdapterHub adapters: `adapterhub:<task>/<subtask>`
        if tag.startswith("adapterhub:"):
            ts = tag.split(":", 1)[1]
            task, _, subtask = ts.partition("/")
            meta.task = meta.task or _nonempty(task)
            meta.subtask = meta.subtask or _nonempty(subtask)
    meta.task = _nonempty(front.get("task")) or meta.task
    subtask = front.get("subtask") or front.get("dataset")
    if subtask is None and front.get("datasets"):
        subtask = _as_list(front.get("datasets"))[0] if _as_list(front.get("datasets")) else None
    meta.subtask = _nonempty(str(subtask)) if subtask is not None and meta.subtask is None else meta.subtask
    langs = [normalize_language(v) for v in _as_list(front.get("language") or front.get("languages"))]
    meta.languages = [v for v in langs if v]
    meta.language = meta.languages[0] if meta.languages else None
    meta.license = _nonempty(str(front["license"])) if front.get("license") else None
    base = _as_list(front.get("base_model"))
    if base and not meta.base_model:
        meta.base_model = _nonempty(str(base[0]))
    if front.get("base_model_revision") and not meta.base_model_revision:
        meta.base_model_revision = str(front["base_model_revision"])
    if meta.head_type is None and front.get("head_type"):
        meta.head_type = str(front["head_type"])
    # metrics: a mapping {name: value}, or HF `model-index` results
    metrics = front.get("metrics")
    if isinstance(metrics, Mapping):
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                meta.metrics[str(k)] = float(v)
    for model in _as_list(front.get("model-index")):
        if not isinstance(model, Mapping):
            continue
        for result in _as_list(model.get("results")):
            if not isinstance(result, Mapping):
                continue
            ds = result.get("dataset")
            if isinstance(ds, Mapping) and meta.subtask is None:
                meta.subtask = _nonempty(str(ds.get("name") or ds.get("type") or "")) or None
            for m in _as_list(result.get("metrics")):
                if isinstance(m, Mapping) and isinstance(m.get("value"), (int, float)):
                    meta.metrics[str(m.get("type") or m.get("name"))] = float(m["value"])

"""Adapter configurations: the base class, named presets, the config string syntax and the config hash.

Each method declares its config class in its own package (``methods/<method>/config.py``) and registers its
presets here with :func:`register_preset`. A config is given to ``add_adapter`` as

* an :class:`AdapterConfig` instance,
* a preset name, optionally with overrides: ``"seq_bn[reduction_factor=32,non_linearity=gelu]"``,
* a dict (the ``config`` part of an ``adapter_config.json``, or the whole file).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
from typing import Any, Callable, ClassVar

from .errors import AdapterConfigError


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Base class of every method's configuration (a frozen dataclass)."""

    #: short method name shown in summaries ("bottleneck", "lora", ...)
    method: ClassVar[str] = ""
    #: value of the "architecture" key in saved configs (``None``: the key is not written, as for bottlenecks)
    architecture: ClassVar[str | None] = None
    #: options beyond the AdapterHub format and their defaults: written only when they differ, so that files with
    #: default options stay readable by the `adapters` library
    extensions: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, default in self.extensions.items():
            if data.get(key) == default:
                del data[key]
        if self.architecture is not None:
            data["architecture"] = self.architecture
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterConfig":
        data = dict(data)
        data.pop("architecture", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise AdapterConfigError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for a {cls.method} adapter; "
                f"known options: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> "AdapterConfig":
        data = self.to_dict()
        data.update(changes)
        return type(self).from_dict(data)

    def parts(self) -> tuple["AdapterConfig", ...]:
        """The configs that methods run: the config itself; a union (``ConfigUnion``) has one per method."""
        return (self,)

    def with_part(self, old: "AdapterConfig", new: "AdapterConfig") -> "AdapterConfig":
        """This config with part ``old`` replaced by ``new``."""
        if old is not self:
            raise AdapterConfigError(f"{old!r} is not a part of {self!r}")
        return new


#: the "architecture" of a union of several methods' configs (the AdapterHub format's name)
UNION = "union"
_PRESETS: dict[str, Callable[[], AdapterConfig]] = {}
_ARCHITECTURES: dict[str | None, type[AdapterConfig]] = {}


def register_preset(name: str, factory: Callable[[], AdapterConfig]) -> None:
    _PRESETS[name] = factory


def register_config_class(cls: type[AdapterConfig]) -> type[AdapterConfig]:
    _ARCHITECTURES[cls.architecture] = cls
    return cls


def preset_names() -> list[str]:
    _load_methods()
    return sorted(_PRESETS)


def _load_methods() -> None:
    # Importing the method packages registers their config classes and presets.
    from .methods.base import load_methods

    load_methods()


_STRING = re.compile(r"^\s*(?P<name>[^\[\]|]+?)\s*(?:\[(?P<options>.*)\])?\s*$", re.S)


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split ``a=1,b=[1,2],c='x,y'`` at the separators that are not nested in brackets or quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, None
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or depth:
        raise AdapterConfigError(f"unbalanced brackets or quotes in config options {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text in ("true", "false"):
            return text == "true"
        if text in ("null", "none"):
            return None
        return text  # bare word, e.g. non_linearity=gelu


def parse_config_string(text: str) -> tuple[str, dict[str, Any]]:
    """``"seq_bn[reduction_factor=32,non_linearity=gelu]"`` -> ``("seq_bn", {...})``."""
    match = _STRING.match(text)
    if not match:
        raise AdapterConfigError(
            f"invalid adapter config string {text!r}; expected 'name' or 'name[key=value,...]'"
        )
    options: dict[str, Any] = {}
    for item in _split_top_level(match.group("options") or ""):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise AdapterConfigError(f"invalid option {item!r} in config string {text!r}; expected key=value")
        options[key.strip()] = _parse_value(value.strip())
    return match.group("name"), options


def _preset(text: str) -> AdapterConfig:
    name, options = parse_config_string(text)
    if name not in _PRESETS:
        raise AdapterConfigError(
            f"unknown adapter config {name!r}; known presets: {', '.join(preset_names())}"
        )
    resolved = _PRESETS[name]()
    return resolved.replace(**options) if options else resolved


def resolve_config(config: AdapterConfig | str | dict[str, Any], **overrides: Any) -> AdapterConfig:
    """Turn any accepted config form into an :class:`AdapterConfig` (with ``overrides`` applied)."""
    _load_methods()
    if isinstance(config, AdapterConfig):
        resolved = config
    elif isinstance(config, str):
        strings = _split_top_level(config, "|") if "|" in config else [config]
        if len(strings) > 1:  # "prefix_tuning|par_bn": one adapter made of several methods' configs
            parts = [resolve_config(s) for s in strings]
            resolved = _ARCHITECTURES[UNION].from_dict({"configs": [p.to_dict() for p in parts]})
        else:
            resolved = _preset(config)
    elif isinstance(config, dict):
        data = config["config"] if isinstance(config.get("config"), dict) else config
        architecture = data.get("architecture")
        if architecture == "bottleneck":
            architecture = None
        if architecture not in _ARCHITECTURES:
            known = ", ".join(sorted(str(a or "bottleneck") for a in _ARCHITECTURES))
            raise AdapterConfigError(f"unknown adapter architecture {architecture!r}; known: {known}")
        resolved = _ARCHITECTURES[architecture].from_dict(data)
    else:
        raise AdapterConfigError(
            f"an adapter config must be a preset name, a dict or an AdapterConfig, not {type(config).__name__}"
        )
    return resolved.replace(**overrides) if overrides else resolved


# Keys whose default values are left out of the hash, so that hashes stay equal to those of older AdapterHub
# versions that did not have these options (a fact of the AdapterHub format).
_HASH_IGNORED_DEFAULTS = {
    "phm_layer": True,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "init_weights": "bert",
    "scaling": 1.0,
}


def _drop_falsy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_falsy(v) for k, v in value.items() if v}
    return value


def config_hash(config: AdapterConfig | dict[str, Any] | str, length: int = 16) -> str:
    """The AdapterHub config hash (first ``length`` hex digits of a SHA-1), used by legacy hub identifiers."""
    data = resolve_config(config).to_dict() if not isinstance(config, dict) else dict(config)
    data = _drop_falsy(data)
    for key, default in _HASH_IGNORED_DEFAULTS.items():
        if key in data and data[key] == default:
            del data[key]
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:length]

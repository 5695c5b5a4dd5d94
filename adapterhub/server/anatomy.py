"""Adapter anatomy: where a method acts in one Transformer layer of its base model, drawn as an SVG.

Pure functions of the adapter's config (the AdapterHub ``config`` dict or a whole PEFT config, as the
``adapters`` library and PEFT write them) and of the base model's ``config.json`` when the hub holds it:

* :func:`describe` reads the config into an :class:`Anatomy` (bottleneck sites, LoRA / IA3 target
  matrices and rank, prefix length, invertible adapters, layers left out);
* :func:`render_svg` draws it: the residual stream, the attention block with its Q/K/V/O matrices, the
  feed-forward block, the layer norms (post-LN encoders or pre-LN decoders), the adapter modules in place,
  a strip of all layers with the left-out ones greyed, and the parameter count and size next to the base
  model's.

Every drawn part carries ``data-part`` (and the numbers it shows as ``data-*`` attributes), so the drawing
can be checked against the config. No JavaScript and no inline styles: the page's stylesheet colours it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from adapterhub.server.humanize import human_params, human_size
from adapterhub.server.index import bottleneck_method

#: model types whose layers normalise *before* each sub-layer (``r + f(LN(r))``); the others are post-LN
#: encoders (``LN(r + f(r))``). Kept in step with the library's architecture maps by a test.
PRE_LN_MODEL_TYPES = frozenset({"gpt2", "llama", "mistral", "qwen2"})

#: matrix roles in one layer, in drawing order, with their labels
ATTENTION_MATRICES = (("q", "Q"), ("k", "K"), ("v", "V"), ("o", "O"))
FFN_MATRICES = (("ffn_gate", "gate"), ("ffn_in", "up"), ("ffn_out", "down"))

# The last one to three dotted components of a module name -> the matrix roles it names. Suffixes of
# several components win over shorter ones ("attention.output.dense" is O, "output.dense" the FFN output).
_MODULE_ROLES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("query", "q_proj", "q_lin", "q"), ("q",)),
    **dict.fromkeys(("key", "k_proj", "k_lin", "k"), ("k",)),
    **dict.fromkeys(("value", "v_proj", "v_lin", "v"), ("v",)),
    **dict.fromkeys(("o_proj", "out_lin", "out_proj", "attention.output.dense", "attn.c_proj"), ("o",)),
    "c_attn": ("q", "k", "v"),
    "qkv_proj": ("q", "k", "v"),
    "gate_proj": ("ffn_gate",),
    **dict.fromkeys(("intermediate.dense", "up_proj", "lin1", "c_fc", "fc1", "intermediate"), ("ffn_in",)),
    **dict.fromkeys(("output.dense", "down_proj", "lin2", "mlp.c_proj", "fc2"), ("ffn_out",)),
    "dense": ("o", "ffn_in", "ffn_out"),
    "c_proj": ("o", "ffn_out"),
}
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Bottleneck:
    site: str  # "attention" (mh_adapter) or "ffn" (output_adapter)
    parallel: bool
    reduction: str  # "16", or "per layer" for a dict
    size: int | None  # bottleneck width for the hidden size, when known
    hidden: int | None
    non_linearity: str
    scaling: str
    phm_dim: int | None = None  # Compacter: PHM layers
    phm_rank: int | None = None
    ln_before: bool = False
    ln_after: bool = False
    original_ln_before: bool = False
    residual_before_ln: str = "true"


@dataclass
class MatrixMethod:
    kind: str  # "lora" (low-rank update added) or "ia3" (vector scaling)
    matrices: set[str]
    rank: int | None = None
    alpha: float | None = None
    label: str = "LoRA"


@dataclass
class Anatomy:
    method: str
    pre_ln: bool = False
    hidden_size: int | None = None
    num_layers: int | None = None
    left_out: set[int] = field(default_factory=set)
    bottlenecks: list[Bottleneck] = field(default_factory=list)
    matrices: MatrixMethod | None = None
    prefix_length: int | None = None
    prefix_projection: str | None = None  # "MLP 512" or None (flat)
    prompt_length: int | None = None
    invertible: tuple[str, str] | None = None  # (block type, reduction factor)
    outside: list[str] = field(default_factory=list)  # trained modules outside the layers
    undrawn: list[str] = field(default_factory=list)  # parts of the config this drawing cannot place


@dataclass
class Sizes:
    adapter_params: int | None = None
    head_params: int | None = None  # saved with the adapter, not counted in adapter_params
    adapter_bytes: int | None = None
    base_params: int | None = None
    base_bytes: int | None = None


# ---------------------------------------------------------------------------------------------- describing
def base_dims(base_config: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """(hidden size, number of layers) from a Transformers ``config.json``."""
    cfg = base_config or {}

    def first(*keys: str) -> int | None:
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return None

    return first("hidden_size", "n_embd", "dim", "d_model"), first("num_hidden_layers", "n_layer", "n_layers")


def describe(
    config: Mapping[str, Any] | None,
    *,
    model_type: str | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
) -> Anatomy:
    """Reads an adapter config (AdapterHub ``config`` dict or PEFT config) into an :class:`Anatomy`."""
    cfg = dict(config or {})
    anat = Anatomy(
        method="?",
        pre_ln=(model_type or "").lower() in PRE_LN_MODEL_TYPES,
        hidden_size=hidden_size,
        num_layers=num_layers,
    )
    if "peft_type" in cfg:
        _describe_peft(anat, cfg)
    else:
        _describe_adapters(anat, cfg)
    if anat.num_layers is not None:
        anat.left_out = {i for i in anat.left_out if 0 <= i < anat.num_layers}
    return anat


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _layers(values: Any) -> set[int]:
    if isinstance(values, (int, str)) and not isinstance(values, bool):
        values = [values]
    out = set()
    for v in values if isinstance(values, (list, tuple)) else []:
        try:
            out.add(int(v))
        except (TypeError, ValueError):
            continue
    return out


def _describe_adapters(anat: Anatomy, c: Mapping[str, Any]) -> None:
    arch = c.get("architecture")
    if arch == "union":
        names = []
        for sub in c.get("configs") or []:
            if isinstance(sub, Mapping):
                part = Anatomy(method="?", hidden_size=anat.hidden_size)
                _describe_adapters(part, sub)
                names.append(part.method)
                anat.bottlenecks += part.bottlenecks
                anat.matrices = anat.matrices or part.matrices
                anat.prefix_length = anat.prefix_length or part.prefix_length
                anat.prefix_projection = anat.prefix_projection or part.prefix_projection
                anat.prompt_length = anat.prompt_length or part.prompt_length
                anat.invertible = anat.invertible or part.invertible
                anat.left_out |= part.left_out
                anat.undrawn += part.undrawn
        anat.method = " + ".join(names) or "union"
        return
    anat.left_out |= _layers(c.get("leave_out"))
    if arch in (None, "bottleneck"):
        _describe_bottleneck(anat, c)
    elif arch in ("lora", "mtl_lora"):
        roles: set[str] = set()
        if c.get("selfattn_lora", True):
            for m in c.get("attn_matrices") or ["q", "v"]:
                roles.update(_MODULE_ROLES.get(str(m), ()))
        if c.get("intermediate_lora"):
            roles.add("ffn_in")
        if c.get("output_lora"):
            roles.add("ffn_out")
        if c.get("composition_mode") == "scale":
            anat.method = "ia3"
            anat.matrices = MatrixMethod("ia3", roles, label="IA³")
        else:
            anat.method = "dora" if c.get("use_dora") else ("vera" if c.get("vera_d") is not None else "lora")
            label = {"dora": "DoRA", "vera": "VeRA"}.get(anat.method, "LoRA")
            anat.matrices = MatrixMethod("lora", roles, _int(c.get("r")), c.get("alpha"), label)
    elif arch == "prefix_tuning":
        anat.method = "prefix_tuning"
        anat.prefix_length = _int(c.get("prefix_length"))
        if not c.get("flat"):
            anat.prefix_projection = f"MLP {_num(c.get('bottleneck_size', '?'))}"
    elif arch == "prompt_tuning":
        anat.method = "prompt_tuning"
        anat.prompt_length = _int(c.get("prompt_length"))
    else:
        anat.method = str(arch)
        anat.undrawn.append(f"architecture {arch!r}")


def _describe_bottleneck(anat: Anatomy, c: Mapping[str, Any]) -> None:
    anat.method = bottleneck_method(c)
    rf = c.get("reduction_factor", 16)
    if isinstance(rf, Mapping):
        reduction, size = "per layer", None
    elif isinstance(rf, (int, float)) and not isinstance(rf, bool) and rf > 0:
        reduction = _num(rf)
        size = max(1, int(anat.hidden_size // rf)) if anat.hidden_size else None
    else:
        reduction, size = "?", None
    phm = bool(c.get("phm_layer"))
    for site, key, default in (("attention", "mh_adapter", False), ("ffn", "output_adapter", True)):
        if not c.get(key, default):
            continue
        anat.bottlenecks.append(
            Bottleneck(
                site=site,
                parallel=bool(c.get("is_parallel")),
                reduction=reduction,
                size=size,
                hidden=anat.hidden_size,
                non_linearity=str(c.get("non_linearity", "relu")),
                scaling=_num(c.get("scaling", 1.0)),
                phm_dim=_int(c.get("phm_dim", 4)) if phm else None,
                phm_rank=_int(c.get("phm_rank", 1)) if phm else None,
                ln_before=bool(c.get("ln_before")),
                ln_after=bool(c.get("ln_after")),
                original_ln_before=bool(c.get("original_ln_before")),
                residual_before_ln=str(c.get("residual_before_ln", True)).lower(),
            )
        )
    inv = c.get("inv_adapter")
    if inv:
        anat.invertible = (str(inv), _num(c.get("inv_adapter_reduction_factor")))


def module_roles(names: Iterable[str] | str) -> tuple[set[str], list[str]]:
    """Matrix roles named by PEFT ``target_modules`` (a list of module names, or a string, which PEFT reads
    as a regular expression: its plain words are looked up, never the expression run), and the names that
    are no layer matrix (e.g. ``pooler.dense``)."""
    if isinstance(names, str):
        if names == "all-linear":
            return {r for r, _ in ATTENTION_MATRICES + FFN_MATRICES}, []
        roles: set[str] = set()
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", names):
            roles.update(_MODULE_ROLES.get(word, ()))
        return roles, []
    roles, outside = set(), []
    for name in names:
        parts = str(name).split(".")
        if parts and parts[0] in ("pooler", "classifier", "score", "lm_head"):
            outside.append(str(name))
            continue
        for n in (3, 2, 1):
            hit = _MODULE_ROLES.get(".".join(parts[-n:])) if len(parts) >= n else None
            if hit:
                roles.update(hit)
                break
        else:
            outside.append(str(name))
    return roles, outside


def _describe_peft(anat: Anatomy, c: Mapping[str, Any]) -> None:
    ptype = str(c.get("peft_type", "")).upper()
    anat.method = ptype.lower()
    targets = c.get("target_modules") or []
    if ptype in ("LORA", "ADALORA", "IA3", "VERA", "LOHA", "LOKR"):
        roles, outside = module_roles(targets if isinstance(targets, (str, list)) else [])
        anat.outside = outside
        if ptype == "IA3":
            anat.matrices = MatrixMethod("ia3", roles, label="IA³")
        else:
            dora = ptype == "LORA" and bool(c.get("use_dora"))
            anat.method = "dora" if dora else anat.method
            label = "DoRA" if dora else {"LORA": "LoRA"}.get(ptype, ptype.title())
            anat.matrices = MatrixMethod("lora", roles, _int(c.get("r")), c.get("lora_alpha"), label)
        only = _layers(c.get("layers_to_transform"))
        if not only and isinstance(targets, list):  # module names with layer numbers in them
            numbered = [_LAYER_INDEX.search(f".{t}.") for t in targets if str(t) not in outside]
            if numbered and all(numbered):
                only = {int(m.group(1)) for m in numbered}
        if only and anat.num_layers:
            anat.left_out = set(range(anat.num_layers)) - only
    elif ptype == "PREFIX_TUNING":
        anat.prefix_length = _int(c.get("num_virtual_tokens"))
        if c.get("prefix_projection"):
            anat.prefix_projection = f"MLP {_num(c.get('encoder_hidden_size', '?'))}"
    elif ptype in ("PROMPT_TUNING", "P_TUNING"):
        anat.prompt_length = _int(c.get("num_virtual_tokens"))
    else:
        anat.undrawn.append(f"PEFT type {ptype}")
    for m in c.get("modules_to_save") or []:
        anat.outside.append(str(m))


# ------------------------------------------------------------------------------------------------- drawing
W = 600
MAIN_X, MAIN_W = 130, 250  # the layer's own blocks
SIDE_X, SIDE_W = 400, 190  # parallel adapters, prefixes
RES_X = 100  # the residual stream


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.y = 10

    def add(self, tag: str, attrs: Mapping[str, Any], text: str | None = None) -> None:
        a = " ".join(f'{k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items() if v is not None)
        self.parts.append(f"<{tag} {a}>{escape(text)}</{tag}>" if text is not None else f"<{tag} {a}/>")

    def open(self, tag: str, attrs: Mapping[str, Any]) -> None:
        a = " ".join(f'{k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items() if v is not None)
        self.parts.append(f"<{tag} {a}>")

    def close(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def box(self, x, y, w, h, label, cls, sub=None, label_top=False, extra=None, **data) -> None:
        self.open("g", {"class": f"part {cls}", **{f"data_{k}": v for k, v in data.items()}})
        self.add("rect", {"x": x, "y": y, "width": w, "height": h, "rx": 6})
        self.add(
            "text",
            {"x": x + w / 2, "y": y + (16 if sub or label_top else h / 2 + 4), "class": "label"},
            label,
        )
        if sub:
            self.add("text", {"x": x + w / 2, "y": y + 30, "class": "sub"}, sub)
        if extra:
            self.add("text", {"x": x + w / 2, "y": y + 44, "class": "sub"}, extra)
        self.close("g")

    def arrow(self, x1, y1, x2, y2, cls="flow") -> None:
        self.add(
            "line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "class": cls, "marker_end": "url(#ah-arrow)"}
        )


def _bottleneck_box(svg: _Svg, b: Bottleneck, x: float, y: float, w: float) -> int:
    """Draws one bottleneck adapter; returns its height."""
    kind = "Compacter" if b.phm_dim else "Bottleneck adapter"
    where = "parallel" if b.parallel else "sequential"
    dims = f"{b.hidden} → {b.size} → {b.hidden}" if b.size else f"h → h/{b.reduction} → h"
    sub = f"{where} · {dims} · {b.non_linearity}"
    extra = []
    if b.phm_dim:
        extra.append(f"PHM n={b.phm_dim}, rank {b.phm_rank}")
    if b.parallel or b.scaling != "1":
        extra.append(f"scale {b.scaling}")
    if b.ln_before:
        extra.append("LN before")
    if b.ln_after:
        extra.append("LN after")
    data = {
        "part": f"bottleneck-{b.site}",
        "placement": where,
        "reduction": b.reduction,
        "non_linearity": b.non_linearity,
        "size": b.size,
        "phm_dim": b.phm_dim,
        "ln_before": str(b.ln_before).lower(),
        "ln_after": str(b.ln_after).lower(),
    }
    h = 50 if extra else 38
    svg.box(x, y, w, h, f"{kind} ÷{b.reduction}", "adapter", sub, extra=" · ".join(extra), **data)
    return h


def _sublayer(svg: _Svg, anat: Anatomy, site: str) -> None:
    """One sub-layer (attention or feed-forward) with its norm, adapters and residual add."""
    seq = [b for b in anat.bottlenecks if b.site == site and not b.parallel]
    par = [b for b in anat.bottlenecks if b.site == site and b.parallel]
    cx = MAIN_X + MAIN_W / 2
    top = svg.y
    if anat.pre_ln:
        svg.box(MAIN_X + 50, svg.y, MAIN_W - 100, 22, "LayerNorm", "norm", part=f"norm-{site}")
        svg.arrow(cx, svg.y + 22, cx, svg.y + 32)
        svg.y += 32
    block_top = svg.y
    roles = ATTENTION_MATRICES if site == "attention" else FFN_MATRICES
    if site == "ffn" and not anat.pre_ln:
        roles = roles[1:]  # encoders have no gate projection
    title = "Multi-head attention" if site == "attention" else "Feed-forward"
    svg.box(MAIN_X, svg.y, MAIN_W, 74, title, "block", label_top=True, part=f"block-{site}")
    mw = (MAIN_W - 20 - 8 * (len(roles) - 1)) / len(roles)
    m = anat.matrices
    for i, (role, label) in enumerate(roles):
        hit = m is not None and role in m.matrices
        x = MAIN_X + 10 + i * (mw + 8)
        note = None
        if hit:
            note = f"r={m.rank}" if m.kind == "lora" and m.rank else ("×l" if m.kind == "ia3" else m.label)
        data = {
            "part": f"matrix-{role}",
            "method": (m.label if hit else None),
            "rank": m.rank if hit else None,
        }
        svg.box(x, svg.y + 26, mw, 40, label, "matrix hit" if hit else "matrix", note, **data)
    if site == "attention" and anat.prefix_length is not None:
        proj = f" via {anat.prefix_projection}" if anat.prefix_projection else ""
        svg.box(
            SIDE_X, svg.y + 10, SIDE_W, 44, f"Prefix: {anat.prefix_length} vectors", "adapter",
            f"prepended to K and V{proj}", part="prefix", length=anat.prefix_length,
        )  # fmt: skip
        svg.arrow(SIDE_X, svg.y + 40, MAIN_X + MAIN_W - 4, svg.y + 40)
    svg.y += 74
    for b in seq:
        svg.arrow(cx, svg.y, cx, svg.y + 12)
        svg.y += 12
        svg.y += _bottleneck_box(svg, b, MAIN_X, svg.y, MAIN_W)
    svg.arrow(cx, svg.y, cx, svg.y + 14)
    svg.y += 14
    add_y = svg.y
    label = "Add" if anat.pre_ln else "Add & LayerNorm"
    svg.box(MAIN_X + 40, add_y, MAIN_W - 80, 24, label, "norm", part=f"add-{site}")
    for i, b in enumerate(par):
        py = block_top + 8 + i * 56
        _bottleneck_box(svg, b, SIDE_X, py, SIDE_W)
        svg.add("path", {"d": f"M{cx},{top - 6} H{SIDE_X + SIDE_W / 2} V{py}", "class": "flow"})
        svg.add(
            "path",
            {"d": f"M{SIDE_X + SIDE_W / 2},{py + 50} V{add_y + 12} H{MAIN_X + MAIN_W - 40}", "class": "flow",
             "marker_end": "url(#ah-arrow)"},
        )  # fmt: skip
    svg.add(
        "path",
        {"d": f"M{cx},{top - 6} H{RES_X} V{add_y + 12} H{MAIN_X + 40}", "class": "residual",
         "marker_end": "url(#ah-arrow)", "data_part": f"residual-{site}"},
    )  # fmt: skip
    svg.y = add_y + 24


def render_svg(anat: Anatomy, sizes: Sizes | None = None) -> Markup:
    """The anatomy as an inline ``<svg>`` element."""
    svg = _Svg()
    cx = MAIN_X + MAIN_W / 2
    svg.add("text", {"x": 10, "y": 22, "class": "title"}, f"Method: {anat.method}")
    svg.y = 36
    if anat.prompt_length is not None or anat.invertible:
        svg.box(MAIN_X, svg.y, MAIN_W, 26, "Token embeddings", "block", part="embeddings")
        if anat.prompt_length is not None:
            svg.box(
                SIDE_X, svg.y - 4, SIDE_W, 34, f"Prompt: {anat.prompt_length} tokens", "adapter",
                part="prompt", length=anat.prompt_length,
            )  # fmt: skip
        svg.y += 26
        if anat.invertible:
            kind, rf = anat.invertible
            svg.arrow(cx, svg.y, cx, svg.y + 12)
            svg.y += 12
            svg.box(
                MAIN_X, svg.y, MAIN_W, 40, f"Invertible adapter ({kind})", "adapter",
                f"÷{rf} · inverted at the output head", part="invertible", block=kind, reduction=rf,
            )  # fmt: skip
            svg.y += 40
        svg.arrow(cx, svg.y, cx, svg.y + 16)
        svg.y += 16
    frame_top = svg.y
    n = f"× {anat.num_layers} layers" if anat.num_layers else "one layer (repeated)"
    svg.add("text", {"x": W - 10, "y": frame_top + 16, "class": "frame-label"}, n)
    svg.y += 26
    svg.add("text", {"x": cx, "y": svg.y, "class": "sub"}, "layer input")
    svg.y += 14
    _sublayer(svg, anat, "attention")
    svg.arrow(cx, svg.y, cx, svg.y + 24)
    svg.y += 24
    _sublayer(svg, anat, "ffn")
    svg.arrow(cx, svg.y, cx, svg.y + 16)
    svg.y += 22
    svg.add("text", {"x": cx, "y": svg.y, "class": "sub"}, "layer output")
    svg.y += 10
    svg.parts.insert(
        0,
        f'<rect class="frame" x="4" y="{frame_top}" width="{W - 8}" height="{svg.y - frame_top}" rx="10"/>',
    )
    svg.y += 12
    _layer_strip(svg, anat)
    if anat.outside:
        svg.y += 16
        svg.add("text", {"x": 10, "y": svg.y, "class": "sub left", "data_part": "outside"},
                "also trained: " + ", ".join(anat.outside[:6]) + (" …" if len(anat.outside) > 6 else ""))  # fmt: skip
    for note in anat.undrawn:
        svg.y += 16
        svg.add(
            "text", {"x": 10, "y": svg.y, "class": "sub left", "data_part": "undrawn"}, f"not drawn: {note}"
        )
    if sizes is not None:
        _sizes(svg, sizes)
    height = svg.y + 12
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="anatomy-svg" viewBox="0 0 {W} {height}" '
        f'width="{W}" height="{height}" role="img" aria-label="Where the adapter acts in one layer">'
        '<defs><marker id="ah-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'
    )
    return Markup(head + "".join(svg.parts) + "</svg>")


def _layer_strip(svg: _Svg, anat: Anatomy) -> None:
    if not anat.num_layers:
        if anat.left_out:
            svg.y += 14
            svg.add(
                "text", {"x": 10, "y": svg.y, "class": "sub left", "data_part": "left-out"},
                "left out: layers " + ", ".join(map(str, sorted(anat.left_out))),
            )  # fmt: skip
        return
    n = anat.num_layers
    cols = min(n, 24)
    cell = (W - 20 - 2 * (cols - 1)) / cols
    svg.add("text", {"x": 10, "y": svg.y + 10, "class": "sub left"}, "Layers (grey: left out)")
    svg.y += 16
    svg.open("g", {"data_part": "layers", "data_count": n})
    for i in range(n):
        row, col = divmod(i, cols)
        x, y = 10 + col * (cell + 2), svg.y + row * 24
        off = i in anat.left_out
        svg.open("g", {"class": "layer off" if off else "layer on", "data_layer": i})
        svg.add("rect", {"x": round(x, 2), "y": y, "width": round(cell, 2), "height": 20, "rx": 3})
        svg.add("text", {"x": round(x + cell / 2, 2), "y": y + 14, "class": "sub"}, str(i))
        svg.close("g")
    svg.close("g")
    svg.y += 24 * (-(-n // cols))


def _sizes(svg: _Svg, s: Sizes) -> None:
    rows = []
    if s.adapter_params is not None or s.adapter_bytes is not None:
        rows.append(("adapter", "Adapter", s.adapter_params, s.adapter_bytes))
    if s.base_params is not None or s.base_bytes is not None:
        rows.append(("base", "Base model", s.base_params, s.base_bytes))
    for key, label, params, size in rows:
        svg.y += 20
        parts = [f"{human_params(params)} parameters" if params is not None else "parameters unknown"]
        if key == "adapter" and s.head_params:
            parts[0] += f" (+ {human_params(s.head_params)} in the head)"
        if size is not None:
            parts.append(human_size(size) + (" of weights" if key == "adapter" else ""))
        if key == "base" and params and s.adapter_params:
            parts.append(f"the adapter adds {100 * s.adapter_params / params:.2f}%")
        svg.add(
            "text", {"x": 10, "y": svg.y, "class": "size left", "data_part": f"size-{key}", "data_params": params},
            f"{label}: " + " · ".join(parts),
        )  # fmt: skip

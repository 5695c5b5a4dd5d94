"""Model cards (README.md) as the adapter page shows them, the way the Hugging Face Hub does: the YAML front
matter becomes a metadata list, the Markdown body is rendered with raw HTML allowed and then passed through
a sanitiser (nh3, the Ammonia HTML sanitiser) that keeps a safe subset: no scripts, event handlers, styles,
forms or frames, links only to http(s)/mailto (opened with ``rel="noopener noreferrer nofollow"``), and HTML
comments (the standard PEFT card is full of them) are dropped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

#: the HTML a card may use (a subset of nh3's defaults: no <img> beyond plain attributes, nothing active)
ALLOWED_TAGS = frozenset(
    {
        *("a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p"),
        *("pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup", "table"),
        *("tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "caption", "colgroup", "col", "figure"),
        "figcaption",
    }
)
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "code": {"class"},  # language-xxx from fenced code blocks
    "ol": {"start"},
    "abbr": {"title"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

#: front matter keys with a label of their own; others are shown under their key
FRONT_MATTER_LABELS = {
    "base_model": "Base model",
    "library_name": "Library",
    "license": "Licence",
    "language": "Language",
    "tags": "Tags",
    "datasets": "Datasets",
    "metrics": "Metrics",
    "pipeline_tag": "Pipeline",
    "adapterhub": "AdapterHub",
    "task": "Task",
    "subtask": "Dataset",
    "adapter_type": "Adapter type",
}


@dataclass
class Card:
    metadata: list[tuple[str, str | list[str]]]  # (label, text or list of chips), in the card's order
    body: Markup


def sanitize_html(html: str) -> Markup:
    import nh3

    return Markup(
        nh3.clean(
            html,
            tags=set(ALLOWED_TAGS),
            attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
            url_schemes=set(URL_SCHEMES),
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
    )


def render_markdown(text: str) -> Markup:
    """Markdown (CommonMark + tables) with raw HTML, sanitised."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")
    return sanitize_html(md.render(text or ""))


def _value(value: Any) -> str | list[str]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value if str(v) != ""]
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        return text if len(text) <= 300 else text[:299] + "…"
    return "" if value is None else str(value)


def front_matter_list(front: dict[str, Any]) -> list[tuple[str, str | list[str]]]:
    """The front matter as (label, value) rows; empty values are left out."""
    rows = []
    for key, value in front.items():
        shown = _value(value)
        if shown in ("", []):
            continue
        rows.append((FRONT_MATTER_LABELS.get(str(key), str(key)), shown))
    return rows


def render_card(text: str) -> Card:
    from adapterhub.server.index import parse_front_matter

    front, body = parse_front_matter(text)
    return Card(front_matter_list(front), render_markdown(body))

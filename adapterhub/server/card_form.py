"""The card metadata fields of the upload form and of the card editor, and the README.md they write.

Base model, task, dataset (subtask), language and licence are picked from lists: the hub's base models, its
taxonomy, common licences. A value outside the list is only taken when "other" is picked and the value typed
beside it, so that a typo does not silently become a new facet. Metrics are ``name: value`` lines. The card
is written as YAML front matter plus a Markdown body; an existing card keeps its other keys and its body
unless a new body is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapterhub.server.index_models import IndexEntry, TaxonomyLanguage, TaxonomySubtask, TaxonomyTask

OTHER = "__other__"
LICENSES = (
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "gpl-3.0",
    "lgpl-3.0",
    "openrail",
)
#: form field -> card front matter key
FIELDS = {
    "base_model": "base_model",
    "task": "task",
    "subtask": "subtask",
    "language": "language",
    "license": "license",
}
_FREE_TEXT = re.compile(r"^[^\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]{1,128}$")
_METRIC_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.\- ]{0,63}?)\s*[:=]\s*(\S+)\s*$")
MAX_BODY = 200_000


class CardFieldError(ValueError):
    pass


@dataclass
class Options:
    """What the form's lists offer."""

    base_models: list[str] = field(default_factory=list)
    tasks: list[tuple[str, str, str]] = field(default_factory=list)  # (name, display name, kind)
    subtasks: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # task -> (name, display name)
    languages: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    licenses: tuple[str, ...] = LICENSES

    def allowed(self, name: str) -> set[str]:
        if name == "base_model":
            return set(self.base_models)
        if name == "task":
            return {t for t, _, _ in self.tasks}
        if name == "subtask":
            return {st for sts in self.subtasks.values() for st, _ in sts}
        if name == "language":
            return {c for c, _ in self.languages}
        return set(self.licenses)


def form_options(s: Session) -> Options:
    """The hub's public base models (repositories holding a model, and base models that public adapters
    name) and its taxonomy."""
    bases = set(
        s.scalars(
            select(IndexEntry.full_name).where(
                IndexEntry.is_adapter.is_(False), IndexEntry.source == "hub", IndexEntry.private.is_(False)
            )
        )
    )
    bases |= set(
        s.scalars(
            select(IndexEntry.base_model)
            .where(
                IndexEntry.is_adapter.is_(True),
                IndexEntry.private.is_(False),
                IndexEntry.base_model.is_not(None),
            )
            .distinct()
        )
    )
    opts = Options(base_models=sorted(b for b in bases if b)[:2000])
    opts.tasks = [
        (t.name, t.displayname or t.name, t.kind)
        for t in s.scalars(select(TaxonomyTask).order_by(TaxonomyTask.kind, TaxonomyTask.displayname))
    ]
    for st in s.scalars(select(TaxonomySubtask).order_by(TaxonomySubtask.task, TaxonomySubtask.displayname)):
        opts.subtasks.setdefault(st.task, []).append((st.name, st.displayname or st.name))
    opts.languages = [
        (lang.code, lang.name or lang.code)
        for lang in s.scalars(select(TaxonomyLanguage).order_by(TaxonomyLanguage.name))
    ]
    return opts


@dataclass
class CardFields:
    values: dict[str, str] = field(default_factory=dict)  # front matter key -> value, only those given
    metrics: dict[str, float] = field(default_factory=dict)
    body: str | None = None  # None: keep the card's body

    def empty(self) -> bool:
        return not self.values and not self.metrics and self.body is None


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _METRIC_LINE.match(line)
        try:
            value = float(m.group(2)) if m else math.nan
        except ValueError:
            value = math.nan
        if m is None or not math.isfinite(value):
            raise CardFieldError(
                f"metrics, line {n}: write 'name: number' (e.g. 'accuracy: 0.91'), got {line!r}"
            )
        out[m.group(1)] = value
    return out


def read_fields(form: Mapping[str, Any], options: Options, *, body_field: bool = False) -> CardFields:
    """The card fields of a submitted form; raises CardFieldError naming every problem."""
    problems, out = [], CardFields()
    for name, key in FIELDS.items():
        value = str(form.get(name) or "").strip()
        if value == OTHER:
            value = str(form.get(f"{name}_other") or "").strip()
            if not _FREE_TEXT.match(value):
                problems.append(
                    f"{name}: 'other' needs a value (at most 128 characters, no control characters)"
                )
                continue
        elif value and value not in options.allowed(name):
            problems.append(f"{name}: {value!r} is not in the hub's list; pick 'other' to give another value")
            continue
        if value:
            out.values[key] = value
    task, subtask = out.values.get("task"), out.values.get("subtask")
    if (
        subtask
        and str(form.get("subtask")) != OTHER
        and task in options.subtasks
        and subtask not in {st for st, _ in options.subtasks[task]}
    ):
        problems.append(f"subtask: {subtask!r} is not a dataset of the task {task!r}; pick it from that task")
    try:
        out.metrics = parse_metrics(str(form.get("metrics") or ""))
    except CardFieldError as e:
        problems.append(str(e))
    body = str(form.get("body") or "").replace("\r\n", "\n")
    if len(body) > MAX_BODY:
        problems.append(f"body: at most {MAX_BODY} characters")
    if body_field or body.strip():
        out.body = body
    if problems:
        raise CardFieldError("; ".join(problems))
    return out


def compose_card(existing: str | None, fields: CardFields, title: str) -> str:
    """README.md text: the existing front matter updated with the fields (metrics merged), and the new
    body, else the existing one, else a heading."""
    from adapterhub.server.index import parse_front_matter

    front, body = parse_front_matter(existing or "")
    front.update(fields.values)
    if fields.metrics:
        old = front.get("metrics") if isinstance(front.get("metrics"), dict) else {}
        front["metrics"] = {**old, **fields.metrics}
    if fields.body is not None:
        body = fields.body
    elif not (existing or "").strip():
        body = f"# {title}\n"
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True) if front else ""
    return f"---\n{head}---\n\n{body.lstrip(chr(10))}" if head else body


def selected(options: Options, name: str, value: str | None) -> tuple[str, str]:
    """(choice, other text) that shows ``value`` in the form: a listed value, or "other" with the text."""
    if not value:
        return "", ""
    return (value, "") if value in options.allowed(name) else (OTHER, value)


def prefill(options: Options, front: Mapping[str, Any]) -> dict[str, str]:
    """Form values from a card's front matter (the editor)."""
    out = {}
    for name, key in FIELDS.items():
        raw = front.get(key)
        raw = raw[0] if isinstance(raw, list) and raw else raw
        choice, other = selected(options, name, str(raw) if raw not in (None, "") else None)
        out[name], out[f"{name}_other"] = choice, other
    metrics = front.get("metrics")
    if isinstance(metrics, Mapping):
        out["metrics"] = "\n".join(f"{k}: {v}" for k, v in metrics.items() if isinstance(v, (int, float)))
    return out


def choice_groups(options: Options) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """Per field, the (group label, [(value, text)]) lists of its select element."""
    kinds = {"text_task": "Tasks", "text_lang": "Language adapters"}
    tasks: dict[str, list[tuple[str, str]]] = {}
    for name, display, kind in options.tasks:
        tasks.setdefault(kinds.get(kind, kind), []).append((name, display))
    return {
        "base_model": [("", [(b, b) for b in options.base_models])],
        "task": list(tasks.items()),
        "subtask": [(task, sts) for task, sts in options.subtasks.items()],
        "language": [("", [(c, f"{n} ({c})") for c, n in options.languages])],
        "license": [("", [(x, x) for x in options.licenses])],
    }

"""Taxonomy (tasks -> subtasks, languages) and legacy adapter cards, seeded from the AdapterHub index.

The legacy index (`adapter-hub/Hub`, folders `tasks/`, `subtasks/`, `architectures/`, `adapters/`) is read
from ``ADAPTERHUB_INDEX_DATA`` or ``../shared/data/adapterhub-index`` beside the checkout. Its adapter cards
become metadata-only index entries (``source='legacy'``, ``downloadable=False``): their weights were
hosted on servers that cannot be reached from here. Seeding is idempotent (rows are upserted by key).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapterhub.server.index import LANGUAGE_NAMES, bottleneck_method, config_hash, head_from_class
from adapterhub.server.indexing import build_search_text, reindex_all
from adapterhub.server.index_models import (
    IndexEntry,
    IndexVersion,
    TaxonomyLanguage,
    TaxonomySubtask,
    TaxonomyTask,
)

log = logging.getLogger(__name__)

ENV_VAR = "ADAPTERHUB_INDEX_DATA"
LEGACY_NOTE = (
    "Imported from the legacy AdapterHub index: metadata only. The weights were hosted by their "
    "authors on servers that cannot be reached from this hub, so they cannot be downloaded here."
)
# Head types of legacy cards whose class is a flexible-head model (`…ModelWithHeads`), inferred from the task.
_TAGGING_TASKS = {"ner", "pos", "chunk", "deprel", "dp", "semtag", "wikiann_ner"}
_QA_TASKS = {"qa"}
#: legacy cards are dated by the snapshot of the index they come from (adapter-hub/Hub, 2024-05-07)
LEGACY_DATE = dt.datetime(2024, 5, 7)


def default_data_path() -> Path | None:
    """``$ADAPTERHUB_INDEX_DATA``, else ``../shared/data/adapterhub-index`` beside the checkout, if present."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[3] / "shared" / "data" / "adapterhub-index"
    return here if here.is_dir() else None


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster


def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_Loader)  # noqa: S506 - a safe loader
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return data


def _clean(value: Any) -> str:
    """Legacy files have stray quotes (`task: text-classification"`) and trailing blanks."""
    return str(value).strip().strip('"').strip() if value is not None else ""


@dataclass
class SeedReport:
    tasks: int = 0
    subtasks: int = 0
    languages: int = 0
    adapters: int = 0
    skipped: int = 0


class LegacyIndex:
    """The parsed legacy index folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not (self.root / "adapters").is_dir():
            raise FileNotFoundError(f"{self.root}: not an AdapterHub index folder (no adapters/ inside)")
        self.tasks = [(_load(p), p.parent.name) for p in _yaml_files(self.root / "tasks")]
        self.subtasks = [(_load(p), p.parent.name) for p in _yaml_files(self.root / "subtasks")]
        self.architectures = {
            _clean(d.get("name")): d for d in map(_load, _yaml_files(self.root / "architectures"))
        }
        self.cards = [(p, _load(p)) for p in _yaml_files(self.root / "adapters")]
        # language display names -> codes, from the language "tasks" (text_lang)
        self.language_codes = dict(LANGUAGE_NAMES)
        for d, kind in self.tasks:
            if kind == "text_lang" and d.get("displayname"):
                self.language_codes.setdefault(_clean(d["displayname"]).lower(), _clean(d["task"]).lower())

    def language_code(self, value: Any) -> str | None:
        value = _clean(value)
        if not value:
            return None
        first = value.split(",")[0].strip().lower()
        return self.language_codes.get(first, first)

    def card_config(self, card: dict[str, Any]) -> dict[str, Any]:
        spec = card.get("config") or {}
        if isinstance(spec, str):
            spec = {"using": spec}
        arch = self.architectures.get(_clean(spec.get("using")))
        if arch is None:
            raise ValueError(f"unknown architecture {spec.get('using')!r}")
        config = dict(arch.get("config") or {})
        for key, value in spec.items():
            if key != "using":
                config[key] = value
        return config


_CACHE: dict[str, tuple[float, LegacyIndex]] = {}  # path -> (the adapters folder's mtime, its parsed index)


def load_index(path: Path | str) -> LegacyIndex:
    """The parsed index folder, cached per process: one entry per folder, parsed again when its ``adapters``
    folder's mtime changes."""
    path = Path(path).resolve()
    mtime = (path / "adapters").stat().st_mtime if (path / "adapters").is_dir() else 0.0
    known = _CACHE.get(str(path))
    if known is None or known[0] != mtime:
        known = _CACHE[str(path)] = (mtime, LegacyIndex(path))
    return known[1]


def seed_taxonomy(session: Session, index: LegacyIndex) -> SeedReport:
    report = SeedReport()
    subtask_langs: dict[str, str] = {}
    for d, kind in index.tasks:
        name = _clean(d.get("task"))
        if not name:
            continue
        row = session.get(TaxonomyTask, name) or TaxonomyTask(name=name)
        row.kind, row.displayname = kind, _clean(d.get("displayname")) or name
        row.description = (d.get("description") or "").strip()
        session.add(row)
        report.tasks += 1
        if kind == "text_lang":
            code = name.lower()
            lang = session.get(TaxonomyLanguage, code) or TaxonomyLanguage(code=code)
            lang.name, lang.description = row.displayname, row.description
            session.add(lang)
            report.languages += 1
    session.flush()
    existing = {(s.task, s.name): s for s in session.scalars(select(TaxonomySubtask))}
    for d, kind in index.subtasks:
        task, name = _clean(d.get("task")), _clean(d.get("subtask"))
        if not task or not name:
            continue
        row = existing.get((task, name)) or TaxonomySubtask(task=task, name=name)
        row.kind = kind
        row.displayname = _clean(d.get("displayname")) or name
        row.description = (d.get("description") or "").strip()
        row.language = index.language_code(d.get("language")) if kind == "text_task" else task.lower()
        metric = d.get("metric") or {}
        if isinstance(metric, dict):
            row.metric = _clean(metric.get("name")) or None
            hib = metric.get("higher_is_better")
            row.higher_is_better = bool(hib) if hib is not None else None
        row.url = _clean(d.get("url")) or None
        session.add(row)
        existing[(task, name)] = row
        report.subtasks += 1
        if row.language:
            subtask_langs[f"{task}/{name}"] = row.language
    # languages named by subtasks (e.g. "en") that are not a language adapter task
    have = {code for (code,) in session.execute(select(TaxonomyLanguage.code))}
    names = {v: k for k, v in index.language_codes.items()}
    for code in sorted(set(subtask_langs.values()) - have):
        session.add(TaxonomyLanguage(code=code, name=names.get(code, code).title(), description=""))
        report.languages += 1
    session.flush()
    return report


def import_legacy_cards(session: Session, index: LegacyIndex) -> SeedReport:
    report = SeedReport()
    subtasks = {(s.task, s.name): s for s in session.scalars(select(TaxonomySubtask))}
    entries = {
        e.full_name: e for e in session.scalars(select(IndexEntry).where(IndexEntry.source == "legacy"))
    }
    hub_names = set(session.scalars(select(IndexEntry.full_name).where(IndexEntry.source != "legacy")))
    for path, card in index.cards:
        org, stem = path.parent.name, path.stem
        full_name = f"{org}/{stem}"
        if full_name in hub_names:  # a real repository took this name: it wins
            report.skipped += 1
            continue
        try:
            config = index.card_config(card)
        except ValueError as e:
            log.warning("legacy card %s skipped: %s", path, e)
            report.skipped += 1
            continue
        kind = _clean(card.get("type")) or "text_task"
        task, subtask = _clean(card.get("task")), _clean(card.get("subtask"))
        st = subtasks.get((task, subtask))
        language = task.lower() if kind == "text_lang" else (st.language if st else None)
        model_class = _clean(card.get("model_class")) or None
        head_type = None
        if card.get("prediction_head"):
            head_type = head_from_class(model_class)
            if head_type is None:
                head_type = (
                    "tagging"
                    if task in _TAGGING_TASKS
                    else "question_answering"
                    if task in _QA_TASKS
                    else "classification"
                )
        files = [f for f in card.get("files") or [] if isinstance(f, dict)]
        default_version = _clean(card.get("default_version")) or (
            str(files[0].get("version")) if files else None
        )
        score = next(
            (
                f.get("score")
                for f in files
                if str(f.get("version")) == default_version and isinstance(f.get("score"), (int, float))
            ),
            None,
        )
        metric_name = st.metric if st and st.metric else "score"
        chash = config_hash(config)
        method = bottleneck_method(config)
        hyper = {
            k: config[k]
            for k in (
                "reduction_factor",
                "non_linearity",
                "mh_adapter",
                "output_adapter",
                "leave_out",
                "inv_adapter",
            )
            if config.get(k) not in (None, [])
        }
        description = (card.get("description") or "").strip() or None
        e = entries.get(full_name) or IndexEntry(full_name=full_name, source="legacy", created_at=LEGACY_DATE)
        e.namespace, e.name, e.author = org, stem, org
        e.downloadable, e.private, e.is_adapter = False, False, True
        e.commit_oid, e.revision = None, default_version
        e.library, e.method, e.method_family, e.config_hash = "adapters", method, "bottleneck", chash
        e.base_model, e.base_model_revision = _clean(card.get("model_name")) or None, None
        e.model_type, e.model_class = _clean(card.get("model_type")) or None, model_class
        e.hidden_size = card.get("hidden_size") if isinstance(card.get("hidden_size"), int) else None
        e.head_type, e.num_labels, e.adapter_type = head_type, None, kind
        e.task, e.subtask, e.language, e.license = task, subtask, language, None
        e.description, e.size_bytes, e.num_params = description, 0, None
        e.score = float(score) if score is not None else None
        e.validation_status = "legacy"
        e.data = {
            "legacy": True,
            "note": LEGACY_NOTE,
            "architecture": _clean((card.get("config") or {}).get("using")),
            "config": config,
            "hyperparams": hyper,
            "author_name": _clean(card.get("author")),
            "email": _clean(card.get("email")) or None,
            "url": _clean(card.get("url")) or None,
            "github": _clean(card.get("github")) or None,
            "citation": (card.get("citation") or "").strip() or None,
            "default_version": default_version,
            "prediction_head": bool(card.get("prediction_head")),
            "metrics": {metric_name: float(score)} if score is not None else {},
            "dependencies": card.get("dependencies") or [],
            "tags": [kind],
            "identifier": f"{task}/{subtask}@{org}",
        }
        e.search_text = build_search_text(
            e, extra=[_clean(card.get("author")), e.data["architecture"], st.displayname if st else ""]
        )
        e.updated_at = LEGACY_DATE
        session.add(e)
        have_versions = {v.version: v for v in e.versions}
        for f in files:
            version = _clean(f.get("version"))
            v = have_versions.get(version)
            if v is None:
                v = IndexVersion(version=version)
                e.versions.append(v)
            v.commit_oid, v.config_hash, v.method = None, chash, method
            v.created_at = LEGACY_DATE
            v.data = {
                k: f.get(k) for k in ("url", "sha1", "sha256", "score", "description") if f.get(k) is not None
            }
        report.adapters += 1
    session.flush()
    return report


def is_seeded(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(TaxonomyTask)) or 0) > 0


def seed(session: Session, root: Path | str | None = None, *, force: bool = False) -> SeedReport | None:
    """Seeds the taxonomy and imports the legacy cards once (or again with ``force``). Returns None when
    there is nothing to do (already seeded, or no data folder)."""
    if not force and is_seeded(session):
        return None
    path = Path(root) if root else default_data_path()
    if path is None or not path.is_dir():
        log.info("no AdapterHub index data found (set %s); taxonomy not seeded", ENV_VAR)
        return None
    index = load_index(path)
    report = seed_taxonomy(session, index)
    cards = import_legacy_cards(session, index)
    report.adapters, report.skipped = cards.adapters, cards.skipped
    log.info("seeded taxonomy from %s: %s", path, report)
    return report


def main(argv: list[str] | None = None) -> None:
    """``python -m adapterhub.server.taxonomy``: seed the taxonomy / legacy cards, or re-index every repo."""
    import argparse

    from adapterhub.server import migrate
    from adapterhub.server.db import Database
    from adapterhub.server.settings import Settings
    from adapterhub.server.storage import open_store

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data-dir", default=None, help="the hub's data folder (as for adapterhub serve)")
    ap.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite in --data-dir)")
    ap.add_argument("--blob-store", default=None, help="s3://BUCKET/PREFIX (default: <data-dir>/blobs)")
    ap.add_argument(
        "--index-data",
        default=None,
        help=f"legacy AdapterHub index folder (default: ${ENV_VAR} or ../shared/data/adapterhub-index)",
    )
    ap.add_argument("--force", action="store_true", help="seed again even if already seeded (upsert)")
    ap.add_argument("--reindex", action="store_true", help="re-index the main branch of every repository")
    args = ap.parse_args(argv)
    settings = Settings.from_env(
        data_dir=args.data_dir, database_url=args.database_url, blob_store=args.blob_store
    )
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    migrate.upgrade(db.engine)
    with db.session() as s:
        report = seed(s, args.index_data, force=args.force)
    print(
        f"taxonomy: {report}"
        if report
        else "taxonomy: already seeded or no index data (use --force / --index-data)"
    )
    if args.reindex:
        print(f"re-indexed {reindex_all(db, open_store(settings))} repositories")
    db.dispose()


if __name__ == "__main__":
    main()

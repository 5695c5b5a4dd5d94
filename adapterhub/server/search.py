"""Search and resolve API over the adapter index (JSON, documented in the OpenAPI schema).

* ``GET /api/adapters``: faceted search (base model, model type, task, subtask, language, method, head,
  licence, author, library, source), full text (every word must occur in the entry's ``search_text``;
  LIKE, so the same on SQLite and PostgreSQL), sort by recency, downloads, score or name, pagination and
  facet counts (each facet counted under all the other filters).
* ``GET /api/adapters/resolve``: AdapterHub identifiers (``sentiment/sst-2@ukp``, ``@ukp/<name>``,
  ``org/name@rev``) with optional ``model_name``, ``config`` and ``version``, answered with one pinned
  repository + commit (or legacy version). Ambiguity is a 409 and an unknown identifier a 404, both with
  the candidates; there is never a fallback to another config or version.
* ``GET /api/taxonomy``: tasks with their subtasks, and languages.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Integer, and_, func, or_, select, text, tuple_
from sqlalchemy.orm import Session, lazyload

from adapterhub.server.index_models import (
    IndexEntry,
    IndexVersion,
    TaxonomyLanguage,
    TaxonomySubtask,
    TaxonomyTask,
)
from adapterhub.server.models import Commit, Ref, Repo

#: facet name (API parameter) -> column
FACETS: dict[str, Any] = {
    "base_model": IndexEntry.base_model,
    "model_type": IndexEntry.model_type,
    "task": IndexEntry.task,
    "subtask": IndexEntry.subtask,
    "language": IndexEntry.language,
    "method": IndexEntry.method,
    "head": IndexEntry.head_type,
    "license": IndexEntry.license,
    "author": IndexEntry.author,
    "library": IndexEntry.library,
    "source": IndexEntry.source,
}
SORTS = ("recent", "downloads", "score", "name")
MAX_PAGE = 1_000_000
MAX_PER_PAGE = 100
FACET_LIMIT = 30


# ------------------------------------------------------------------------------------------ response models
class FacetValue(BaseModel):
    value: str
    count: int


class AdapterSummary(BaseModel):
    id: str = Field(description="repository id `namespace/name`")
    author: str | None
    source: Literal["hub", "legacy"] = Field(description="`legacy`: imported AdapterHub card, metadata only")
    downloadable: bool
    commit: str | None = Field(description="indexed commit of the default branch (None for legacy cards)")
    revision: str | None
    library: str | None = Field(description="`adapters` (AdapterHub format) or `peft`")
    method: str | None = Field(description="`seq_bn`, `lora`, `dora`, `ia3`, `prefix_tuning`, ...")
    method_family: str | None = Field(description="`bottleneck`, `lora`, `prefix`, `prompt`, ...")
    hyperparams: dict[str, Any] = Field(
        default_factory=dict,
        description="the method's settings from the adapter's config (`r`, `alpha`, targets, "
        "`reduction_factor`, `prefix_length`, ...)",
    )
    config_hash: str | None
    base_model: str | None
    model_type: str | None
    head: str | None
    task: str | None
    subtask: str | None
    language: str | None
    license: str | None
    description: str | None
    size_bytes: int
    num_params: int | None
    downloads: int
    score: float | None = Field(description="the first metric of the card (legacy: the task's metric)")
    score_metric: str | None = Field(description="the name of the metric that `score` is")
    validation: str | None
    updated_at: str


class SearchResponse(BaseModel):
    total: int
    page: int
    per_page: int
    pages: int
    sort: str
    items: list[AdapterSummary]
    facets: dict[str, list[FacetValue]]


class ResolveResponse(BaseModel):
    identifier: str
    repo_id: str
    source: Literal["hub", "legacy"]
    downloadable: bool
    commit: str | None = Field(description="the pinned commit (40 hex); None for legacy cards")
    version: str | None = Field(description="the pinned version: a revision name, commit or legacy version")
    config_hash: str | None
    method: str | None
    base_model: str | None
    download_url: str | None = Field(description="files base URL (`/{repo}/resolve/{commit}/`), hub only")
    files: list[dict[str, Any]] = Field(default_factory=list, description="legacy: the recorded archive URLs")
    note: str | None = None


class ResolveErrorBody(BaseModel):
    error: str
    candidates: list[str] = Field(default_factory=list)


class SubtaskOut(BaseModel):
    name: str
    displayname: str
    language: str | None
    metric: str | None
    count: int


class TaskOut(BaseModel):
    name: str
    kind: str
    displayname: str
    description: str
    count: int
    subtasks: list[SubtaskOut]


class LanguageOut(BaseModel):
    code: str
    name: str
    count: int


class TaxonomyResponse(BaseModel):
    tasks: list[TaskOut]
    languages: list[LanguageOut]


# ----------------------------------------------------------------------------------------------- search
@dataclass
class SearchQuery:
    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "recent"
    page: int = 1
    per_page: int = 20
    facets: bool = True


@dataclass
class Viewer:
    """Whose private entries are visible: account ids of the caller and its organisations; admins see all."""

    account_ids: tuple[int, ...] = ()
    admin: bool = False


def _like_escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _visible(viewer: Viewer | None):
    if viewer is not None and viewer.admin:
        return None
    if viewer is None or not viewer.account_ids:
        return IndexEntry.private.is_(False)
    owned = select(Repo.id).where(Repo.owner_id.in_(viewer.account_ids))
    return or_(IndexEntry.private.is_(False), IndexEntry.repo_pk.in_(owned))


_FTS: dict[str, bool] = {}


def _has_fts(s: Session) -> bool:
    """Whether this SQLite database has the FTS5 trigram table of migration 0003 (cached per database)."""
    bind = s.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    key = str(bind.url)
    if key not in _FTS:
        _FTS[key] = (
            s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'index_fts'")).first() is not None
        )
    return _FTS[key]


def _text_conditions(s: Session, q: str) -> list:
    """Every word must occur in `search_text`. Words of 3+ plain characters go through the FTS5 trigram
    index on SQLite (PostgreSQL's pg_trgm index serves the LIKE itself); the rest are escaped LIKEs."""
    conds, fts_terms = [], []
    fts = _has_fts(s)
    for term in q.lower().split()[:10]:
        if fts and len(term) >= 3 and not re.search(r"[%_\\\"']", term):
            fts_terms.append(term)
        else:
            conds.append(IndexEntry.search_text.like(f"%{_like_escape(term)}%", escape="\\"))
    if fts_terms:
        where = " AND ".join(f"search_text LIKE :t{i}" for i in range(len(fts_terms)))
        sub = (
            text(f"SELECT rowid FROM index_fts WHERE {where}")
            .bindparams(**{f"t{i}": f"%{t}%" for i, t in enumerate(fts_terms)})
            .columns(rowid=Integer)
        )
        conds.append(IndexEntry.id.in_(sub))
    return conds


#: Full-text matches are looked up once per search; up to this many ids are then passed as a list to the
#: count, page and facet queries (instead of repeating the text match in each of them).
TEXT_IDS_MAX = 50_000


def _text_filter(s: Session, q: str) -> list:
    conds = _text_conditions(s, q)
    if not conds:
        return []
    ids = list(s.scalars(select(IndexEntry.id).where(*conds).limit(TEXT_IDS_MAX + 1)))
    if len(ids) > TEXT_IDS_MAX:
        return conds
    return [IndexEntry.id.in_(ids)]


def _conditions(
    s: Session,
    query: SearchQuery,
    viewer: Viewer | None,
    skip: str | None = None,
    text_filter: list | None = None,
) -> list:
    conds = [IndexEntry.is_adapter.is_(True)]
    vis = _visible(viewer)
    if vis is not None:
        conds.append(vis)
    conds += text_filter if text_filter is not None else _text_conditions(s, query.q)
    for name, value in query.filters.items():
        if name != skip and value:
            conds.append(FACETS[name] == value)
    return conds


def _order(sort: str) -> list:
    if sort == "downloads":
        return [IndexEntry.downloads.desc(), IndexEntry.updated_at.desc(), IndexEntry.id.desc()]
    if sort == "score":
        return [IndexEntry.score.is_(None), IndexEntry.score.desc(), IndexEntry.id.desc()]
    if sort == "name":
        return [IndexEntry.full_name.asc()]
    return [IndexEntry.updated_at.desc(), IndexEntry.id.desc()]


@dataclass
class SearchResult:
    total: int
    items: list[IndexEntry]
    facets: dict[str, list[tuple[str, int]]]


def search(s: Session, query: SearchQuery, viewer: Viewer | None = None) -> SearchResult:
    unknown = set(query.filters) - set(FACETS)
    if unknown:
        raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
    if query.sort not in SORTS:
        raise ValueError(f"unknown sort {query.sort!r} (one of {', '.join(SORTS)})")
    tf = _text_filter(s, query.q)
    conds = _conditions(s, query, viewer, text_filter=tf)
    total = s.scalar(select(func.count(IndexEntry.id)).where(*conds)) or 0
    per_page = max(1, min(query.per_page, MAX_PER_PAGE))
    page = max(1, min(query.page, MAX_PAGE))  # beyond: an empty page (the offset stays a 64-bit number)
    # ids first (the sort then carries only keys, not whole rows), then the page's rows
    ids = list(
        s.scalars(
            select(IndexEntry.id)
            .where(*conds)
            .order_by(*_order(query.sort))
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    rows = (
        {
            e.id: e
            for e in s.scalars(
                select(IndexEntry).options(lazyload(IndexEntry.versions)).where(IndexEntry.id.in_(ids))
            )
        }
        if ids
        else {}
    )
    items = [rows[i] for i in ids if i in rows]
    facets: dict[str, list[tuple[str, int]]] = {}
    if query.facets:
        facets = _cached_facets(s, query, viewer, tf, total)
    return SearchResult(total, items, facets)


#: Facet counts are cached per query for this many seconds, and dropped as soon as the index gets a new or
#: newer entry (the newest id / updated_at change). Items and totals are never cached. 0 disables the cache.
FACET_CACHE_SECONDS = 30.0
_facet_cache: OrderedDict[tuple, tuple[tuple, float, dict]] = OrderedDict()
_facet_lock = threading.Lock()


def _cached_facets(
    s: Session, query: SearchQuery, viewer: Viewer | None, tf: list, total: int
) -> dict[str, list[tuple[str, int]]]:
    if FACET_CACHE_SECONDS <= 0:
        return _facet_counts(s, query, viewer, tf, total)
    token = tuple(s.execute(select(func.max(IndexEntry.id), func.max(IndexEntry.updated_at))).one())
    vkey = (viewer.account_ids, viewer.admin) if viewer is not None else None
    key = (
        str(s.get_bind().url),
        " ".join(query.q.lower().split()),
        tuple(sorted(query.filters.items())),
        vkey,
    )
    now = time.monotonic()
    with _facet_lock:
        hit = _facet_cache.get(key)
        if hit is not None and hit[0] == token and now - hit[1] < FACET_CACHE_SECONDS:
            _facet_cache.move_to_end(key)
            return hit[2]
    facets = _facet_counts(s, query, viewer, tf, total)
    with _facet_lock:
        _facet_cache[key] = (token, now, facets)
        while len(_facet_cache) > 512:
            _facet_cache.popitem(last=False)
    return facets


#: Up to this many hits, the facets without an active filter are counted in one pass over the hits' facet
#: columns (one query), instead of one GROUP BY per facet.
ONE_PASS_MAX = 25_000


def _facet_counts(
    s: Session, query: SearchQuery, viewer: Viewer | None, tf: list, total: int | None = None
) -> dict[str, list[tuple[str, int]]]:
    facets: dict[str, list[tuple[str, int]]] = {}
    active = {k for k, v in query.filters.items() if v}
    narrowed = bool(active or query.q.strip())
    if narrowed and total is not None and total <= ONE_PASS_MAX:
        names = [n for n in FACETS if n not in active]
        rows = s.execute(
            select(*(FACETS[n] for n in names)).where(*_conditions(s, query, viewer, text_filter=tf))
        )
        counters: list[Counter] = [Counter() for _ in names]
        for row in rows:
            for counter, value in zip(counters, row):
                if value is not None:
                    counter[value] += 1
        for name, counter in zip(names, counters):
            top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_LIMIT]
            facets[name] = [(str(v), int(c)) for v, c in top]
    rest = [n for n in FACETS if n not in facets and n not in active]
    if len(rest) > 1 and s.get_bind().dialect.name == "postgresql":  # one scan for all of them
        facets.update(_grouping_sets(s, rest, _conditions(s, query, viewer, text_filter=tf)))
    for name, col in FACETS.items():
        if name in facets:
            continue
        fconds = _conditions(s, query, viewer, skip=name, text_filter=tf)
        # Under other filters, group by an expression, not the bare column: the planner then narrows with
        # the filters' indexes instead of walking this facet's index in order (SQLite).
        narrowed = query.q.strip() or any(v for k, v in query.filters.items() if k != name)
        key = col.concat("") if narrowed else col
        cnt = func.count(IndexEntry.id)
        rows = s.execute(
            select(key, cnt)
            .where(*fconds, key.is_not(None))
            .group_by(key)
            .order_by(cnt.desc(), key)
            .limit(FACET_LIMIT)
        ).all()
        facets[name] = [(str(v), int(c)) for v, c in rows]
    return {name: facets[name] for name in FACETS}


def _grouping_sets(s: Session, names: list[str], conds: list) -> dict[str, list[tuple[str, int]]]:
    """PostgreSQL: the counts of several facets under the same conditions in one GROUPING SETS query."""
    cols = [FACETS[n] for n in names]
    flags = [func.grouping(c) for c in cols]
    stmt = (
        select(*cols, *flags, func.count(IndexEntry.id))
        .where(*conds)
        .group_by(func.grouping_sets(*[tuple_(c) for c in cols]))
    )
    counters: list[Counter] = [Counter() for _ in names]
    n = len(cols)
    for row in s.execute(stmt):
        for i in range(n):
            if row[n + i] == 0 and row[i] is not None:  # grouped by column i
                counters[i][row[i]] += int(row[-1])
    return {
        name: sorted(((str(v), c) for v, c in counter.items()), key=lambda kv: (-kv[1], kv[0]))[:FACET_LIMIT]
        for name, counter in zip(names, counters)
    }


def score_metric(e: IndexEntry) -> str | None:
    """The name of the metric that ``e.score`` holds: the first of the card's metrics."""
    metrics = (e.data or {}).get("metrics") if e.score is not None else None
    return next(iter(metrics), None) if isinstance(metrics, dict) else None


def hyperparams(e: IndexEntry) -> dict[str, Any]:
    """The method's settings that indexing read from the adapter's config (empty if none)."""
    value = (e.data or {}).get("hyperparams")
    return dict(value) if isinstance(value, dict) else {}


def summary(e: IndexEntry) -> AdapterSummary:
    return AdapterSummary(
        id=e.full_name,
        author=e.author,
        source=e.source,
        downloadable=e.downloadable,
        commit=e.commit_oid,
        revision=e.revision,
        library=e.library,
        method=e.method,
        method_family=e.method_family,
        hyperparams=hyperparams(e),
        config_hash=e.config_hash,
        base_model=e.base_model,
        model_type=e.model_type,
        head=e.head_type,
        task=e.task,
        subtask=e.subtask,
        language=e.language,
        license=e.license,
        description=e.description,
        size_bytes=e.size_bytes or 0,
        num_params=e.num_params,
        downloads=e.downloads or 0,
        score=e.score,
        score_metric=score_metric(e),
        validation=e.validation_status,
        updated_at=e.updated_at.isoformat() + "Z" if e.updated_at else "",
    )


# ---------------------------------------------------------------------------------------------- resolve
class ResolveError(Exception):
    def __init__(self, status: int, message: str, candidates: Iterable[str] = ()):
        super().__init__(message)
        self.status, self.message, self.candidates = status, message, sorted(set(candidates))


_HEX = re.compile(r"^[0-9a-f]{7,40}$")


def config_hash_of(config: str) -> str:
    """`config` may be a preset name (`seq_bn`, `pfeiffer`, `lora`, ...), a JSON object or a 16-hex hash."""
    config = config.strip()
    if re.fullmatch(r"[0-9a-f]{16}", config):
        return config
    from adapterhub.library.configs import config_hash
    from adapterhub.library.errors import AdapterConfigError

    if config.startswith("{"):
        try:
            value = json.loads(config)
        except ValueError as e:
            raise ResolveError(400, f"config is not valid JSON: {e}") from e
        if isinstance(value.get("config"), dict):  # a whole adapter_config.json
            value = value["config"]
        return config_hash(value)
    try:
        return config_hash(config)
    except AdapterConfigError as e:  # an unknown name or a bad option; the library's message names it
        raise ResolveError(400, str(e)) from e


def _label(e: IndexEntry) -> str:
    bits = [e.full_name]
    if e.base_model:
        bits.append(f"model_name={e.base_model}")
    if e.config_hash:
        bits.append(f"config={e.config_hash}" + (f" ({e.method})" if e.method else ""))
    return " ".join(bits)


def _pin_hub_revision(s: Session, e: IndexEntry, rev: str) -> tuple[str, str]:
    """(commit oid, version label) of revision `rev` (branch, tag or commit) of the repository of `e`."""
    if e.repo_pk is None:
        raise ResolveError(404, f"{e.full_name} has no repository")
    refs = list(s.scalars(select(Ref).where(Ref.repo_id == e.repo_pk, Ref.name == rev)))
    oids = {r.commit_oid for r in refs}
    if len(oids) > 1:
        raise ResolveError(
            409,
            f"revision {rev!r} of {e.full_name} is both a branch and a tag on different "
            "commits; pass the commit id",
            [f"{r.kind}:{r.name}={r.commit_oid}" for r in refs],
        )
    if oids:
        return oids.pop(), rev
    if _HEX.match(rev):
        commits = list(
            s.scalars(select(Commit.oid).where(Commit.repo_id == e.repo_pk, Commit.oid.like(rev + "%")))
        )
        if len(commits) == 1:
            return commits[0], commits[0]
        if len(commits) > 1:
            raise ResolveError(409, f"commit prefix {rev!r} of {e.full_name} is ambiguous", commits)
    names = [f"{r.kind}:{r.name}" for r in s.scalars(select(Ref).where(Ref.repo_id == e.repo_pk))]
    raise ResolveError(404, f"{e.full_name} has no revision {rev!r}", names)


def _pin(
    s: Session, e: IndexEntry, identifier: str, version: str | None, chash: str | None
) -> ResolveResponse:
    """Pins entry `e` at `version` (or its default) and checks the config hash of exactly that version."""
    if e.source == "legacy":
        versions = {v.version: v for v in e.versions}
        name = version or e.revision
        v = versions.get(name or "")
        if v is None:
            raise ResolveError(
                404, f"{e.full_name} has no version {name!r}", [f"{e.full_name}@{k}" for k in versions]
            )
        if chash and v.config_hash != chash:
            raise ResolveError(
                404, f"{e.full_name}@{name} has config {v.config_hash} ({e.method}), not {chash}", [_label(e)]
            )
        return ResolveResponse(
            identifier=identifier,
            repo_id=e.full_name,
            source="legacy",
            downloadable=False,
            commit=None,
            version=name,
            config_hash=v.config_hash,
            method=v.method or e.method,
            base_model=e.base_model,
            download_url=None,
            files=[v.data],
            note=(e.data or {}).get("note"),
        )
    if version:
        oid, label = _pin_hub_revision(s, e, version)
    else:
        if not e.commit_oid:
            raise ResolveError(404, f"{e.full_name} has no indexed commit yet")
        oid, label = e.commit_oid, e.revision or "main"
    if oid == e.commit_oid:
        vhash, method = e.config_hash, e.method
    else:
        iv = s.scalar(
            select(IndexVersion).where(IndexVersion.entry_id == e.id, IndexVersion.commit_oid == oid)
        )
        vhash, method = (iv.config_hash, iv.method) if iv else (None, None)
    if chash and vhash != chash:
        raise ResolveError(
            404,
            f"{e.full_name}@{label} (commit {oid[:12]}) has config {vhash or 'unknown'}"
            f"{f' ({method})' if method else ''}, not {chash}; no other version is tried",
            [_label(e)],
        )
    return ResolveResponse(**hub_answer(identifier, e.full_name, oid, label, vhash, method, e.base_model))


def hub_answer(
    identifier: str,
    repo_id: str,
    commit: str,
    version: str,
    config_hash: str | None,
    method: str | None,
    base_model: str | None,
) -> dict:
    """The resolve answer for hub repository ``repo_id`` pinned at ``commit``."""
    return {
        "identifier": identifier,
        "repo_id": repo_id,
        "source": "hub",
        "downloadable": True,
        "commit": commit,
        "version": version,
        "config_hash": config_hash,
        "method": method,
        "base_model": base_model,
        "download_url": f"/{repo_id}/resolve/{commit}/",
        "files": [],
        "note": None,
    }


_QUICK_SQL = text(
    "SELECT e.full_name, e.commit_oid, e.revision, e.config_hash, e.method, e.base_model, "
    "(SELECT count(*) FROM index_entries t WHERE t.is_adapter = :yes AND t.task = :task AND t.subtask = :subtask) "
    "FROM index_entries e WHERE e.full_name = :full_name AND e.is_adapter = :yes AND e.private = :no "
    "AND e.source = 'hub' AND e.commit_oid IS NOT NULL"
)


def query_rows(conn, sql, params: dict) -> list:
    """The rows of the ``text()`` query ``sql`` through a SQLAlchemy Session or Connection, or straight through a
    DBAPI connection of SQLite (its own ``:name`` parameters; about 4x less overhead on the hot download paths)."""
    if isinstance(conn, (Session, Connection)):
        return list(conn.execute(sql, params))
    cursor = conn.cursor()
    try:
        cursor.execute(sql.text, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def quick_resolve(
    s: Session | Connection | Any, identifier: str, model_name: str | None = None
) -> dict | None:
    """The answer of :func:`resolve` for its most common case, a public repository ``org/name`` (no revision or
    config; a ``model_name`` that is the adapter's base model) that no task/subtask also matches, in one plain
    SQL query; None for anything else, which :func:`resolve` then answers."""
    m = re.fullmatch(r"([^/@\s]+)/([^/@\s]+)", identifier.strip())
    if m is None:
        return None
    rows = query_rows(
        s,
        _QUICK_SQL,
        {
            "full_name": identifier.strip(),
            "task": m.group(1),
            "subtask": m.group(2),
            "yes": True,
            "no": False,
        },
    )
    row = rows[0] if rows else None
    if row is None or row[6] or (model_name and row[5] != model_name):  # another base model: resolve's error
        return None
    full_name, oid, revision, config_hash, method, base_model = row[:6]
    return hub_answer(identifier.strip(), full_name, oid, revision or "main", config_hash, method, base_model)


def resolve(
    s: Session,
    identifier: str,
    model_name: str | None = None,
    config: str | None = None,
    version: str | None = None,
    viewer: Viewer | None = None,
) -> ResolveResponse:
    ident = identifier.strip()
    if not ident:
        raise ResolveError(400, "empty identifier")
    chash = config_hash_of(config) if config else None
    vis = _visible(viewer)
    base = select(IndexEntry).options(lazyload(IndexEntry.versions))  # versions: legacy cards only, on demand
    base = base.where(IndexEntry.is_adapter.is_(True), *([vis] if vis is not None else []))

    def check_model(e: IndexEntry) -> None:
        if model_name and e.base_model != model_name:
            raise ResolveError(
                404,
                f"{e.full_name} is an adapter for {e.base_model or 'an unknown base model'}, "
                f"not {model_name}",
                [_label(e)],
            )

    # 1. "@org/name": a unique card / repository id
    m = re.fullmatch(r"@([^/@\s]+)/([^@\s]+)", ident)
    if m:
        e = s.scalar(base.where(IndexEntry.full_name == f"{m.group(1)}/{m.group(2)}"))
        if e is None:
            near = s.scalars(
                base.where(IndexEntry.author == m.group(1)).order_by(IndexEntry.full_name).limit(10)
            )
            raise ResolveError(404, f"no adapter {ident!r}", [f"@{x.full_name}" for x in near])
        check_model(e)
        return _pin(s, e, ident, version, chash)

    head, _, at = ident.partition("@")
    parts = head.split("/")
    if len(parts) > 2 or not all(parts):
        raise ResolveError(
            400,
            f"malformed identifier {ident!r} (expected task/subtask[@org], @org/name or org/name[@revision])",
        )
    # 2. "org/name[@rev]": a repository, and 3. "task[/subtask][@org]": the AdapterHub task taxonomy (one query)
    if len(parts) == 2:
        tconds = [IndexEntry.task == parts[0], IndexEntry.subtask == parts[1]]
    else:
        tconds = [or_(IndexEntry.task == parts[0], IndexEntry.subtask == parts[0])]
    if at:
        tconds.append(IndexEntry.author == at)
    match = or_(IndexEntry.full_name == head, and_(*tconds)) if len(parts) == 2 else and_(*tconds)
    found = list(s.scalars(base.where(match).order_by(IndexEntry.full_name)))
    repo_entry = next((e for e in found if e.full_name == head), None) if len(parts) == 2 else None

    def is_task_match(e: IndexEntry) -> bool:
        named = (
            (e.task == parts[0] and e.subtask == parts[1])
            if len(parts) == 2
            else parts[0] in (e.task, e.subtask)
        )
        return named and (not at or e.author == at)

    task_entries = [e for e in found if is_task_match(e)]
    if repo_entry is not None and task_entries:
        raise ResolveError(
            409,
            f"{ident!r} names both the repository {head} and adapters for task {head}; use "
            f"@{head} for the repository",
            [repo_entry.full_name] + [_label(e) for e in task_entries],
        )
    if repo_entry is not None:
        if version and at and version != at:
            raise ResolveError(400, f"two revisions given: {at!r} in the identifier and version={version!r}")
        check_model(repo_entry)
        return _pin(s, repo_entry, ident, at or version, chash)
    if not task_entries:
        near = []
        if len(parts) == 2:
            near = [
                f"{t}/{st}"
                for t, st in s.execute(
                    select(TaxonomySubtask.task, TaxonomySubtask.name)
                    .where(or_(TaxonomySubtask.task == parts[0], TaxonomySubtask.name == parts[1]))
                    .limit(20)
                )
            ]
        raise ResolveError(404, f"no adapter matches {ident!r}", near)
    candidates = task_entries
    if model_name:
        candidates = [e for e in candidates if e.base_model == model_name]
        if not candidates:
            raise ResolveError(
                404,
                f"no adapter for {ident!r} with model_name={model_name}; adapters exist for "
                "other base models",
                [_label(e) for e in task_entries],
            )
    if chash:
        with_config = [e for e in candidates if e.config_hash == chash]
        if not with_config:
            raise ResolveError(
                404,
                f"no adapter for {ident!r}"
                + (f" on {model_name}" if model_name else "")
                + f" with config {chash}; other configs exist (no fallback)",
                [_label(e) for e in candidates],
            )
        candidates = with_config
    if len(candidates) > 1:
        hint = [] if model_name else ["model_name"]
        hint += [] if chash else ["config"]
        raise ResolveError(
            409,
            f"{ident!r} is ambiguous: {len(candidates)} adapters match"
            + (f"; pass {' and/or '.join(hint)} or use @org/name" if hint else "; use @org/name"),
            [_label(e) for e in candidates],
        )
    return _pin(s, candidates[0], ident, version, chash)


# ------------------------------------------------------------------------------------------------ taxonomy
def taxonomy(s: Session, viewer: Viewer | None = None) -> TaxonomyResponse:
    vis = _visible(viewer)
    conds = [IndexEntry.is_adapter.is_(True), *([vis] if vis is not None else [])]
    counts_ts = {
        (t, st): c
        for t, st, c in s.execute(
            select(IndexEntry.task, IndexEntry.subtask, func.count())
            .where(*conds)
            .group_by(IndexEntry.task, IndexEntry.subtask)
        )
    }
    task_counts: dict[str, int] = {}
    for (t, _), c in counts_ts.items():
        task_counts[t] = task_counts.get(t, 0) + c
    subtasks: dict[str, list[SubtaskOut]] = {}
    for st in s.scalars(select(TaxonomySubtask).order_by(TaxonomySubtask.task, TaxonomySubtask.name)):
        subtasks.setdefault(st.task, []).append(
            SubtaskOut(
                name=st.name,
                displayname=st.displayname,
                language=st.language,
                metric=st.metric,
                count=counts_ts.get((st.task, st.name), 0),
            )
        )
    tasks = [
        TaskOut(
            name=t.name,
            kind=t.kind,
            displayname=t.displayname,
            description=t.description,
            count=task_counts.get(t.name, 0),
            subtasks=subtasks.get(t.name, []),
        )
        for t in s.scalars(select(TaxonomyTask).order_by(TaxonomyTask.kind.desc(), TaxonomyTask.displayname))
    ]
    lang_counts = dict(
        s.execute(select(IndexEntry.language, func.count()).where(*conds).group_by(IndexEntry.language)).all()
    )
    langs = [
        LanguageOut(code=lang.code, name=lang.name, count=lang_counts.get(lang.code, 0))
        for lang in s.scalars(select(TaxonomyLanguage).order_by(TaxonomyLanguage.name))
    ]
    return TaxonomyResponse(tasks=tasks, languages=langs)


# -------------------------------------------------------------------------------------------------- router
def get_session(request: Request):
    """A session of the hub's database (``app.state.hub.db``)."""
    with request.app.state.hub.db.session() as s:
        yield s


def viewer_for(request: Request, s: Session) -> Viewer:
    """The caller (Bearer token, or the UI's token cookie) as a search `Viewer`; anonymous if no token."""
    from adapterhub.server.auth import AuthError, caller_from_header

    from adapterhub.server.sessions import read_authorization

    try:
        caller = caller_from_header(s, read_authorization(request))
    except AuthError:
        return Viewer()
    if caller.account is None:
        return Viewer()
    return Viewer(account_ids=(caller.account.id, *caller.orgs.keys()), admin=bool(caller.account.is_admin))


router = APIRouter(tags=["search"])


def _error(e: ResolveError | ValueError) -> JSONResponse:
    if isinstance(e, ResolveError):
        return JSONResponse({"error": e.message, "candidates": e.candidates}, status_code=e.status)
    return JSONResponse({"error": str(e), "candidates": []}, status_code=400)


@router.get(
    "/api/adapters",
    response_model=SearchResponse,
    summary="Faceted search over the adapter index",
    responses={400: {"model": ResolveErrorBody}},
)
def api_search(
    request: Request,
    q: str = Query("", description="full text: every word must occur (name, description, model, task, ...)"),
    base_model: str | None = None,
    model_type: str | None = None,
    task: str | None = None,
    subtask: str | None = None,
    language: str | None = None,
    method: str | None = None,
    head: str | None = None,
    license: str | None = None,
    author: str | None = None,
    library: str | None = None,
    source: str | None = Query(None, description="`hub` or `legacy`"),
    sort: str = Query("recent", description="recent | downloads | score | name"),
    page: int = Query(1, ge=1),
    per_page: int = Query(20, ge=1, le=MAX_PER_PAGE),
    facets: bool = Query(True, description="include facet counts"),
    s: Session = Depends(get_session),
):
    filters = {
        k: v
        for k, v in dict(
            base_model=base_model,
            model_type=model_type,
            task=task,
            subtask=subtask,
            language=language,
            method=method,
            head=head,
            license=license,
            author=author,
            library=library,
            source=source,
        ).items()
        if v
    }
    query = SearchQuery(q=q, filters=filters, sort=sort, page=page, per_page=per_page, facets=facets)
    try:
        res = search(s, query, viewer_for(request, s))
    except ValueError as e:
        return _error(e)
    return SearchResponse(
        total=res.total,
        page=page,
        per_page=per_page,
        pages=-(-res.total // per_page),
        sort=sort,
        items=[summary(e) for e in res.items],
        facets={k: [FacetValue(value=v, count=c) for v, c in vals] for k, vals in res.facets.items()},
    )


class IdentifierParams:
    """The query parameters naming an adapter, shared by the resolve and bundle APIs."""

    def __init__(
        self,
        identifier: str = Query(
            ..., description="`task/subtask[@org]`, `@org/name` or `org/name[@revision]`"
        ),
        model_name: str | None = Query(None, description="base model the adapter must be for"),
        config: str | None = Query(
            None,
            description="preset name or config string (`seq_bn`, `lora`, `ia3[r=2]`), JSON or config hash",
        ),
        version: str | None = Query(None, description="revision / legacy version to pin (no fallback)"),
    ):
        self.identifier, self.model_name, self.config, self.version = identifier, model_name, config, version


def resolve_answer(
    s: Session, p: IdentifierParams, viewer_of: Callable[[], Viewer | None], quick: bool = True
) -> dict | JSONResponse:
    """The resolve API's answer as a dict, or its error answer: :func:`quick_resolve` for the common case (unless
    ``quick`` is False: the caller tried it already), else :func:`resolve` for the caller ``viewer_of()``."""
    if quick and not (p.config or p.version):
        body = quick_resolve(s, p.identifier, p.model_name)
        if body is not None:
            return body
    try:
        return resolve(
            s, p.identifier, model_name=p.model_name, config=p.config, version=p.version, viewer=viewer_of()
        ).model_dump(mode="json")
    except ResolveError as e:
        return _error(e)


@router.get(
    "/api/adapters/resolve",
    response_model=ResolveResponse,
    summary="Resolve an AdapterHub identifier to a pinned repository and commit",
    responses={
        400: {"model": ResolveErrorBody},
        404: {"model": ResolveErrorBody},
        409: {"model": ResolveErrorBody, "description": "ambiguous: the candidates are listed"},
    },
)
def api_resolve(request: Request, p: IdentifierParams = Depends(), s: Session = Depends(get_session)):
    return resolve_answer(s, p, lambda: viewer_for(request, s))


@router.get("/api/taxonomy", response_model=TaxonomyResponse, summary="Tasks, subtasks and languages")
def api_taxonomy(request: Request, s: Session = Depends(get_session)):
    return taxonomy(s, viewer_for(request, s))


# ------------------------------------------------------------------------------------ hooks into the core hub
def on_commit(event) -> None:
    """Post-commit hook: index the new commit (``repos.CommitEvent``)."""
    from adapterhub.server.index import index_commit

    with event.hub.db.session() as s:
        repo, commit = s.get(Repo, event.repo_pk), s.get(Commit, event.commit_oid)
        if repo is not None and commit is not None:
            index_commit(s, repo, commit, event.hub.store, branch=event.branch)


def on_validation(hub, commit_oid: str, status: str) -> None:
    from adapterhub.server.index import update_validation

    with hub.db.session() as s:
        update_validation(s, commit_oid, status)


def on_model_info(info: dict, repo, commit) -> None:
    """Adds the index's view of the adapter at that commit to ``/api/models/{repo}`` answers (``adapterhub``)."""
    from sqlalchemy.orm import object_session

    s = object_session(repo)
    e = s.scalar(select(IndexEntry).where(IndexEntry.repo_pk == repo.id)) if s is not None else None
    if e is None or not e.is_adapter:
        return
    if e.commit_oid == commit.oid:
        info["adapterhub"] = summary(e).model_dump(
            exclude={"id", "author", "commit", "downloads", "updated_at"}
        )
        return
    v = s.scalar(
        select(IndexVersion).where(IndexVersion.entry_id == e.id, IndexVersion.commit_oid == commit.oid)
    )
    if v is not None:
        info["adapterhub"] = {
            "method": v.method,
            "config_hash": v.config_hash,
            "base_model": (v.data or {}).get("base_model"),
        }


def setup(hub) -> None:
    """Called once by ``create_app``: registers the index hooks and seeds the taxonomy on first start."""
    from adapterhub.server import taxonomy as T

    if on_model_info not in hub.model_info_hooks:
        hub.model_info_hooks.append(on_model_info)
    if on_commit not in hub.post_commit_hooks:
        hub.post_commit_hooks.append(on_commit)
    if on_validation not in hub.post_validation_hooks:
        hub.post_validation_hooks.append(on_validation)
    path = getattr(hub.settings, "index_data", None) or T.default_data_path()
    if str(path or "").lower() in ("", "none", "off"):
        return
    try:
        with hub.db.session() as s:
            T.seed(s, path)
    except Exception:  # noqa: BLE001 - a broken data folder must not stop the server
        import logging

        logging.getLogger("adapterhub.server").exception("seeding the taxonomy from %s failed", path)

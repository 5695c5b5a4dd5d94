"""The query builder of the adapter search: the query (:class:`SearchQuery`), who sees what (:class:`Viewer`,
:func:`visible`), full text, filters and sort orders as SQLAlchemy conditions.

Full text: every word must occur in the entry's ``search_text`` (as a substring, the same on SQLite and PostgreSQL:
through FTS5's trigram index on SQLite, through the word index or pg_trgm's index on PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, and_, any_, literal, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from adapterhub.server.index_models import IndexEntry
from adapterhub.server.models import Repo

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
#: each sort order's keys, first to last: (column, descending); "score" puts entries without a score last
SORT_KEYS: dict[str, list[tuple[str, bool]]] = {
    "recent": [("updated_at", True), ("id", True)],
    "downloads": [("downloads", True), ("updated_at", True), ("id", True)],
    "score": [("score", True), ("id", True)],
    "name": [("full_name", False)],
}
SORTS = tuple(SORT_KEYS)
MAX_PAGE = 1_000_000
MAX_PER_PAGE = 100
FACET_LIMIT = 30


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


def visible(viewer: Viewer | None):
    if viewer is not None and viewer.admin:
        return None
    if viewer is None or not viewer.account_ids:
        return IndexEntry.private.is_(False)
    owned = select(Repo.id).where(Repo.owner_id.in_(viewer.account_ids))
    return or_(IndexEntry.private.is_(False), IndexEntry.repo_pk.in_(owned))


def private_visible(viewer: Viewer | None):
    """The condition for the private entries that ``viewer`` may see (None: none)."""
    if viewer is not None and viewer.admin:
        return IndexEntry.private.is_(True)
    if viewer is None or not viewer.account_ids:
        return None
    owned = select(Repo.id).where(Repo.owner_id.in_(viewer.account_ids))
    return and_(IndexEntry.private.is_(True), IndexEntry.repo_pk.in_(owned))


_TABLES: dict[tuple[str, str], bool] = {}


def has_table(s: Session, name: str) -> bool:
    """Whether the database has the table ``name`` that a migration makes for one dialect only (the FTS5 table
    ``index_fts`` on SQLite, ``index_facet_counts`` on PostgreSQL); cached per database."""
    bind = s.get_bind()
    key = (str(bind.url), name)
    if key not in _TABLES:
        if bind.dialect.name == "sqlite":
            sql = text("SELECT 1 FROM sqlite_master WHERE name = :name")
        else:
            sql = text("SELECT 1 WHERE to_regclass(:name) IS NOT NULL")
        _TABLES[key] = s.execute(sql, {"name": name}).first() is not None
    return _TABLES[key]


#: PostgreSQL: a query word of these characters is looked up through the word index (migrations 0009, 0010) ...
WORD = re.compile(r"[a-z0-9]{3,100}")
#: ... when at most this many words of the index contain it (else through the trigram index)
WORDS_MAX = 1000


def word_condition(s: Session, term: str, key: str):
    """PostgreSQL: the condition that ``term`` occurs in ``search_text``, as "one of the entry's words is one of the
    indexed words containing ``term``" (the same matches: ``term`` has no separator, so it occurs inside one word,
    and has at most 100 characters, so inside one piece of a word longer than 200: migration 0010),
    which the GIN index of the words answers; None where the word index does not apply (see :data:`WORD`,
    :data:`WORDS_MAX`). The words are looked up in the statement itself, so they are those of its snapshot."""
    if not WORD.fullmatch(term) or not has_table(s, "ixw_index_entries_words"):
        return None
    like = f"%{term}%"
    n = s.scalar(
        text("SELECT count(*) FROM (SELECT 1 FROM index_words WHERE word LIKE :w LIMIT :m) AS x"),
        {"w": like, "m": WORDS_MAX + 1},
    )
    if n > WORDS_MAX:
        return None
    return text(
        "index_words_of(index_entries.search_text) "
        f"&& ARRAY(SELECT word FROM index_words WHERE word LIKE :{key})"
    ).bindparams(**{key: like})


def text_conditions(s: Session, q: str) -> list:
    """Every word must occur in `search_text`. Words of 3+ plain characters go through the FTS5 trigram
    index on SQLite and through the word index on PostgreSQL (:func:`word_condition`; else pg_trgm's index serves
    the LIKE itself); the rest are escaped LIKEs."""
    conds, fts_terms = [], []
    dialect = s.get_bind().dialect.name
    fts = dialect == "sqlite" and has_table(s, "index_fts")
    for i, term in enumerate(q.lower().split()[:10]):
        word = word_condition(s, term, f"word_{i}") if dialect == "postgresql" else None
        if word is not None:
            conds.append(word)
        elif fts and len(term) >= 3 and not re.search(r"[%_\\\"']", term):
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


def text_match(s: Session, q: str) -> list:
    """The full-text conditions of `q`, as the list of the matching ids when there are at most TEXT_IDS_MAX."""
    conds = text_conditions(s, q)
    if not conds:
        return []
    ids = list(s.scalars(select(IndexEntry.id).where(*conds).limit(TEXT_IDS_MAX + 1)))
    if len(ids) > TEXT_IDS_MAX:
        return conds
    if s.get_bind().dialect.name == "postgresql":  # one array parameter instead of one parameter per id
        return [IndexEntry.id == any_(literal(ids, type_=ARRAY(Integer)))]
    return [IndexEntry.id.in_(ids)]


def conditions(
    s: Session,
    query: SearchQuery,
    viewer: Viewer | None,
    skip: str | None = None,
    text_filter: list | None = None,
) -> list:
    conds = [IndexEntry.is_adapter.is_(True)]
    vis = visible(viewer)
    if vis is not None:
        conds.append(vis)
    conds += text_filter if text_filter is not None else text_conditions(s, query.q)
    for name, value in query.filters.items():
        if name != skip and value:
            conds.append(FACETS[name] == value)
    return conds


def sort_columns(sort: str) -> list:
    """The columns that sort order ``sort`` reads besides the id."""
    return [getattr(IndexEntry, name) for name, _ in SORT_KEYS[sort] if name != "id"]


def sort_order(sort: str, dialect: str) -> list:
    """The ORDER BY of ``sort`` (:data:`SORT_KEYS`). Entries without a score come last: ``NULLS LAST`` on
    PostgreSQL (as its index, migration 0006, is ordered), a leading ``score IS NULL`` key on SQLite."""
    order = []
    for name, descending in SORT_KEYS[sort]:
        col = getattr(IndexEntry, name)
        key = col.desc() if descending else col.asc()
        if name == "score" and dialect == "postgresql":
            key = key.nulls_last()
        elif name == "score":
            order.append(col.is_(None))
        order.append(key)
    return order

"""Facet counts of a search: for each facet, its most frequent values among the hits, each facet counted under
all the *other* filters (so that a user sees how many hits a different value would give).

Four ways to count, all giving the same numbers:

* **stored** (PostgreSQL): a facet counted under at most one filter and no full text (and the total under at most
  two filters) is read from
  ``index_facet_counts`` (the public adapters' counts, kept by database triggers: migration 0005), plus the
  private entries the viewer may see, counted on the fly;
* **full text** (PostgreSQL): one statement reads the adapters matching the text once and counts the total and
  every facet in the database (:func:`text_hits`);
* **one pass** over the hits' facet columns when there are few hits (one query; SQLite);
* **GROUP BY** in the database: one GROUPING SETS query on PostgreSQL, one query per facet on SQLite.

Counts are cached per query for a few seconds (:data:`FACET_CACHE_SECONDS`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from adapterhub.server.index_models import IndexEntry
from adapterhub.server.search_query import (
    FACET_LIMIT,
    FACETS,
    SearchQuery,
    Viewer,
    conditions,
    has_table,
    private_visible,
    sort_columns,
    sort_order,
    text_conditions,
    visible,
)

Facets = dict[str, list[tuple[str, int]]]
STORED = "index_facet_counts"


def _top(counter: Counter) -> list[tuple[str, int]]:
    return [
        (str(v), int(c)) for v, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_LIMIT]
    ]


# ------------------------------------------------------------------------------------------ stored counts
def stored_applies(s: Session, query: SearchQuery) -> bool:
    """Whether stored counts can answer the total of ``query``: no full text, at most two filters, PostgreSQL
    with the counts table."""
    active = [k for k, v in query.filters.items() if v]
    return not query.q.strip() and len(active) <= 2 and has_table(s, STORED)


def _private_conditions(viewer: Viewer | None, filters: list[tuple[str, str]]) -> list | None:
    """The conditions of the private adapters ``viewer`` may see, under ``filters`` (None: there are none)."""
    priv = private_visible(viewer)
    if priv is None:
        return None
    return [IndexEntry.is_adapter.is_(True), priv, *(FACETS[k] == v for k, v in filters)]


def stored_total(s: Session, query: SearchQuery, viewer: Viewer | None) -> int:
    """The number of hits of ``query`` (see :func:`stored_applies`) from the stored counts: the row of no filter,
    of the one filter, or of the pair of filters."""
    active = [(k, v) for k, v in query.filters.items() if v]
    keys = [(FACETS[k].key, v) for k, v in active]
    (f2, v2), (facet, value) = ([("", "")] * (2 - len(keys)) + keys)[-2:]
    n = s.scalar(
        text(
            f"SELECT n FROM {STORED} WHERE facet2 = :f2 AND value2 = :v2 AND facet = :facet AND value = :value"
        ),
        {"f2": f2, "v2": v2, "facet": facet, "value": value},
    )
    conds = _private_conditions(viewer, active)
    if conds is not None:
        n = (n or 0) + (s.scalar(select(func.count()).select_from(IndexEntry).where(*conds)) or 0)
    return int(n or 0)


def _stored(
    s: Session, viewer: Viewer | None, filt: tuple[str, str] | None, names: list[str]
) -> dict[str, Counter]:
    """The counts of facets ``names`` among the adapters ``viewer`` sees that match filter ``filt`` (or all)."""
    f2, v2 = (FACETS[filt[0]].key, filt[1]) if filt else ("", "")
    by_col: dict[str, Counter] = {FACETS[n].key: Counter() for n in names}
    rows = s.execute(
        text(
            f"SELECT facet, value, n FROM {STORED} WHERE facet2 = :f2 AND value2 = :v2 AND facet IN :cols AND n > 0"
        ).bindparams(bindparam("cols", expanding=True)),
        {"f2": f2, "v2": v2, "cols": list(by_col)},
    )
    for facet, value, n in rows:
        by_col[facet][value] += n
    conds = _private_conditions(viewer, [filt] if filt else [])
    if conds is not None:
        for name, counter in _group_counts(s, names, conds).items():
            by_col[FACETS[name].key].update(counter)
    return {n: by_col[FACETS[n].key] for n in names}


def _stored_facets(s: Session, query: SearchQuery, viewer: Viewer | None) -> Facets:
    """The facets that stored counts answer: those counted under at most one other filter, without full text."""
    if query.q.strip() or not has_table(s, STORED):
        return {}
    active = [(k, v) for k, v in query.filters.items() if v]
    groups: defaultdict[tuple[str, str] | None, list[str]] = defaultdict(list)
    for name in FACETS:
        others = [kv for kv in active if kv[0] != name]
        if len(others) <= 1:
            groups[others[0] if others else None].append(name)
    facets: Facets = {}
    for filt, names in groups.items():
        facets.update({name: _top(c) for name, c in _stored(s, viewer, filt, names).items()})
    return facets


# --------------------------------------------------------------------------------------- counted counts
#: Up to this many hits, the facets without an active filter are counted in one pass over the hits' facet
#: columns (one query), instead of one GROUP BY per facet.
ONE_PASS_MAX = 25_000


def _one_pass(s: Session, names: list[str], conds: list) -> Facets:
    counters: list[Counter] = [Counter() for _ in names]
    for row in s.execute(select(*(FACETS[n] for n in names)).where(*conds)):
        for counter, value in zip(counters, row):
            if value is not None:
                counter[value] += 1
    return {name: _top(counter) for name, counter in zip(names, counters)}


def _group_counts(s: Session, names: list[str], conds: list) -> dict[str, Counter]:
    """PostgreSQL: the counts of facets ``names`` under ``conds``, in one GROUPING SETS query."""
    cols = [FACETS[n] for n in names]
    counters: list[Counter] = [Counter() for _ in names]
    flags = [func.grouping(c) for c in cols]
    stmt = (
        select(*cols, *flags, func.count())
        .where(*conds)
        .group_by(func.grouping_sets(*[tuple_(c) for c in cols]))
    )
    n = len(cols)
    for row in s.execute(stmt):
        for i in range(n):
            if row[n + i] == 0 and row[i] is not None:  # grouped by column i
                counters[i][row[i]] += int(row[-1])
    return dict(zip(names, counters))


def _grouping_sets(s: Session, names: list[str], conds: list) -> Facets:
    """PostgreSQL: the counts of several facets under the same conditions in one GROUPING SETS query."""
    return {name: _top(c) for name, c in _group_counts(s, names, conds).items()}


def facet_counts(
    s: Session, query: SearchQuery, viewer: Viewer | None, tf: list, total: int | None = None
) -> Facets:
    facets = _stored_facets(s, query, viewer)
    active = {k for k, v in query.filters.items() if v}
    narrowed = bool(active or query.q.strip())
    postgres = s.get_bind().dialect.name == "postgresql"  # counts in one GROUPING SETS statement instead
    if narrowed and not postgres and total is not None and total <= ONE_PASS_MAX:
        names = [n for n in FACETS if n not in active and n not in facets]
        if names:
            facets.update(_one_pass(s, names, conditions(s, query, viewer, text_filter=tf)))
    rest = [n for n in FACETS if n not in facets and n not in active]
    if len(rest) > 1 and postgres:  # one scan for all of them
        facets.update(_grouping_sets(s, rest, conditions(s, query, viewer, text_filter=tf)))
    for name, col in FACETS.items():
        if name in facets:
            continue
        fconds = conditions(s, query, viewer, skip=name, text_filter=tf)
        # Under other filters, group by an expression, not the bare column: the planner then narrows with
        # the filters' indexes instead of walking this facet's index in order (SQLite).
        narrowed = bool(query.q.strip()) or any(v for k, v in query.filters.items() if k != name)
        key = col.concat("") if narrowed else col
        cnt = func.count()
        rows = s.execute(
            select(key, cnt)
            .where(*fconds, key.is_not(None))
            .group_by(key)
            .order_by(cnt.desc(), key)
            .limit(FACET_LIMIT)
        ).all()
        facets[name] = [(str(v), int(c)) for v, c in rows]
    return {name: facets[name] for name in FACETS}


# ------------------------------------------------------------------------------------------ full text
#: PostgreSQL ``work_mem`` of a full-text search's statement (``SET LOCAL``): enough to keep the hits' facet
#: columns (8 to 12 MB for 50,000 hits) in memory instead of a temporary file. Empty: the server's setting.
TEXT_WORK_MEM = "32MB"


def _text_work_mem(s: Session) -> None:
    """Raise ``work_mem`` to :data:`TEXT_WORK_MEM` for the rest of the transaction (the hits' CTE and the hash
    tables in memory, not in temporary files)."""
    if TEXT_WORK_MEM:
        s.execute(text(f"SET LOCAL work_mem = '{TEXT_WORK_MEM}'"))


@dataclass
class TextHits:
    """A full-text search answered in one statement: ``total`` its number of hits, ``ids`` the ids of the
    requested page's hits in the sort order, ``facets`` its facet counts."""

    total: int
    ids: list[int]
    facets: Facets


def _page(m, keys: list, order: list, where: list, offset: int, limit: int):
    """The ids of the hits ``offset`` to ``offset + limit`` among the rows of CTE ``m`` under ``where`` in the sort
    ``order`` (over ``keys``, columns of ``m``), as one array: a top-N sort of the ids and sort keys."""
    top = (
        select(m.c.id, *(m.c[k.key] for k in keys))
        .where(*where)
        .order_by(*(ClauseAdapter(m).traverse(o) for o in order))
        .offset(offset)
        .limit(limit)
        .subquery()
    )
    in_order = [ClauseAdapter(top).traverse(o) for o in order]
    return select(func.array_agg(aggregate_order_by(top.c.id, *in_order), type_=ARRAY(Integer)))


def text_hits(
    s: Session, query: SearchQuery, viewer: Viewer | None, offset: int, limit: int, facets: bool = True
) -> TextHits | None:
    """PostgreSQL, full text: one statement reads the visible adapters matching the text once (a materialised CTE
    over the word or trigram index, with only the facet columns and the requested sort's keys; with a filter, a
    hit outside the filters keeps only the filtered facets) and returns the counts of
    every facet, the number of hits and the ids of the hits ``offset`` to ``offset + limit`` in the sort order.
    The facets without an active filter are counted in one GROUPING SETS pass over the hits under every filter;
    each facet with an active filter in a pass of its own over the hits under the *other* filters (so that each
    hit is hashed once per facet it is counted in, not once per facet for every filter). The total comes from
    those passes (no scan of its own); the page is a top-N sort of the hits' ids and sort keys. The statement
    runs with ``work_mem`` :data:`TEXT_WORK_MEM`. Without ``facets`` (not asked for, or in the facet cache) it
    reads only the hits under every filter, with the sort's keys, for their number and the page (``facets``
    empty). None where this does not apply."""
    if not query.q.strip() or s.get_bind().dialect.name != "postgresql":
        return None
    if not facets:
        return _text_page(s, query, viewer, offset, limit)
    names = list(FACETS)
    vis = visible(viewer)
    order = sort_order(query.sort, "postgresql")
    keys = sort_columns(query.sort)
    filt = {i: query.filters[n] for i, n in enumerate(names) if query.filters.get(n)}
    free = [i for i in range(len(names)) if i not in filt]
    # With a filter, the facets without one are only counted among the hits under every filter, so a hit outside
    # them keeps only its filtered facets: the others are stored as one array, NULL outside (a much smaller CTE;
    # without a filter, plain columns are cheaper than the array).
    plain = list(filt) if filt else free
    packed = [i for i in free if i not in plain]
    inside = and_(*(FACETS[names[i]] == v for i, v in filt.items())) if filt else None
    m = (
        select(
            IndexEntry.id,
            *keys,
            *(FACETS[names[i]].label(f"f{i}") for i in plain),
            *([case((inside, pg_array([FACETS[names[i]] for i in packed]))).label("a")] if packed else []),
        )
        .where(
            IndexEntry.is_adapter.is_(True), *([vis] if vis is not None else []), *text_conditions(s, query.q)
        )
        .cte("m")
        .prefix_with("MATERIALIZED")
    )
    cols = [
        m.c[f"f{i}"] if i in plain else m.c.a[literal_column(str(packed.index(i) + 1))]
        for i in range(len(names))
    ]
    match = {i: cols[i] == v for i, v in filt.items()}
    hit = [m.c.a.is_not(None)] if packed else list(match.values())

    def counted(sets: list[int], where: list, total: bool = False):
        """The counts of facets ``sets`` among the hits under ``where`` (``total``: and their number)."""
        grouped = [c if i in sets else null() for i, c in enumerate(cols)]
        flags = [func.grouping(c) if i in sets else literal_column("1") for i, c in enumerate(cols)]
        return (
            select(*grouped, *flags, func.count(), null().cast(ARRAY(Integer)).label("ids"))
            .where(*where)
            .group_by(func.grouping_sets(*[tuple_(cols[i]) for i in sets], *([tuple_()] if total else [])))
        )

    # The total is one of the counts: with a filter, its value's count in that facet's own pass; without, the
    # empty grouping set of the free facets' pass (its row has every grouping flag 1).
    passes = ([counted(free, hit, total=not filt)] if free else []) + [
        counted([i], [c for j, c in match.items() if j != i]) for i in filt
    ]
    page = _page(m, keys, order, hit, offset, limit)
    ids_row = select(*(null() for _ in cols), *(null() for _ in cols), null(), page.scalar_subquery())
    n = len(cols)
    counters: list[Counter] = [Counter() for _ in names]
    total, ids = 0, []
    _text_work_mem(s)
    for row in s.execute(union_all(*passes, ids_row)):
        if row[n] is None:  # the row of the page's ids
            ids = list(row[-1] or [])
            continue
        if all(row[n + i] == 1 for i in range(n)):  # the empty grouping set: the number of hits
            total = int(row[2 * n])
            continue
        for i in range(n):
            if row[n + i] == 0 and row[i] is not None:  # grouped by column i
                counters[i][row[i]] = int(row[2 * n])
    if filt:
        first = next(iter(filt))
        total = counters[first][filt[first]]
    return TextHits(total, ids, {name: _top(c) for name, c in zip(names, counters)})


def _text_page(s: Session, query: SearchQuery, viewer: Viewer | None, offset: int, limit: int) -> TextHits:
    """:func:`text_hits` without facets: the number of hits and the page's ids, from one read of the hits."""
    keys = sort_columns(query.sort)
    m = select(IndexEntry.id, *keys).where(*conditions(s, query, viewer)).cte("m").prefix_with("MATERIALIZED")
    page = _page(m, keys, sort_order(query.sort, "postgresql"), [], offset, limit)
    _text_work_mem(s)
    total, ids = s.execute(
        select(select(func.count()).select_from(m).scalar_subquery(), page.scalar_subquery())
    ).one()
    return TextHits(int(total), list(ids or []), {})


# ------------------------------------------------------------------------------------------------ cache
#: Facet counts are cached per query for this many seconds, and dropped as soon as the index gets a new or
#: newer entry (the newest id / updated_at change). Items and totals are never cached. 0 disables the cache.
FACET_CACHE_SECONDS = 30.0
_facet_cache: OrderedDict[tuple, tuple[tuple, float, Facets]] = OrderedDict()
_facet_lock = threading.Lock()


#: where a query's facet counts go in the cache: its key and the index's token read before they were counted
Slot = tuple[tuple, tuple]


def cached_facets(s: Session, query: SearchQuery, viewer: Viewer | None) -> tuple[Facets | None, Slot | None]:
    """The cached facet counts of ``query`` for ``viewer`` (None when none still hold) and the slot to
    :func:`remember_facets` freshly counted ones in (None when the cache is off). The slot's token is read
    before the counts, so that a write committed meanwhile makes them stale at once."""
    if FACET_CACHE_SECONDS <= 0:
        return None, None
    token = tuple(s.execute(select(func.max(IndexEntry.id), func.max(IndexEntry.updated_at))).one())
    vkey = (viewer.account_ids, viewer.admin) if viewer is not None else None
    key = (
        str(s.get_bind().url),
        " ".join(query.q.lower().split()),
        tuple(sorted(query.filters.items())),
        vkey,
    )
    with _facet_lock:
        hit = _facet_cache.get(key)
        if hit is not None and hit[0] == token and time.monotonic() - hit[1] < FACET_CACHE_SECONDS:
            _facet_cache.move_to_end(key)
            return hit[2], (key, token)
    return None, (key, token)


def remember_facets(slot: Slot | None, facets: Facets) -> Facets:
    """Cache ``facets`` in ``slot`` (from :func:`cached_facets`; None: the cache is off); returns them."""
    if slot is not None:
        key, token = slot
        with _facet_lock:
            _facet_cache[key] = (token, time.monotonic(), facets)
            while len(_facet_cache) > 512:
                _facet_cache.popitem(last=False)
    return facets

"""The adapter searches: :func:`search` (``GET /api/adapters``: hits, total, pages and facet counts) and
:func:`taxonomy` (``GET /api/taxonomy``: tasks, subtasks and languages with their numbers of adapters)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, lazyload

from adapterhub.server.index_models import IndexEntry, TaxonomyLanguage, TaxonomySubtask, TaxonomyTask
from adapterhub.server.search_facets import (
    Facets,
    cached_facets,
    facet_counts,
    remember_facets,
    stored_applies,
    stored_total,
    text_hits,
)
from adapterhub.server.search_models import LanguageOut, SubtaskOut, TaskOut, TaxonomyResponse
from adapterhub.server.search_query import (
    FACETS,
    MAX_PAGE,
    MAX_PER_PAGE,
    SORTS,
    SearchQuery,
    Viewer,
    conditions,
    sort_order,
    text_match,
    visible,
)


@dataclass
class SearchResult:
    total: int
    items: list[IndexEntry]
    facets: Facets


def search(s: Session, query: SearchQuery, viewer: Viewer | None = None) -> SearchResult:
    unknown = set(query.filters) - set(FACETS)
    if unknown:
        raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
    if query.sort not in SORTS:
        raise ValueError(f"unknown sort {query.sort!r} (one of {', '.join(SORTS)})")
    per_page = max(1, min(query.per_page, MAX_PER_PAGE))
    page = max(1, min(query.page, MAX_PAGE))  # beyond: an empty page (the offset stays a 64-bit number)
    offset = (page - 1) * per_page
    # facets from the cache when they still hold (full text: else counted in the same statement as the page)
    cached, slot = cached_facets(s, query, viewer) if query.facets else (None, None)
    hits = text_hits(s, query, viewer, offset, per_page, facets=query.facets and cached is None)
    if hits is not None:
        total, ids = hits.total, hits.ids
    else:
        tf = text_match(s, query.q)
        conds = conditions(s, query, viewer, text_filter=tf)
        if stored_applies(s, query):
            total = stored_total(s, query, viewer)
        else:
            total = s.scalar(select(func.count()).select_from(IndexEntry).where(*conds)) or 0
        # ids first (the sort then carries only keys, not whole rows), then the page's rows
        ids = list(
            s.scalars(
                select(IndexEntry.id)
                .where(*conds)
                .order_by(*sort_order(query.sort, s.get_bind().dialect.name))
                .limit(per_page)
                .offset(offset)
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
    facets: Facets = {}
    if query.facets:
        if cached is not None:
            facets = cached
        else:
            counted = hits.facets if hits is not None else facet_counts(s, query, viewer, tf, total)
            facets = remember_facets(slot, counted)
    return SearchResult(total, items, facets)


def taxonomy(s: Session, viewer: Viewer | None = None) -> TaxonomyResponse:
    vis = visible(viewer)
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

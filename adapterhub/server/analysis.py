"""Compare the adapters of one task / dataset: score against adapter size, by method.

The scores are the metrics of the adapters' cards (the index's ``score`` and its metric's name); only
adapters that report the same metric are compared. ``GET /api/analysis`` answers the rows as JSON, the page
``/analysis`` shows a sortable table (plain links: ``sort`` and ``order`` query parameters, no JavaScript)
and a scatter chart drawn on the server as SVG (x: adapter parameters, log scale; y: score; one colour and
shape per method; every point links to its adapter)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapterhub.server.errors import BadRequest
from adapterhub.server.humanize import human_params
from adapterhub.server.index_models import IndexEntry
from adapterhub.server.search import get_session, viewer_for
from adapterhub.server.search_models import score_metric
from adapterhub.server.search_query import visible

router = APIRouter()

SORTS = ("score", "params", "size", "method", "name", "downloads")
MAX_ROWS = 500


class AnalysisRow(BaseModel):
    id: str
    url: str = Field(description="the adapter's page")
    method: str | None
    base_model: str | None
    score: float
    params: int | None = Field(description="the adapter's own parameters (heads saved with it not counted)")
    size_bytes: int = Field(
        description="the repository's size (0 for legacy cards, whose files are elsewhere)"
    )
    downloads: int
    source: str


class AnalysisResponse(BaseModel):
    task: str
    subtask: str | None
    metric: str | None = Field(description="the metric compared; rows report this one")
    metrics: dict[str, int] = Field(
        description="every metric reported for this task / dataset: adapters each"
    )
    sort: str
    order: Literal["asc", "desc"]
    rows: list[AnalysisRow]


class Choice(BaseModel):
    task: str
    subtask: str | None
    count: int


def adapter_params(e: IndexEntry) -> int | None:
    """The adapter's own parameter count, as every page shows it (the heads' part taken off)."""
    from adapterhub.server.ui import param_counts

    return param_counts(e).adapter


def choices(s: Session, viewer) -> list[Choice]:
    """Task / dataset pairs with at least one scored adapter visible to the viewer, most adapters first."""
    vis = visible(viewer)
    rows = s.execute(
        select(IndexEntry.task, IndexEntry.subtask, func.count())
        .where(
            IndexEntry.is_adapter.is_(True),
            IndexEntry.score.is_not(None),
            IndexEntry.task.is_not(None),
            *([vis] if vis is not None else []),
        )
        .group_by(IndexEntry.task, IndexEntry.subtask)
        .order_by(func.count().desc(), IndexEntry.task, IndexEntry.subtask)
    ).all()
    return [Choice(task=t, subtask=st, count=c) for t, st, c in rows]


def analyse(
    s: Session,
    viewer,
    task: str,
    subtask: str | None = None,
    metric: str | None = None,
    sort: str = "score",
    order: str | None = None,
) -> AnalysisResponse:
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")
    if order not in (None, "asc", "desc"):
        raise ValueError(f"order must be asc or desc, got {order!r}")
    vis = visible(viewer)
    conds = [IndexEntry.is_adapter.is_(True), IndexEntry.score.is_not(None), IndexEntry.task == task]
    if subtask:
        conds.append(IndexEntry.subtask == subtask)
    if vis is not None:
        conds.append(vis)
    entries = list(s.scalars(select(IndexEntry).where(*conds).order_by(IndexEntry.id).limit(10 * MAX_ROWS)))
    by_metric = Counter(score_metric(e) or "score" for e in entries)
    if metric is None and by_metric:
        metric = sorted(by_metric.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    rows = [
        AnalysisRow(
            id=e.full_name,
            url=f"/adapters/{e.full_name}",
            method=e.method,
            base_model=e.base_model,
            score=float(e.score),
            params=adapter_params(e),
            size_bytes=e.size_bytes or 0,
            downloads=e.downloads or 0,
            source=e.source,
        )
        for e in entries
        if (score_metric(e) or "score") == metric
    ]
    order = order or ("desc" if sort in ("score", "downloads") else "asc")
    key = {
        "score": lambda r: r.score,
        "params": lambda r: r.params if r.params is not None else math.inf,
        "size": lambda r: r.size_bytes,
        "method": lambda r: r.method or "",
        "name": lambda r: r.id,
        "downloads": lambda r: r.downloads,
    }[sort]
    rows.sort(key=lambda r: r.id)  # ties in id order, whatever the direction
    rows.sort(key=key, reverse=order == "desc")
    return AnalysisResponse(
        task=task,
        subtask=subtask or None,
        metric=metric,
        metrics=dict(by_metric),
        sort=sort,
        order=order,
        rows=rows[:MAX_ROWS],
    )


@router.get(
    "/api/analysis",
    response_model=AnalysisResponse,
    summary="Compare the adapters of a task / dataset: score, size and method",
)
def analysis_api(
    request: Request,
    task: str = Query(..., min_length=1, max_length=128),
    subtask: str | None = Query(None, max_length=128, description="the dataset"),
    metric: str | None = Query(None, max_length=64, description="default: the metric most adapters report"),
    sort: str = Query("score", description=" | ".join(SORTS)),
    order: Literal["asc", "desc"] | None = Query(None, description="default: desc for score and downloads"),
    s: Session = Depends(get_session),
):
    try:
        return analyse(s, viewer_for(request, s), task, subtask, metric, sort, order)
    except ValueError as e:
        raise BadRequest(str(e)) from None


# ------------------------------------------------------------------------------------------------ the chart
CHART_W, CHART_H = 640, 360
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 16, 48
#: (marker shape, colour class) per method, in order of first appearance
MARKERS = ("circle", "square", "diamond", "triangle")
COLOURS = 8


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _marker(shape: str, x: float, y: float) -> tuple[str, dict]:
    r = 5
    if shape == "circle":
        return "circle", {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": r}
    if shape == "square":
        return "rect", {"x": f"{x - r:.1f}", "y": f"{y - r:.1f}", "width": 2 * r, "height": 2 * r}
    if shape == "diamond":
        pts = (
            f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}"
        )
    else:
        pts = f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y + r:.1f} {x - r - 1:.1f},{y + r:.1f}"
    return "polygon", {"points": pts}


def _el(tag: str, attrs: dict, text: str | None = None) -> str:
    a = " ".join(f'{k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f"<{tag} {a}>{escape(text)}</{tag}>" if text is not None else f"<{tag} {a}/>"


def scatter_svg(rows: list[AnalysisRow], metric: str) -> Markup | None:
    """Score (y) against adapter parameters (x, log scale), one marker per adapter linking to its page; None
    when no adapter has both."""
    pts = [r for r in rows if r.params]
    if not pts:
        return None
    methods = list(dict.fromkeys(r.method or "?" for r in pts))
    style = {m: (MARKERS[i % len(MARKERS)], i % COLOURS) for i, m in enumerate(methods)}
    lx = [math.log10(r.params) for r in pts]
    x0, x1 = math.floor(min(lx)), math.ceil(max(lx))
    x1 = x1 if x1 > x0 else x0 + 1
    ys = [r.score for r in pts]
    pad = (max(ys) - min(ys)) * 0.1 or abs(max(ys)) * 0.05 or 0.05
    y0, y1 = min(ys) - pad, max(ys) + pad
    pw, ph = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def px(v: float) -> float:
        return PAD_L + (math.log10(v) - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return PAD_T + (y1 - v) / (y1 - y0) * ph

    out = [_el("rect", {"class": "plot", "x": PAD_L, "y": PAD_T, "width": pw, "height": ph})]
    for e in range(x0, x1 + 1):
        x = PAD_L + (e - x0) / (x1 - x0) * pw
        out.append(
            _el("line", {"class": "grid", "x1": f"{x:.1f}", "x2": f"{x:.1f}", "y1": PAD_T, "y2": PAD_T + ph})
        )
        out.append(_el("text", {"class": "tick", "x": f"{x:.1f}", "y": PAD_T + ph + 16}, human_params(10**e)))
    for t in _ticks(y0, y1):
        y = py(t)
        out.append(
            _el("line", {"class": "grid", "x1": PAD_L, "x2": PAD_L + pw, "y1": f"{y:.1f}", "y2": f"{y:.1f}"})
        )
        out.append(_el("text", {"class": "tick y", "x": PAD_L - 6, "y": f"{y + 4:.1f}"}, f"{t:.4g}"))
    out.append(
        _el(
            "text", {"class": "axis", "x": PAD_L + pw / 2, "y": CHART_H - 8}, "adapter parameters (log scale)"
        )
    )
    out.append(_el("text", {"class": "axis", "x": 14, "y": PAD_T + ph / 2, "transform": f"rotate(-90 14 {PAD_T + ph / 2})"}, metric))  # fmt: skip
    for r in pts:
        shape, colour = style[r.method or "?"]
        tag, attrs = _marker(shape, px(r.params), py(r.score))
        label = f"{r.id}: {metric} {r.score:.4g}, {human_params(r.params)} parameters, {r.method or '?'}"
        out.append(
            f'<a href="{escape(r.url)}" class="point" data-id="{escape(r.id)}" data-method="{escape(r.method or "?")}">'
            + f"<title>{escape(label)}</title>"
            + _el(tag, {"class": f"marker c{colour}", **attrs})
            + "</a>"
        )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'width="{CHART_W}" height="{CHART_H}" role="img" aria-label="{escape(metric)} against adapter parameters">'
    )
    return Markup(head + "".join(out) + "</svg>")


def legend(rows: list[AnalysisRow]) -> list[tuple[str, str, int]]:
    """(method, marker shape, colour index) in the chart's order."""
    methods = list(dict.fromkeys(r.method or "?" for r in rows if r.params))
    return [(m, MARKERS[i % len(MARKERS)], i % COLOURS) for i, m in enumerate(methods)]


@router.get("/analysis", response_class=HTMLResponse, include_in_schema=False)
def analysis_page(request: Request, s: Session = Depends(get_session)):
    from adapterhub.server.ui import query_url, render

    viewer = viewer_for(request, s)
    params = request.query_params
    task, subtask = params.get("task") or "", params.get("subtask") or ""
    options = choices(s, viewer)
    if not task and options:
        task, subtask = options[0].task, options[0].subtask or ""
    sort = params.get("sort") if params.get("sort") in SORTS else "score"
    order = params.get("order") if params.get("order") in ("asc", "desc") else None
    result = analyse(s, viewer, task, subtask, params.get("metric") or None, sort, order) if task else None
    base = {"task": task, "subtask": subtask, "metric": params.get("metric")}

    def sort_url(column: str) -> str:
        """The column's default order, or the other order when the table is sorted by it already."""
        p = {**base, "sort": column if column != "score" else None}
        if result is not None and result.sort == column:
            p["order"] = "asc" if result.order == "desc" else "desc"
        return query_url("/analysis", p)

    return render(
        request,
        "analysis.html",
        options=options,
        task=task,
        subtask=subtask,
        result=result,
        chart=scatter_svg(result.rows, result.metric or "score") if result else None,
        legend=legend(result.rows) if result else [],
        sort_url=sort_url,
        choice_url=lambda c: query_url("/analysis", {"task": c.task, "subtask": c.subtask}),
        metric_url=lambda m: query_url("/analysis", {"task": task, "subtask": subtask, "metric": m}),
    )

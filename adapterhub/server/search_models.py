"""The JSON shapes of the search, resolve and taxonomy APIs (documented in the OpenAPI schema), and
:func:`summary`, which turns an index entry into its search answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from adapterhub.server.index_models import IndexEntry


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

"""The HTTP side of the adapter index: the search, resolve and taxonomy routes, and the hooks that keep the index
up to date inside the hub.

* ``GET /api/adapters``: faceted search (:mod:`search_query`: base model, model type, task, subtask, language,
  method, head, licence, author, library, source; full text; sort; pages; facet counts).
* ``GET /api/adapters/resolve``: identifier resolution (:mod:`resolve`).
* ``GET /api/taxonomy``: tasks with their subtasks, and languages.

The answers' shapes are in :mod:`search_models`.
"""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapterhub.server.index_models import IndexEntry, IndexVersion
from adapterhub.server.models import Commit, Repo
from adapterhub.server.resolve import ResolveError, quick_resolve, resolve
from adapterhub.server.search_models import (
    FacetValue,
    ResolveErrorBody,
    ResolveResponse,
    SearchResponse,
    TaxonomyResponse,
    summary,
)
from adapterhub.server.search_query import MAX_PER_PAGE, SearchQuery, Viewer
from adapterhub.server.search_service import search, taxonomy


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


def error_answer(e: ResolveError | ValueError) -> JSONResponse:
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
        return error_answer(e)
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
        return error_answer(e)


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
    """Post-commit hook: index the new commit (``commits.CommitEvent``)."""
    from adapterhub.server.indexing import index_commit

    def index(s: Session) -> None:
        repo, commit = s.get(Repo, event.repo_pk), s.get(Commit, event.commit_oid)
        if repo is not None and commit is not None:
            index_commit(s, repo, commit, event.hub.store, branch=event.branch)

    event.hub.db.write(index)  # run again if a concurrent writer's transaction deadlocks with it


def on_validation(hub, commit_oid: str, status: str) -> None:
    from adapterhub.server.indexing import update_validation

    hub.db.write(lambda s: update_validation(s, commit_oid, status))


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

"""Finding adapters on a hub: faceted search (``list_adapters``, ``search_adapters``) and ``adapter_info``."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import IdentifierError, NotFoundError
from .http import HubClient
from .settings import resolve_settings

FACETS = (
    "base_model",
    "model_type",
    "task",
    "subtask",
    "language",
    "method",
    "head",
    "license",
    "author",
    "library",
    "source",
)
SORTS = ("recent", "downloads", "score", "name")


@dataclasses.dataclass
class AdapterSummary:
    """One search hit (the fields of the hub's ``/api/adapters`` items; unknown ones are kept in ``extra``)."""

    id: str
    author: str | None = None
    source: str | None = None
    downloadable: bool = True
    commit: str | None = None
    revision: str | None = None
    library: str | None = None
    method: str | None = None
    method_family: str | None = None
    hyperparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_hash: str | None = None
    base_model: str | None = None
    model_type: str | None = None
    head: str | None = None
    task: str | None = None
    subtask: str | None = None
    language: str | None = None
    license: str | None = None
    description: str | None = None
    size_bytes: int = 0
    num_params: int | None = None
    downloads: int = 0
    score: float | None = None
    validation: str | None = None
    updated_at: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> AdapterSummary:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in names},
            extra={k: v for k, v in data.items() if k not in names},
        )

    @property
    def identifier(self) -> str:
        return f"{self.id}@{self.commit}" if self.commit else self.id


@dataclasses.dataclass
class SearchResult:
    total: int
    page: int
    pages: int
    items: list[AdapterSummary]
    facets: dict[str, list[tuple[str, int]]]


def _check(filters: dict[str, Any], sort: str) -> None:
    unknown = sorted(set(filters) - set(FACETS))
    if unknown:
        raise IdentifierError(
            f"unknown search filter(s) {', '.join(unknown)}; the hub's facets are {', '.join(FACETS)}"
        )
    if sort not in SORTS:
        raise IdentifierError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")


def search_adapters(
    q: str = "",
    *,
    sort: str = "recent",
    page: int = 1,
    per_page: int = 20,
    facets: bool = True,
    endpoint: str | None = None,
    token: str | bool | None = None,
    **filters: Any,
) -> SearchResult:
    """One page of the hub's faceted search (``q``: every word must occur; filters: see ``FACETS``)."""
    _check(filters, sort)
    with HubClient(resolve_settings(endpoint=endpoint, token=token)) as client:
        answer = client.search(q=q, sort=sort, page=page, per_page=per_page, facets=facets, **filters)
    return SearchResult(
        total=int(answer.get("total", 0)),
        page=int(answer.get("page", page)),
        pages=int(answer.get("pages", 0)),
        items=[AdapterSummary.from_json(item) for item in answer.get("items", [])],
        facets={
            k: [(v["value"], int(v["count"])) for v in vals]
            for k, vals in (answer.get("facets") or {}).items()
        },
    )


def list_adapters(
    q: str = "",
    *,
    limit: int | None = 100,
    sort: str = "recent",
    endpoint: str | None = None,
    token: str | bool | None = None,
    **filters: Any,
) -> list[AdapterSummary]:
    """Adapters on the hub matching ``q`` and the facet ``filters`` (``base_model=``, ``task=``, ``language=``,
    ``method=``, ...), at most ``limit`` (None: all), in ``sort`` order."""
    _check(filters, sort)
    out: list[AdapterSummary] = []
    page = 1
    with HubClient(resolve_settings(endpoint=endpoint, token=token)) as client:
        while True:
            per_page = 100 if limit is None else max(1, min(100, limit - len(out)))
            answer = client.search(q=q, sort=sort, page=page, per_page=per_page, facets=False, **filters)
            items = [AdapterSummary.from_json(i) for i in answer.get("items", [])]
            out += items
            if not items or (limit is not None and len(out) >= limit) or page >= int(answer.get("pages", 0)):
                return out[:limit] if limit is not None else out
            page += 1


def adapter_info(
    identifier: str,
    *,
    version: str | None = None,
    config: Any = None,
    model_name: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> dict[str, Any]:
    """What the hub knows about an adapter: the pinned repository and commit, its files with sizes and hashes,
    its card metadata and its validation status."""
    from .resolve import _config_arg, parse_identifier, pin
    from .cache import Cache

    settings = resolve_settings(endpoint=endpoint, token=token, offline=False)
    parsed = parse_identifier(identifier)
    if parsed.kind not in ("hub", "card"):
        raise IdentifierError(
            f"{identifier!r} is not a hub identifier (org/name[@rev], task/subtask[@org], @org/name)"
        )
    with HubClient(settings) as client:
        try:  # a legacy card has metadata only: shown as such (pin refuses it, as there is nothing to download)
            answer = client.resolve_identifier(
                identifier, model_name=model_name, config=_config_arg(config), version=version
            )
        except NotFoundError:
            answer = None  # pin gives the error, or finds a repository that is no indexed adapter
        if answer is not None and not answer.get("downloadable"):
            return _legacy_info(identifier, settings.endpoint, answer)
        pinned = pin(
            parsed,
            settings,
            Cache(settings.cache_dir),
            client,
            model_name=model_name,
            config=config,
            version=version,
        )
        info = client.model_info(pinned.repo_id, pinned.commit, blobs=True)
    files = []
    for sib in info.get("siblings", []):
        lfs = sib.get("lfs") or {}
        files.append(
            {
                "path": sib.get("rfilename"),
                "size": sib.get("size"),
                "sha256": lfs.get("sha256"),
                "git_oid": sib.get("blobId"),
            }
        )
    return {
        "identifier": identifier,
        "endpoint": settings.endpoint,
        "repo_id": pinned.repo_id,
        "commit": pinned.commit,
        "revision": pinned.revision,
        "url": f"{settings.endpoint}/{pinned.repo_id}",
        "card": info.get("cardData") or {},
        "tags": info.get("tags") or [],
        "library": info.get("library_name"),
        "validation": info.get("validation") or {},
        "files": files,
        "downloads": info.get("downloads"),
        "private": info.get("private"),
        "last_modified": info.get("lastModified"),
    }


def _legacy_info(identifier: str, endpoint: str, answer: dict) -> dict[str, Any]:
    """What the hub knows of a legacy AdapterHub card: metadata only, its weights are not hosted there."""
    return {
        "identifier": identifier,
        "endpoint": endpoint,
        "repo_id": answer.get("repo_id"),
        "source": "legacy",
        "commit": None,
        "revision": answer.get("version"),
        "url": f"{endpoint}/adapters/{answer.get('repo_id')}",
        "config_hash": answer.get("config_hash"),
        "method": answer.get("method"),
        "base_model": answer.get("base_model"),
        "archives": answer.get("files") or [],
        "note": answer.get("note"),
        "card": {"base_model": answer.get("base_model")},
        "validation": {},
        "files": [],
    }

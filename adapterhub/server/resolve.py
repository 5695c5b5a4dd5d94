"""Identifier resolution (``GET /api/adapters/resolve``): AdapterHub identifiers (``sentiment/sst-2@ukp``,
``@ukp/<name>``, ``org/name@rev``) with optional ``model_name``, ``config`` and ``version``, answered with one
pinned repository + commit (or legacy version). Ambiguity is a 409 and an unknown identifier a 404, both with
the candidates; there is never a fallback to another config or version."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Connection, and_, or_, select, text
from sqlalchemy.orm import Session, lazyload

from adapterhub.server.index_models import IndexEntry, IndexVersion, TaxonomySubtask
from adapterhub.server.models import Commit, Ref
from adapterhub.server.search_models import ResolveResponse
from adapterhub.server.search_query import Viewer, visible


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


@dataclass
class Identifier:
    """An identifier taken apart: ``@org/name`` (``card`` set), or ``head[@at]`` where ``head`` is
    ``org/name`` or ``task[/subtask]`` (``parts`` its one or two pieces)."""

    text: str
    card: str | None = None
    head: str = ""
    parts: tuple[str, ...] = ()
    at: str = ""


def parse_identifier(identifier: str) -> Identifier:
    ident = identifier.strip()
    if not ident:
        raise ResolveError(400, "empty identifier")
    m = re.fullmatch(r"@([^/@\s]+)/([^@\s]+)", ident)
    if m:
        return Identifier(ident, card=f"{m.group(1)}/{m.group(2)}")
    head, _, at = ident.partition("@")
    parts = tuple(head.split("/"))
    if len(parts) > 2 or not all(parts):
        raise ResolveError(
            400,
            f"malformed identifier {ident!r} (expected task/subtask[@org], @org/name or org/name[@revision])",
        )
    return Identifier(ident, head=head, parts=parts, at=at)


def _check_model(e: IndexEntry, model_name: str | None) -> None:
    if model_name and e.base_model != model_name:
        raise ResolveError(
            404,
            f"{e.full_name} is an adapter for {e.base_model or 'an unknown base model'}, not {model_name}",
            [_label(e)],
        )


def _entries(viewer: Viewer | None):
    """The select of the adapters ``viewer`` may see (versions: legacy cards only, loaded on demand)."""
    vis = visible(viewer)
    base = select(IndexEntry).options(lazyload(IndexEntry.versions))
    return base.where(IndexEntry.is_adapter.is_(True), *([vis] if vis is not None else []))


def _resolve_card(s: Session, ident: Identifier, base, model_name, version, chash) -> ResolveResponse:
    """``@org/name``: exactly that card or repository."""
    assert ident.card is not None
    e = s.scalar(base.where(IndexEntry.full_name == ident.card))
    if e is None:
        org = ident.card.partition("/")[0]
        near = s.scalars(base.where(IndexEntry.author == org).order_by(IndexEntry.full_name).limit(10))
        raise ResolveError(404, f"no adapter {ident.text!r}", [f"@{x.full_name}" for x in near])
    _check_model(e, model_name)
    return _pin(s, e, ident.text, version, chash)


def _is_task_match(e: IndexEntry, ident: Identifier) -> bool:
    parts = ident.parts
    named = (
        (e.task == parts[0] and e.subtask == parts[1]) if len(parts) == 2 else parts[0] in (e.task, e.subtask)
    )
    return named and (not ident.at or e.author == ident.at)


def _repo_and_task_entries(s: Session, ident: Identifier, base) -> tuple[IndexEntry | None, list[IndexEntry]]:
    """The repository ``org/name`` (only for a two-part head) and the adapters for task ``task[/subtask]`` (by
    ``@at`` if given) that the identifier names, in one query."""
    parts = ident.parts
    if len(parts) == 2:
        tconds = [IndexEntry.task == parts[0], IndexEntry.subtask == parts[1]]
    else:
        tconds = [or_(IndexEntry.task == parts[0], IndexEntry.subtask == parts[0])]
    if ident.at:
        tconds.append(IndexEntry.author == ident.at)
    match = or_(IndexEntry.full_name == ident.head, and_(*tconds)) if len(parts) == 2 else and_(*tconds)
    found = list(s.scalars(base.where(match).order_by(IndexEntry.full_name)))
    repo_entry = next((e for e in found if e.full_name == ident.head), None) if len(parts) == 2 else None
    return repo_entry, [e for e in found if _is_task_match(e, ident)]


def _no_task_match(s: Session, ident: Identifier) -> ResolveError:
    """The 404 for a task identifier that no adapter matches, with the taxonomy's near names."""
    near = []
    if len(ident.parts) == 2:
        task, subtask = ident.parts
        near = [
            f"{t}/{st}"
            for t, st in s.execute(
                select(TaxonomySubtask.task, TaxonomySubtask.name)
                .where(or_(TaxonomySubtask.task == task, TaxonomySubtask.name == subtask))
                .limit(20)
            )
        ]
    return ResolveError(404, f"no adapter matches {ident.text!r}", near)


def _pick_task_entry(
    ident: Identifier, entries: list[IndexEntry], model_name: str | None, chash: str | None
) -> IndexEntry:
    """The one adapter among a task's ``entries`` for ``model_name`` and config ``chash``; 404 if none, 409 with the
    candidates if several (never a fallback to another base model or config)."""
    candidates = entries
    if model_name:
        candidates = [e for e in candidates if e.base_model == model_name]
        if not candidates:
            raise ResolveError(
                404,
                f"no adapter for {ident.text!r} with model_name={model_name}; adapters exist for "
                "other base models",
                [_label(e) for e in entries],
            )
    if chash:
        with_config = [e for e in candidates if e.config_hash == chash]
        if not with_config:
            raise ResolveError(
                404,
                f"no adapter for {ident.text!r}"
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
            f"{ident.text!r} is ambiguous: {len(candidates)} adapters match"
            + (f"; pass {' and/or '.join(hint)} or use @org/name" if hint else "; use @org/name"),
            [_label(e) for e in candidates],
        )
    return candidates[0]


def resolve(
    s: Session,
    identifier: str,
    model_name: str | None = None,
    config: str | None = None,
    version: str | None = None,
    viewer: Viewer | None = None,
) -> ResolveResponse:
    """One pinned adapter for ``identifier``, in four steps: parse it; ``@org/name`` is that card; otherwise find
    the repository ``org/name`` and the adapters of task ``task[/subtask]`` it may also name (both: 409); a
    repository is pinned at ``@revision`` or ``version``, a task's adapters are narrowed to exactly one."""
    ident = parse_identifier(identifier)
    chash = config_hash_of(config) if config else None
    base = _entries(viewer)
    if ident.card is not None:
        return _resolve_card(s, ident, base, model_name, version, chash)
    repo_entry, task_entries = _repo_and_task_entries(s, ident, base)
    if repo_entry is not None and task_entries:
        raise ResolveError(
            409,
            f"{ident.text!r} names both the repository {ident.head} and adapters for task {ident.head}; use "
            f"@{ident.head} for the repository",
            [repo_entry.full_name] + [_label(e) for e in task_entries],
        )
    if repo_entry is not None:
        if version and ident.at and version != ident.at:
            raise ResolveError(
                400, f"two revisions given: {ident.at!r} in the identifier and version={version!r}"
            )
        _check_model(repo_entry, model_name)
        return _pin(s, repo_entry, ident.text, ident.at or version, chash)
    if not task_entries:
        raise _no_task_match(s, ident)
    return _pin(s, _pick_task_entry(ident, task_entries, model_name, chash), ident.text, version, chash)

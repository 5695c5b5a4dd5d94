"""From an adapter identifier to a verified local folder.

Identifier forms (``parse_identifier``):

* a local folder (a ``Path``, or a string naming an existing folder, or starting with ``/``, ``./``, ``~``);
* ``org/name`` with ``@revision`` (branch, tag or commit) or ``version=``: a hub repository;
* ``task/subtask@org``, ``task/subtask``, ``subtask@org`` and ``@org/name``: AdapterHub identifiers, resolved
  by the hub's ``/api/adapters/resolve`` with ``config=`` and the model's name (``model_name=``, else the
  model's own ``name_or_path`` when it looks like a hub id);
* an http(s) URL: of a ``.zip`` archive (optionally ``#sha256=<hex>`` or ``sha256=...``), of a hub
  repository page / folder (``{hub}/org/name``, ``{hub}/org/name/tree/{rev}/{subfolder}``), or of any other
  folder of files served over HTTP (``https://host/path/to/adapter/``: the AdapterHub file names are fetched).

Every answer is pinned to a commit before anything is downloaded; the download is verified (see
:mod:`adapterhub.client.download`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .archives import archive_folder, static_folder
from .cache import Cache, RepoCache, file_identity, read_json
from . import bundle
from .download import snapshot, worker_pool
from .errors import AmbiguousIdentifierError, HubClientError, IdentifierError, NotFoundError, OfflineError
from ..common.wire import COMMIT_RE, REPO_ID_RE
from .http import HubClient
from .settings import HubSettings, normalize_endpoint, read_saved_tokens, resolve_settings

_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_HUB_FORM = re.compile(rf"^(?P<head>{_PART}(?:/{_PART})?)(?:@(?P<at>[^\s@]+))?$")
_CARD_FORM = re.compile(rf"^@(?P<org>{_PART})/(?P<name>{_PART})$")


@dataclasses.dataclass(frozen=True)
class ParsedIdentifier:
    kind: str  # "local" | "hub" | "card" | "url"
    text: str
    head: str = ""  # "org/name", "task/subtask" or "task" ("" for local folders and URLs)
    at: str | None = None  # revision or org
    path: Path | None = None

    @property
    def two_part(self) -> bool:
        return self.kind == "hub" and "/" in self.head


# What a remembered resolution is filed under: identifier, model name, config, version.
ResolutionKey = tuple[str, Any, Any, Any]


@dataclasses.dataclass
class Pinned:
    """An identifier pinned to one commit of one repository on one hub."""

    endpoint: str
    repo_id: str
    commit: str
    revision: str  # what was asked for: a branch, tag or the commit itself
    info: dict | None = None
    via: str = "repo"  # "repo" (model info) | "resolve" (the hub's resolve API) | "bundle" | "cache"
    folder: Path | None = None  # the complete snapshot, when pinning already downloaded it (a bundle)
    resolution: str | None = None  # the remembered resolution this rests on (None: pinned by a commit id)

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.commit}"


def parse_identifier(identifier: Any) -> ParsedIdentifier:
    if isinstance(identifier, os.PathLike):
        return ParsedIdentifier("local", os.fspath(identifier), path=Path(identifier).expanduser())
    if not isinstance(identifier, str) or not identifier.strip():
        raise IdentifierError(f"adapter identifier must be a non-empty string or a path, not {identifier!r}")
    text = identifier.strip()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", text):
        if not text.lower().startswith(("http://", "https://")):
            raise IdentifierError(f"{text!r}: only http(s) URLs are supported")
        return ParsedIdentifier("url", text)
    local = Path(text).expanduser()
    if text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text or local.exists():
        return ParsedIdentifier("local", text, path=local)
    m = _CARD_FORM.match(text)
    if m:
        return ParsedIdentifier("card", text, head=f"{m['org']}/{m['name']}")
    m = _HUB_FORM.match(text)
    if m:
        return ParsedIdentifier("hub", text, head=m["head"], at=m["at"])
    raise IdentifierError(
        f"cannot read adapter identifier {text!r}: expected a local folder, 'org/name[@revision]', "
        "'task/subtask[@org]', '@org/name' or an http(s) URL (a path with more than one '/' must exist locally)"
    )


def _config_arg(config: Any) -> str | None:
    if config is None or isinstance(config, str):
        return config
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if isinstance(config, dict):
        return json.dumps(config, sort_keys=True)
    raise IdentifierError(
        f"config= must be a preset name, a dict or an AdapterConfig, not {type(config).__name__}"
    )


def _looks_like_hub_id(name: str | None) -> bool:
    return bool(name and REPO_ID_RE.match(name)) and not Path(name or "").expanduser().exists()


def _adapter_base_model(info: dict) -> str | None:
    adapter = (
        ((info.get("config") or {}).get("adapter") or {}) if isinstance(info.get("config"), dict) else {}
    )
    base = adapter.get("model_name") or adapter.get("base_model_name_or_path")
    if not base and isinstance(info.get("cardData"), dict):
        base = info["cardData"].get("base_model")
        base = base[0] if isinstance(base, list) and base else base
    return base if isinstance(base, str) else None


def _check_revision_args(parsed: ParsedIdentifier, version: str | None) -> str | None:
    if parsed.at and version and parsed.at != version:
        raise IdentifierError(
            f"{parsed.text!r}: two revisions given, {parsed.at!r} in the identifier and "
            f"version={version!r}; give one"
        )
    return parsed.at or version


def pin(
    parsed: ParsedIdentifier,
    settings: HubSettings,
    cache: Cache,
    client: HubClient | None,
    *,
    model_name: str | None = None,
    own_model_name: str | None = None,
    config: Any = None,
    version: str | None = None,
    fetch: bool = False,
    progress: bool | None = None,
) -> Pinned:
    """Pin a ``hub`` or ``card`` identifier to a commit (through the cache when offline). With ``fetch``, an
    identifier never resolved here is resolved by the hub's bundle API, which sends the files along (one
    request instead of three or more); ``Pinned.folder`` is then the downloaded snapshot.

    In order: a commit id whose snapshot is complete here; offline, what the cache remembers; a resolution
    remembered here, younger than ``ref_ttl``, whose snapshot is complete; the bundle (with ``fetch``); the
    hub's resolve API, and for a repository id it does not know as an adapter the repository itself."""
    endpoint = settings.endpoint
    used_model = model_name or (own_model_name if _looks_like_hub_id(own_model_name) else None)
    query = _Query(parsed, used_model, _config_arg(config), version)
    key = query.key

    pinned = _pin_cached_commit(query, endpoint, cache)
    if pinned is not None:
        return pinned
    if settings.offline or client is None:
        return _pin_offline(parsed, endpoint, cache, key, query.revision)
    held = _held_resolution(cache, endpoint, key)
    if held is not None and time.time() - float(held.get("resolved_at", 0)) < settings.ref_ttl:
        return _pin_held(held, endpoint, cache, key)
    pinned = None
    # Resolution and files in one request (the bundle), telling the hub which commits are complete here (the one
    # resolved last time, other cached commits of an ``org/name``) so that it sends no file of those: a
    # resolution older than the TTL is confirmed by one small answer. Not when a download of this repository was
    # interrupted: file by file, the partial files are resumed.
    if fetch and not query.two_revisions and not _interrupted(cache, endpoint, parsed):
        have = _cached_commits(cache, endpoint, parsed, held["commit"] if held is not None else None)
        pinned = _pin_by_bundle(query, settings, cache, client, progress, have)
    if pinned is None:
        pinned = _pin_by_resolve(query, endpoint, client, model_name)
    _remember(cache, endpoint, key, pinned)
    return pinned


@dataclasses.dataclass(frozen=True)
class _Query:
    """What ``pin`` asks the hub: the identifier, the model name it goes with, the config (a string) and the
    version argument."""

    parsed: ParsedIdentifier
    model_name: str | None
    config: str | None
    version: str | None

    @property
    def key(self) -> ResolutionKey:
        return (self.parsed.text, self.model_name, self.config, self.version)

    @property
    def revision(self) -> str | None:
        # "a/b@c" is a repository at revision c, or task a/subtask b by org c: the hub's resolve API decides
        return (self.parsed.at or self.version) if self.parsed.two_part else self.version

    @property
    def two_revisions(self) -> bool:
        """Both ``@rev`` and ``version=``: only the hub's resolve API can tell whether that is an error."""
        return bool(self.parsed.at and self.version)


def _pin_cached_commit(query: _Query, endpoint: str, cache: Cache) -> Pinned | None:
    """A commit id names immutable content: a complete snapshot in the cache needs no network at all."""
    parsed, revision = query.parsed, query.revision
    if parsed.two_part and revision and COMMIT_RE.match(revision) and not query.two_revisions:
        if cache.repo(endpoint, parsed.head).manifest(revision) is not None:
            return Pinned(endpoint, parsed.head, revision, revision, via="cache")
    return None


def _held_resolution(cache: Cache, endpoint: str, key: ResolutionKey) -> dict | None:
    """The resolution of ``key`` remembered here, if the snapshot it names is complete in the cache."""
    saved = cache.resolution(endpoint, *key)
    if saved is None or cache.repo(endpoint, saved["repo_id"]).manifest(saved["commit"]) is None:
        return None
    return saved


def _pin_held(held: dict, endpoint: str, cache: Cache, key: ResolutionKey) -> Pinned:
    """The resolution remembered here (a young one: pinned without asking the hub)."""
    return Pinned(
        endpoint,
        held["repo_id"],
        held["commit"],
        held.get("revision") or held["commit"],
        via="cache",
        resolution=cache.resolution_path(endpoint, *key),
    )


def _pin_by_resolve(query: _Query, endpoint: str, client: HubClient, model_name: str | None) -> Pinned:
    """Ask the hub's resolve API. For ``org/name[@rev]`` the file list is asked for at the same time (one round
    trip less; used only if the hub resolves the identifier to that very repository and commit), and a
    repository the hub does not know as an adapter is pinned through its model info."""
    parsed = query.parsed
    listing = (
        worker_pool().submit(client.tree_with_commit, parsed.head, query.revision or "main")
        if parsed.two_part and not query.two_revisions
        else None
    )
    try:
        answer = client.resolve_identifier(
            parsed.text, model_name=query.model_name, config=query.config, version=query.version
        )
    except NotFoundError as error:  # includes ambiguity (409) and unknown identifiers (404)
        if isinstance(error, AmbiguousIdentifierError) or not parsed.two_part:
            raise
        return _pin_repository(query, endpoint, client, model_name, error)
    if answer is not None:
        return _pinned_answer(parsed, endpoint, answer, listing)
    if parsed.two_part:
        return _pin_repository(query, endpoint, client, model_name, None)
    raise NotFoundError(
        f"{parsed.text!r} is an AdapterHub identifier, but the hub at {endpoint} has no "
        "resolve API (/api/adapters/resolve); use the repository id org/name instead"
    )


def _pinned_answer(parsed: ParsedIdentifier, endpoint: str, answer: dict, listing: Any) -> Pinned:
    """The resolve API's answer as a pin (with the file list, if ``listing`` got it for that very commit)."""
    if not answer.get("downloadable") or not answer.get("commit"):
        urls = [str(f["url"]) for f in answer.get("files") or [] if isinstance(f, dict) and f.get("url")]
        raise NotFoundError(
            f"{parsed.text!r} resolves to {answer.get('repo_id')} (version {answer.get('version')}), a legacy "
            f"AdapterHub card whose weights are not hosted on {endpoint}"
            + (f"; its archive was published at {', '.join(urls)}" if urls else "")
        )
    pinned = Pinned(
        endpoint,
        answer["repo_id"],
        answer["commit"],
        answer.get("version") or answer["commit"],
        via="resolve",
    )
    if listing is not None and answer["repo_id"] == parsed.head:
        try:
            listed_commit, files = listing.result()
        except (HubClientError, ValueError):  # e.g. no such repository, or no JSON: list it later
            listed_commit, files = None, []
        if listed_commit == pinned.commit:
            pinned.info = {"id": pinned.repo_id, "sha": pinned.commit, "files": files}
    return pinned


def _pin_repository(
    query: _Query,
    endpoint: str,
    client: HubClient,
    model_name: str | None,
    resolve_error: NotFoundError | None,
) -> Pinned:
    """``org/name[@rev]`` as a repository, through its model info. ``resolve_error``: why the resolve API did
    not resolve it (reported instead when it says more, or when the repository is for another model)."""
    parsed = query.parsed
    revision = _check_revision_args(parsed, query.version)
    try:
        info = client.model_info(parsed.head, revision or "main", blobs=True)
    except NotFoundError:
        if resolve_error is not None and resolve_error.candidates:
            raise resolve_error from None  # the hub knows similar adapters: say which
        raise
    base = _adapter_base_model(info)
    if model_name and base and base != model_name and resolve_error is not None:
        raise resolve_error
    return Pinned(endpoint, parsed.head, info["sha"], revision or "main", info=info)


def _remember(cache: Cache, endpoint: str, key: ResolutionKey, pinned: Pinned) -> None:
    cache.save_resolution(
        endpoint, *key, {"repo_id": pinned.repo_id, "commit": pinned.commit, "revision": pinned.revision}
    )
    pinned.resolution = cache.resolution_path(endpoint, *key)
    if pinned.revision != pinned.commit:
        cache.repo(endpoint, pinned.repo_id).set_ref(pinned.revision, pinned.commit)


def _cached_commits(cache: Cache, endpoint: str, parsed: ParsedIdentifier, last: str | None) -> list[str]:
    """Commits complete in the cache that ``parsed`` may resolve to: ``last``, the one it resolved to last time
    (if complete), and for a two-part identifier (maybe a repository ``org/name``) that repository's (at most 16)."""
    have = [last] if last else []
    if parsed.two_part and REPO_ID_RE.match(parsed.head):
        have += [c for c in cache.repo(endpoint, parsed.head).commits()[:16] if c not in have]
    return have


def _interrupted(cache: Cache, endpoint: str, parsed: ParsedIdentifier) -> bool:
    """Whether the cache holds partial downloads of the repository ``org/name`` that ``parsed`` may name."""
    if not parsed.two_part:
        return False
    blobs = cache.repo(endpoint, parsed.head).blobs
    return blobs.is_dir() and any(blobs.glob("*.incomplete"))


def _pin_by_bundle(
    query: _Query,
    settings: HubSettings,
    cache: Cache,
    client: HubClient,
    progress: bool | None,
    have: list[str],
) -> Pinned | None:
    """Resolve and download through the hub's bundle API; None when the hub has none or answers with an error
    (the resolve API then gives the reason, or finds a repository that is no indexed adapter)."""
    with client.bundle(
        query.parsed.text,
        model_name=query.model_name,
        config=query.config,
        version=query.version,
        max_file_size=bundle.MAX_FILE,
        have=have,
    ) as response:
        if response is None:
            return None
        manifest, folder = bundle.read_bundle(
            client,
            cache,
            settings.endpoint,
            response,
            label=query.parsed.text,
            progress=progress,
            full_check=settings.verify_full,
        )
    revision = (manifest.get("resolve") or {}).get("version") or manifest["commit"]
    return Pinned(
        settings.endpoint, manifest["repo_id"], manifest["commit"], revision, via="bundle", folder=folder
    )


def _pin_offline(
    parsed: ParsedIdentifier, endpoint: str, cache: Cache, key: ResolutionKey, revision: str | None
) -> Pinned:
    hint = "run once online (without ADAPTERHUB_OFFLINE=1) to resolve and download it"
    saved = cache.resolution(endpoint, *key)
    if saved:
        return Pinned(
            endpoint, saved["repo_id"], saved["commit"], saved.get("revision") or saved["commit"], via="cache"
        )
    if parsed.two_part and revision and COMMIT_RE.match(revision):
        return Pinned(
            endpoint, parsed.head, revision, revision, via="cache"
        )  # the snapshot says if it is there
    if parsed.two_part:
        rc = cache.repo(endpoint, parsed.head)
        commit = rc.ref(revision or "main")
        if commit:
            return Pinned(endpoint, parsed.head, commit, revision or "main", via="cache")
        cached = rc.commits()
        if cached:
            raise OfflineError(
                f"offline mode: revision {revision or 'main'!r} of {parsed.head} from {endpoint} was never looked "
                f"up, so its commit is unknown; cached: {', '.join(f'{r}={c[:12]}' for r, c in rc.refs().items())} "
                f"(commits {', '.join(c[:12] for c in cached)}); pass one of them as version=, or {hint}"
            )
    raise OfflineError(
        f"offline mode: {parsed.text!r} (model_name={key[1]}, config={key[2]}, version={key[3]}) "
        f"was never resolved against {endpoint}, and nothing for it is in the cache ({cache.root}); "
        f"{hint}"
    )


def _hub_url(url: str, settings: HubSettings) -> tuple[str, str, str | None, str] | None:
    """(endpoint, repo_id, revision, subfolder) of a hub URL ``{hub}/org/name`` or
    ``{hub}/org/name/tree|resolve|blob/{rev}[/{sub}]``; None for any other URL (a plain folder of files)."""
    configured = settings.endpoint
    if url.rstrip("/").startswith(configured + "/"):
        endpoint, rest = configured, url.rstrip("/")[len(configured) :]
    else:
        parts = urlsplit(url)
        endpoint, rest = normalize_endpoint(f"{parts.scheme}://{parts.netloc}"), parts.path
    segs = [unquote(s) for s in rest.split("?")[0].split("#")[0].strip("/").split("/") if s]
    if len(segs) < 2 or not REPO_ID_RE.match(f"{segs[0]}/{segs[1]}"):
        return None
    if len(segs) == 2:
        return endpoint, f"{segs[0]}/{segs[1]}", None, ""
    if segs[2] not in ("tree", "resolve", "blob") or len(segs) < 4:
        return None
    if any(p in ("..", ".") for p in segs[4:]):
        raise IdentifierError(f"{url!r}: '..' is not allowed in the folder")
    return endpoint, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:])


def adapter_folder(
    identifier: Any,
    *,
    version: str | None = None,
    config: Any = None,
    model_name: str | None = None,
    own_model_name: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    progress: bool | None = None,
    **unknown: Any,
) -> Path:
    """The verified local folder of the adapter ``identifier`` (see the module docstring)."""
    if unknown:
        raise TypeError(f"unknown option(s) for loading {identifier!r}: {', '.join(sorted(unknown))}")
    recent_key = _recent_key(
        identifier, version, config, model_name, own_model_name, endpoint, token, offline, cache_dir
    )
    folder = _recent_folder(recent_key)
    if folder is not None:
        return folder
    parsed = parse_identifier(identifier)
    if parsed.path is not None:  # a local folder
        return parsed.path
    settings = resolve_settings(endpoint=endpoint, token=token, offline=offline, cache_dir=cache_dir)
    cache = Cache(settings.cache_dir)
    if parsed.kind == "url":
        path = urlsplit(parsed.text).path.lower()
        if path.endswith(".zip"):
            return archive_folder(parsed.text, settings, cache, sha256=sha256, progress=progress)
        hub_url = _hub_url(parsed.text, settings)
        if hub_url is None:
            return static_folder(parsed.text, settings, cache)
        ep, repo_id, url_rev, sub = hub_url
        if ep != settings.endpoint:  # a token goes only to the hub it was given or saved for
            explicit = token if isinstance(token, str) else None
            settings = dataclasses.replace(
                settings, endpoint=ep, token=explicit or read_saved_tokens().get(ep)
            )
        url, parsed = (
            parsed.text,
            ParsedIdentifier("hub", f"{repo_id}@{url_rev}" if url_rev else repo_id, head=repo_id, at=url_rev),
        )
    else:
        url, sub = None, ""
    client = None if settings.offline else HubClient.shared(settings)
    try:
        pinned = pin(
            parsed,
            settings,
            cache,
            client,
            model_name=model_name,
            own_model_name=own_model_name,
            config=config,
            version=version,
            fetch=True,
            progress=progress,
        )
    except (NotFoundError, OfflineError) as error:
        # "https://host/a/b/" is a hub repository or a plain folder of files: if the server answered like no hub
        # does (a 404 without X-Error-Code), or offline, it is taken as a folder
        plain = isinstance(error, OfflineError) or error.code is None
        if url is not None and parsed.at is None and plain:
            return static_folder(url, settings, cache)
        raise
    folder = pinned.folder or snapshot(
        client,
        cache,
        pinned.endpoint,
        pinned.repo_id,
        pinned.commit,
        info=pinned.info,
        offline=settings.offline,
        progress=progress,
        full_check=settings.verify_full,
    )
    if sub:
        folder = folder / sub
        if not folder.is_dir():
            raise NotFoundError(f"{parsed.text}: no folder {sub!r} in {pinned.label}")
    elif url is None and not settings.offline:
        _remember_recent(recent_key, cache, settings, pinned)
    return folder


# ------------------------------------------------------------------------------- repeated loads in a process
@dataclasses.dataclass(frozen=True)
class _Recent:
    """A hub identifier this process pinned and found complete in the cache, and what that answer rests on."""

    rc: RepoCache
    commit: str
    resolution: str | None  # the remembered resolution file (None: a commit id, which never moves)
    identity: tuple | None  # its identity on disk then
    expires: float  # when ADAPTERHUB_REF_TTL asks the hub again
    full_check: bool


_RECENT: dict[tuple, _Recent] = {}
_RECENT_ENV = (
    "ADAPTERHUB_ENDPOINT",
    "ADAPTERHUB_OFFLINE",
    "ADAPTERHUB_CACHE",
    "XDG_CACHE_HOME",
    "HOME",
    "ADAPTERHUB_REF_TTL",
    "ADAPTERHUB_VERIFY",
    "ADAPTERHUB_TOKEN",
    "ADAPTERHUB_HOME",
)


def _recent_key(
    identifier, version, config, model_name, own_model_name, endpoint, token, offline, cache_dir
) -> tuple | None:
    if not isinstance(identifier, str) or not (config is None or isinstance(config, str)) or offline:
        return None
    return (
        identifier,
        version,
        config,
        model_name,
        own_model_name,
        endpoint,
        token,
        os.fspath(cache_dir) if cache_dir is not None else None,
        *map(os.environ.get, _RECENT_ENV),
    )


def _recent_folder(key: tuple | None) -> Path | None:
    """The answer of the same load earlier in this process, if nothing it rested on changed: the remembered
    resolution is the same file and younger than ADAPTERHUB_REF_TTL, and the snapshot checks out (the same
    check as any cached load). Saves parsing, settings and pinning on repeated loads; anything else goes the
    usual way."""
    recent = _RECENT.get(key) if key is not None else None
    if key is None or recent is None:
        return None
    if recent.resolution is not None and (
        time.time() >= recent.expires or file_identity(recent.resolution) != recent.identity
    ):
        _RECENT.pop(key, None)
        return None
    if recent.rc.check_snapshot(recent.commit, full=recent.full_check) != []:
        _RECENT.pop(key, None)
        return None
    return recent.rc.snapshot_dir(recent.commit)


def _remember_recent(key: tuple | None, cache: Cache, settings: HubSettings, pinned: Pinned) -> None:
    if key is None:
        return
    rc = cache.repo(pinned.endpoint, pinned.repo_id)
    if pinned.resolution is None:
        if pinned.revision != pinned.commit:
            return  # pinned through the model info without a remembered resolution: ask again next time
        recent = _Recent(rc, pinned.commit, None, None, float("inf"), settings.verify_full)
    else:
        saved = read_json(pinned.resolution)
        if not isinstance(saved, dict) or saved.get("commit") != pinned.commit:
            return
        recent = _Recent(
            rc,
            pinned.commit,
            pinned.resolution,
            file_identity(pinned.resolution),
            float(saved.get("resolved_at", 0)) + settings.ref_ttl,
            settings.verify_full,
        )
    if len(_RECENT) >= 1024:
        _RECENT.clear()
    _RECENT[key] = recent


def resolve(
    identifier: str,
    *,
    version: str | None = None,
    config: Any = None,
    model_name: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Pinned:
    """Pin a hub identifier to a repository and commit without downloading anything."""
    parsed = parse_identifier(identifier)
    if parsed.kind not in ("hub", "card"):
        raise IdentifierError(
            f"{identifier!r} is not a hub identifier (org/name[@rev], task/subtask[@org], @org/name)"
        )
    settings = resolve_settings(endpoint=endpoint, token=token, offline=offline, cache_dir=cache_dir)
    with contextlib.nullcontext() if settings.offline else HubClient(settings) as client:
        return pin(
            parsed,
            settings,
            Cache(settings.cache_dir),
            client,
            model_name=model_name,
            config=config,
            version=version,
        )

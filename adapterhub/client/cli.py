"""``adapterhub search / info / pull / push / login / token / cache``: the hub client on the command line."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..common.sizes import human_size
from .errors import HubClientError

console = Console()
err = Console(stderr=True)
cache_app = typer.Typer(help="Inspect and clean the local adapter cache.", no_args_is_help=True)

EndpointOpt = typer.Option(
    None, "--endpoint", help="Hub URL (default: $ADAPTERHUB_ENDPOINT or http://127.0.0.1:8000)."
)
TokenOpt = typer.Option(
    None, "--token", help="Access token (default: $ADAPTERHUB_TOKEN or the one saved by login)."
)


def _fail(error: Exception) -> None:
    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    raise typer.Exit(1)


def _size(size: int | None) -> str:
    return "-" if size is None else human_size(size)


def search(
    query: str = typer.Argument("", help="Words that must all occur (name, description, model, task, ...)."),
    base_model: Optional[str] = typer.Option(None, help="Base model id, e.g. bert-base-uncased."),
    model_type: Optional[str] = typer.Option(None, help="Model type, e.g. bert."),
    task: Optional[str] = typer.Option(None),
    subtask: Optional[str] = typer.Option(None),
    language: Optional[str] = typer.Option(None),
    method: Optional[str] = typer.Option(None),
    head: Optional[str] = typer.Option(None),
    license: Optional[str] = typer.Option(None),
    author: Optional[str] = typer.Option(None),
    source: Optional[str] = typer.Option(
        None, help="hub (downloadable) or legacy (imported AdapterHub cards)."
    ),
    sort: str = typer.Option("recent", help="recent, downloads, score or name."),
    limit: int = typer.Option(20, help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Search the hub's adapters by text and facets."""
    from .search import search_adapters

    filters: dict[str, Any] = {
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
            source=source,
        ).items()
        if v
    }
    try:
        result = search_adapters(
            query, sort=sort, per_page=max(1, min(limit, 100)), endpoint=endpoint, token=token, **filters
        )
    except HubClientError as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps({"total": result.total, "items": [vars(i) for i in result.items]}, indent=2))
        return
    table = Table(title=f"{result.total} adapter(s)" + (f" for {query!r}" if query else ""), show_lines=False)
    for column in ("id", "task/subtask", "base model", "method", "lang", "validation", "downloads"):
        table.add_column(column, overflow="fold")
    for item in result.items:
        table.add_row(
            item.id,
            "/".join(x for x in (item.task, item.subtask) if x) or "-",
            item.base_model or "-",
            item.method or "-",
            item.language or "-",
            item.validation or "-",
            str(item.downloads),
        )
    console.print(table)
    facets = {k: v for k, v in result.facets.items() if v and k not in filters}
    for name in ("task", "base_model", "method", "language"):
        if facets.get(name):
            shown = ", ".join(f"{v} ({c})" for v, c in facets[name][:8])
            console.print(f"[dim]{name}:[/] {shown}", highlight=False)


def info(
    identifier: str = typer.Argument(..., help="org/name[@revision], task/subtask[@org] or @org/name."),
    version: Optional[str] = typer.Option(None),
    config: Optional[str] = typer.Option(None),
    model_name: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Show what the hub knows about an adapter: commit, card, validation, files with sha256."""
    from .search import adapter_info

    try:
        data = adapter_info(
            identifier, version=version, config=config, model_name=model_name, endpoint=endpoint, token=token
        )
    except HubClientError as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if data.get("source") == "legacy":  # whole lines (soft_wrap): addresses stay copyable
        console.print(
            f"[bold]{data['repo_id']}[/] version {data['revision']}: a legacy AdapterHub card (metadata "
            "only, the weights are not hosted on this hub)",
            highlight=False,
            soft_wrap=True,
        )
        for key in ("base_model", "method", "config_hash", "note"):
            if data.get(key):
                console.print(f"{key}: {data[key]}", highlight=False, soft_wrap=True)
        for archive in data["archives"]:
            console.print(
                f"archive: {archive.get('url')}"
                + (f" (sha1 {archive['sha1']})" if archive.get("sha1") else ""),
                highlight=False,
                soft_wrap=True,
            )
        return
    console.print(f"[bold]{data['repo_id']}[/] @ {data['commit']} ({data['revision']})", highlight=False)
    console.print(f"page: {data['url']}", highlight=False)
    validation = data.get("validation") or {}
    console.print(
        f"validation: {validation.get('status', 'unknown')}"
        + "".join(f"\n  - {e}" for e in validation.get("errors") or []),
        highlight=False,
    )
    card = data.get("card") or {}
    for key in ("base_model", "task", "subtask", "language", "datasets", "license", "metrics", "tags"):
        if card.get(key) is not None:
            console.print(f"{key}: {card[key]}", highlight=False)
    table = Table(title="files")
    for column in ("path", "size", "sha256 / git blob id"):
        table.add_column(column, overflow="fold")
    for f in data["files"]:
        table.add_row(f["path"], _size(f["size"]), f["sha256"] or f"git {f['git_oid']}")
    console.print(table)


def pull(
    identifier: str = typer.Argument(
        ..., help="org/name[@revision], task/subtask[@org], @org/name or a URL."
    ),
    version: Optional[str] = typer.Option(None),
    config: Optional[str] = typer.Option(None),
    model_name: Optional[str] = typer.Option(None),
    to: Optional[Path] = typer.Option(None, "--to", help="Also copy the files into this folder."),
    offline: bool = typer.Option(False, help="Use the cache only."),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Download an adapter into the cache (verified against the hub's sha256) and print its folder."""
    from .resolve import adapter_folder

    try:
        folder = adapter_folder(
            identifier,
            version=version,
            config=config,
            model_name=model_name,
            endpoint=endpoint,
            token=token,
            offline=offline or None,
            progress=True,
        )
    except HubClientError as error:
        _fail(error)
    if to is not None:
        if to.exists() and any(to.iterdir()):
            _fail(HubClientError(f"--to {to} exists and is not empty"))
        shutil.copytree(folder, to, symlinks=False)
        folder = to
    typer.echo(str(folder))


def _parse_metrics(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--metric {item!r}: expected name=number, e.g. accuracy=0.91") from None
        if not sep or not name.strip():
            raise typer.BadParameter(f"--metric {item!r}: expected name=number")
    return out


def push(
    folder: Path = typer.Argument(
        ..., help="A saved adapter folder (adapter_config.json, adapter.safetensors, ...)."
    ),
    repo_id: str = typer.Argument(..., help="Target repository, org/name (created if missing)."),
    base_model: Optional[str] = typer.Option(
        None, help="Hub id of the base model (default: model_name in the config)."
    ),
    task: Optional[str] = typer.Option(None),
    subtask: Optional[str] = typer.Option(None),
    language: list[str] = typer.Option([], help="Language code (repeatable)."),
    dataset: list[str] = typer.Option([], help="Dataset (repeatable)."),
    metric: list[str] = typer.Option([], help="name=value (repeatable), e.g. accuracy=0.91."),
    license: Optional[str] = typer.Option(None),
    tag: list[str] = typer.Option([], "--card-tag", help="Card tag."),
    private: bool = typer.Option(False, help="Create the repository as private."),
    version_tag: Optional[str] = typer.Option(None, "--tag", help="Also tag the new commit (e.g. v1)."),
    wait: bool = typer.Option(True, help="Wait for the hub's validation result."),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Push a saved adapter folder with a model card (kept from the folder's README.md if it has one)."""
    from .push import card_text, push_folder, rename_base

    try:
        config_path = folder / "adapter_config.json"
        header = json.loads(config_path.read_text()) if config_path.is_file() else {}
        base = base_model or header.get("model_name") or header.get("base_model_name_or_path")
        card = None
        if not (folder / "README.md").is_file() or any(
            (task, subtask, language, dataset, metric, license, tag)
        ):
            if not base:
                raise typer.BadParameter("the adapter config names no base model: pass --base-model org/name")
            method = (
                (header.get("config") or {}).get("architecture")
                if isinstance(header.get("config"), dict)
                else None
            )
            card = card_text(
                repo_id,
                base_model=base,
                method=method or header.get("peft_type"),
                adapter_name=header.get("name"),
                task=task,
                subtask=subtask,
                language=language or None,
                dataset=dataset or None,
                metrics=_parse_metrics(metric) or None,
                license=license,
                tags=tag or None,
                endpoint=endpoint,
            )
        with tempfile.TemporaryDirectory(prefix="adapterhub-push-") as tmp:
            if base_model and header.get("model_name") not in (None, base_model):
                # e.g. saved from a model loaded from a local folder: the hub needs the base model's hub id
                shutil.copytree(folder, Path(tmp) / "adapter")
                folder = Path(tmp) / "adapter"
                rename_base(folder, base_model)
            result = push_folder(
                folder,
                repo_id,
                endpoint=endpoint,
                token=token,
                private=private,
                card=card,
                tag=version_tag,
                wait_for_validation=wait,
                progress=True,
            )
    except HubClientError as error:
        _fail(error)
    console.print(
        f"pushed [bold]{result.repo_id}[/] @ {result.commit}: validation {result.validation}", highlight=False
    )
    console.print(f"page: {result.url}", highlight=False)


def login(
    token: Optional[str] = typer.Option(None, "--token", help="The token (asked for when missing)."),
    endpoint: Optional[str] = EndpointOpt,
) -> None:
    """Check a token with the hub and save it for that hub ($ADAPTERHUB_HOME/tokens.json, owner-only)."""
    from . import login as do_login
    from .settings import resolve_settings, token_file

    token = token or typer.prompt("token", hide_input=True)
    try:
        who = do_login(token, endpoint)
    except HubClientError as error:
        _fail(error)
    ep = resolve_settings(endpoint=endpoint, token=False, offline=False).endpoint
    scope = ((who.get("auth") or {}).get("accessToken") or {}).get("role") or "?"
    console.print(
        f"logged in to {ep} as [bold]{who.get('name')}[/] (token scope: {scope}); saved in {token_file()}",
        highlight=False,
    )


token_app = typer.Typer(help="List, create and revoke your access tokens on the hub.", no_args_is_help=True)


def _token_client(endpoint: Optional[str], token: Optional[str]):
    from .http import HubClient
    from .settings import resolve_settings

    return HubClient(resolve_settings(endpoint=endpoint, token=token, offline=False))


@token_app.command("list")
def token_list(
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Your tokens on the hub (id, name, scope, created, state); the one in use is marked."""
    try:
        with _token_client(endpoint, token) as client:
            rows = client.list_tokens()
    except HubClientError as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="access tokens")
    for column in ("id", "name", "scope", "created", "state"):
        table.add_column(column, overflow="fold")
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        table.add_row(
            str(r["id"]), r["name"], r["scope"], r["createdAt"][:10], state + (" (this one)" * r["current"])
        )
    console.print(table)


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="A name to tell it apart, e.g. laptop or ci."),
    scope: str = typer.Option("read", help="read or write."),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Make a new token (needs a write token) and print it: it is shown only this once."""
    if scope not in ("read", "write"):
        _fail(HubClientError(f"--scope must be read or write, not {scope!r}"))
    try:
        with _token_client(endpoint, token) as client:
            made = client.create_token(name, scope)
    except HubClientError as error:
        _fail(error)
    err.print(f"token {made['id']} ({made['name']}, {made['scope']}): copy it now, it is not shown again")
    typer.echo(made["token"])


@token_app.command("revoke")
def token_revoke(
    token_id: int = typer.Argument(..., help="The token's id (from `adapterhub token list`)."),
    endpoint: Optional[str] = EndpointOpt,
    token: Optional[str] = TokenOpt,
) -> None:
    """Revoke a token: it stops working at once, also for web sessions logged in with it."""
    try:
        with _token_client(endpoint, token) as client:
            gone = client.revoke_token(token_id)
    except HubClientError as error:
        _fail(error)
    console.print(f"revoked token {gone['id']} ({gone['name']}, {gone['scope']})", highlight=False)


def _cache(cache_dir: Optional[Path]):
    from .cache import Cache
    from .settings import resolve_settings

    return Cache(resolve_settings(cache_dir=cache_dir, token=False).cache_dir)


CacheDirOpt = typer.Option(
    None, "--cache-dir", help="Cache folder (default: $ADAPTERHUB_CACHE or ~/.cache/adapterhub)."
)


@cache_app.command("ls")
def cache_ls(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """List cached snapshots: hub, repository, commit, refs, files, size, last use."""
    cache = _cache(cache_dir)
    rows = cache.entries()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"adapter cache: {cache.root}")
    for column in ("hub", "repository", "commit", "refs", "files", "size", "last used"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["endpoint"],
            r["repo_id"],
            (r["commit"] or "-")[:12],
            ", ".join(r["refs"]),
            str(r["files"]),
            _size(r["size"]),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])),
        )
    console.print(table)
    console.print(
        f"{len([r for r in rows if r['commit']])} snapshot(s), {_size(sum(r['size'] for r in rows))}",
        highlight=False,
    )


@cache_app.command("rm")
def cache_rm(
    target: str = typer.Argument(..., help="org/name (all commits) or org/name@<commit or prefix>."),
    endpoint: Optional[str] = typer.Option(
        None, "--endpoint", help="Only from this hub (default: every hub)."
    ),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Remove a repository (or one commit of it) from the cache."""
    repo_id, _, commit = target.partition("@")
    n = _cache(cache_dir).remove(repo_id, commit or None, endpoint)
    if n == 0:
        _fail(HubClientError(f"nothing cached for {target}"))
    console.print(f"removed {n} snapshot(s) of {repo_id}", highlight=False)


@cache_app.command("prune")
def cache_prune(
    older_than_days: Optional[float] = typer.Option(
        None, help="Also drop snapshots unused for this many days."
    ),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Drop superseded snapshots (no branch or tag points at them any more), unused blobs and stale partial
    downloads."""
    stats = _cache(cache_dir).prune(older_than_days)
    console.print(
        f"pruned {stats['snapshots']} snapshot(s), {stats['blobs']} file(s), {_size(stats['bytes'])}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the hub client's commands to the ``adapterhub`` command line."""
    for name, function in (
        ("search", search),
        ("info", info),
        ("pull", pull),
        ("push", push),
        ("login", login),
    ):
        app.command(name)(function)
    app.add_typer(cache_app, name="cache")
    app.add_typer(token_app, name="token")

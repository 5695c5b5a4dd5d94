"""``adapterhub serve``: run the hub (and create users, organisations and tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from adapterhub.server.settings import Settings


def serve(
    data_dir: Path = typer.Option(
        Path(".adapterhub/hub"), help="Folder for the SQLite file, blobs and temporary files."
    ),
    database_url: str = typer.Option(
        "", help="SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host/db (default: SQLite in --data-dir)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(
        1, help="Server processes (several need a shared --database-url, e.g. PostgreSQL)."
    ),
    public_url: str = typer.Option(
        "", help="Base URL clients use (default: from each request's Host header)."
    ),
    blob_store: str = typer.Option(
        "",
        help="Where blobs live: s3://BUCKET/PREFIX, the prefix optional (AWS credentials from the standard "
        "variables and files), default <data-dir>/blobs.",
    ),
    s3_endpoint_url: str = typer.Option(
        "", help="An S3-compatible server, e.g. http://minio:9000 (default: AWS)."
    ),
    blob_redirect: Optional[bool] = typer.Option(
        None,
        "--blob-redirect/--no-blob-redirect",
        help="Answer downloads of files from 1 MiB on with a short-lived presigned redirect to the S3 store.",
    ),
    max_file_size: Optional[int] = typer.Option(None, help="Largest accepted file, in bytes."),
    validation_wait: Optional[float] = typer.Option(None, help="Seconds an upload waits for its load check."),
    validation_queue: Optional[bool] = typer.Option(
        None,
        "--validation-queue/--no-validation-queue",
        help="Leave load checks to `adapterhub worker` processes: uploads are stored at once, validation pending.",
    ),
    create_user: Optional[str] = typer.Option(
        None, "--create-user", help="Create this user (if missing), print a token, and exit."
    ),
    create_org: Optional[str] = typer.Option(
        None, "--create-org", help="Create this organisation and exit (with --member: add members)."
    ),
    member: list[str] = typer.Option([], "--member", help="With --create-org: a user to add (role write)."),
    admin: bool = typer.Option(False, help="With --create-user: make the user an administrator."),
    scope: str = typer.Option("write", help="With --create-user: token scope, read or write."),
    gc: bool = typer.Option(
        False,
        "--gc",
        help="Remove blobs that no commit uses and staging folders of killed uploads (older than an hour), and exit.",
    ),
) -> None:
    """Start the adapter hub server (HF-compatible API on http://HOST:PORT; point HF_ENDPOINT at it)."""
    settings = Settings.from_env(
        data_dir=data_dir, database_url=database_url or None, public_url=public_url or None,
        max_file_size=max_file_size, validation_wait=validation_wait, blob_store=blob_store or None,
        s3_endpoint_url=s3_endpoint_url or None, blob_redirect=blob_redirect, validation_queue=validation_queue,
    )  # fmt: skip
    _check_store(settings)
    if create_user or create_org:
        _admin(settings, create_user, create_org, member, admin, scope)
        return
    if gc:
        from adapterhub.server.hub import Hub
        from adapterhub.server.repos import collect_garbage

        hub = Hub(settings)
        rows, files, staged = collect_garbage(hub)
        hub.close()
        typer.echo(f"removed {rows} unused blobs, {files} files, {staged} staging folders of killed uploads")
        return
    import os

    import uvicorn

    if workers > 1 and not settings.database_url:
        raise typer.BadParameter("several workers need a shared database: pass --database-url (PostgreSQL)")
    from adapterhub.server.hub import Hub

    Hub(settings).close()  # migrate once before the workers start
    for key, value in vars(settings).items():
        os.environ[f"ADAPTERHUB_{key.upper()}"] = str(value)
    typer.echo(
        f"adapterhub: serving on http://{host}:{port} (data: {settings.data_dir}, db: {_redact(settings.db_url)})"
    )
    uvicorn.run(
        "adapterhub.server.cli:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )  # the app logs each request after its answer (HubApp)


def worker(
    data_dir: Path = typer.Option(
        Path(".adapterhub/hub"), help="Folder for temporary files (and a local store)."
    ),
    database_url: str = typer.Option("", help="The hub's database (as for adapterhub serve)."),
    blob_store: str = typer.Option(
        "", help="The hub's blob store, s3://BUCKET/PREFIX (as for adapterhub serve)."
    ),
    s3_endpoint_url: str = typer.Option("", help="An S3-compatible server (as for adapterhub serve)."),
    lease: Optional[float] = typer.Option(
        None, help="Seconds a claim lasts without a heartbeat; then another worker takes the validation over."
    ),
    poll: float = typer.Option(1.0, help="Seconds between looks at an empty queue."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop when no validation is waiting."),
) -> None:
    """Run validations (the load check of uploaded adapters) for hubs served with --validation-queue."""
    import logging
    import signal

    from adapterhub.server import queue
    from adapterhub.server.hub import Hub, load_extensions

    settings = Settings.from_env(
        data_dir=data_dir, database_url=database_url or None, blob_store=blob_store or None,
        s3_endpoint_url=s3_endpoint_url or None, validation_lease=lease,
    )  # fmt: skip
    _check_store(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit)  # unwinds: the validation in hand is given back
    hub = Hub(settings)
    load_extensions(hub)  # the search index's post-validation hook
    me = queue.worker_id()
    typer.echo(f"adapterhub worker {me}: db {_redact(settings.db_url)}", err=True)
    try:
        done = queue.run_worker(hub, me, poll=poll, until_idle=until_idle)
        typer.echo(f"ran {done} validations", err=True)
    finally:
        hub.close()


def _exit(signum, frame) -> None:
    raise SystemExit(0)


def _check_store(settings: Settings) -> None:
    from adapterhub.server.storage import parse_blob_store

    try:
        kind = parse_blob_store(settings.blob_store)[0]
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--blob-store") from None
    if settings.blob_redirect and kind != "s3":
        raise typer.BadParameter("--blob-redirect needs an s3:// --blob-store", param_hint="--blob-redirect")


def app_from_env():
    from adapterhub.server.app import create_app

    import logging
    import sys

    from uvicorn.logging import AccessFormatter

    from adapterhub.server.app import ACCESS_LOG

    if not ACCESS_LOG.handlers:  # uvicorn's access-log lines, written by the app after each answer
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s')
        )
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.setLevel(logging.INFO)
        ACCESS_LOG.propagate = False
    app = create_app(Settings.from_env())
    app.access_log = True
    return app


def _admin(
    settings: Settings, user: str | None, org: str | None, members: list[str], admin: bool, scope: str
) -> None:
    from sqlalchemy import select

    from adapterhub.server import auth
    from adapterhub.server.db import Database
    from adapterhub.server.migrate import upgrade
    from adapterhub.server.models import Account

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    upgrade(db.engine)
    with db.session() as s:
        if user:
            acc = auth.get_or_create_user(s, user, is_admin=admin)
            token = auth.create_token(s, acc, scope=scope, name="cli")
            typer.echo(token)
        if org:
            o = s.scalar(select(Account).where(Account.name == org)) or auth.create_account(
                s, org, kind="org"
            )
            for m in members:
                u = s.scalar(select(Account).where(Account.name == m, Account.kind == "user"))
                if u is None:
                    raise typer.BadParameter(f"no user {m!r}")
                auth.add_member(s, o, u, "write")
            typer.echo(f"organisation {o.name}: members {', '.join(members) or '(none added)'}", err=True)
    db.dispose()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url

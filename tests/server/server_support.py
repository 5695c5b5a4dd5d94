"""Helpers shared by the hub server tests (imported by name: a module called ``conftest`` is ambiguous when
several test folders have one)."""

from __future__ import annotations

import threading


def start_server(app) -> tuple[str, object, threading.Thread]:
    """The hub app served in a thread (as the quickstart's embedded hub): (URL, uvicorn server, thread)."""
    from adapterhub.server.inprocess import serve_in_thread

    running = serve_in_thread(app)
    return running.url, running.server, running.thread


def snapshot(hub, data_dir) -> tuple[dict, dict]:
    """Everything a refused request must leave as it was: every row of every table, and every file under the
    data dir (path -> size) except the SQLite database's own files."""
    from pathlib import Path

    from sqlalchemy import select

    from adapterhub.server import index_models, models  # noqa: F401  (their tables)
    from adapterhub.server.db import Base

    rows = {}
    with hub.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = sorted(map(repr, conn.execute(select(table)).all()))
    root = Path(data_dir)
    files = {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if not p.name.startswith("hub.sqlite") and (p.is_file() or not any(p.iterdir()))
    }
    return rows, files


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of a form page, for an ``httpx.Client`` (which keeps the ``ah_csrf`` cookie it gets)."""
    import re

    r = client.get(path)
    m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    if m is None:
        raise AssertionError(f"no CSRF field on {path} ({r.status_code})")
    return m.group(1)

"""Helpers shared by the hub server tests (imported by name: a module called ``conftest`` is ambiguous when
several test folders have one)."""

from __future__ import annotations

import socket
import threading
import time


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


def start_serve(args: list[str], env: dict[str, str] | None = None, stdout=None) -> tuple[str, object]:
    """``adapterhub serve`` in a child process on a free loopback port (its own module state, as a separate
    machine would have): (URL, process). The caller stops the process. ``stdout``: a file for the server's
    standard output (its access log); discarded by default."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the server runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapterhub.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"adapterhub serve exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/models", timeout=2).status_code == 200:
                return url, proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("adapterhub serve did not start")


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of a form page, for an ``httpx.Client`` (which keeps the ``ah_csrf`` cookie it gets)."""
    import re

    r = client.get(path)
    m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    if m is None:
        raise AssertionError(f"no CSRF field on {path} ({r.status_code})")
    return m.group(1)

"""Helpers for the hub benchmarks: start `adapterhub serve` as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# the serve command itself (adapterhub.server.cli.serve), without the rest of the `adapterhub` CLI
CLI = [sys.executable, "-c", "import typer; from adapterhub.server.cli import serve; typer.run(serve)"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def plain_cli(names) -> list[str]:
    """The serve command with the hub's speed tricks ``names`` switched off in the server process (``_plain``)."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import _plain; _plain.serve_plain({list(names)!r})"
    return [sys.executable, "-c", code]


@contextlib.contextmanager
def hub_server(data_dir: Path, database_url: str = "", workers: int = 1, plain=()):
    """Yields (url, write_token) of a fresh hub in ``data_dir``; stops it afterwards. ``plain``: the names of the
    hub's speed tricks to switch off in it (``_plain.SERVER``; one worker)."""
    if plain and workers != 1:
        raise ValueError("the tricks are switched off in the serving process: one worker")
    cli = plain_cli(plain) if plain else CLI
    args = ["--data-dir", str(data_dir)] + (["--database-url", database_url] if database_url else [])
    token = subprocess.run(
        CLI + args + ["--create-user", "bench"], check=True, capture_output=True, text=True
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(cli + args + ["--port", str(port), "--workers", str(workers)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/models")
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

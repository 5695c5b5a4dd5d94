"""Helpers for the hub benchmarks: a fresh hub in a child process (``adapterhub.client.local_hub``, the one way
the project starts ``adapterhub serve`` for a program), optionally with speed tricks switched off."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import httpx

from adapterhub.client.local import free_port, local_hub

__all__ = ["free_port", "hub_server", "wait_http"]


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
    """Yields (url, write_token) of a fresh hub in ``data_dir`` with the user ``bench``; stops it afterwards.
    ``plain``: the names of the hub's speed tricks to switch off in it (``_plain.SERVER``; one worker)."""
    if plain and workers != 1:
        raise ValueError("the tricks are switched off in the serving process: one worker")
    options = (["--database-url", database_url] if database_url else []) + ["--workers", str(workers)]
    command = plain_cli(plain) if plain else None
    with local_hub(data_dir, user="bench", options=options, command=command) as hub:
        yield hub.url, hub.token

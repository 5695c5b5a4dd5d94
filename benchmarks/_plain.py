"""The speed tricks of the client and the hub, each with the switch that makes its plain path the one taken, for
the benchmarks' side-by-side "plain" variants (``fast / plain`` ratios). A switch is a monkeypatch in the process
that runs the benchmark, or, for the hub's tricks, in the hub's own process (:func:`serve_plain`, used by
``_hub.hub_server(plain=...)``). The plain paths are complete and tested on their own; the tests that each trick
is taken are in tests/server/test_bundle.py and tests/client/test_bundle_load.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Forgets(dict):
    """A process-wide cache that keeps nothing: every lookup misses."""

    def __setitem__(self, key, value) -> None:
        pass


# ------------------------------------------------------------------------------------------------ client
@contextlib.contextmanager
def _lean_off() -> Iterator[None]:
    """The bundle request through httpx instead of ``client/lean.py`` (http.client)."""
    from adapterhub.client import http, lean

    before = dict(http._SHARED)
    kept = {key: client._lean for key, client in before.items()}
    usable, lean.usable = lean.usable, lambda endpoint: False
    for client in before.values():
        client._lean = None
    try:
        yield
    finally:
        lean.usable = usable
        for key, client in list(http._SHARED.items()):
            if key in kept and http._SHARED[key] is before[key]:
                client._lean = kept[key]
            else:  # made while switched off: without a lean connection for good
                http._SHARED.pop(key).close()


@contextlib.contextmanager
def _patched(module: str, name: str, value: Callable[[], object]) -> Iterator[None]:
    """``module.name`` (``name`` may be dotted: ``Class.attribute``) replaced by ``value()`` while inside."""
    import importlib

    owner = importlib.import_module(module)
    *path, attribute = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    saved = getattr(owner, attribute)
    setattr(owner, attribute, value())
    try:
        yield
    finally:
        setattr(owner, attribute, saved)


CLIENT: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    # the bundle request through httpx
    "lean": _lean_off,
    # in-memory bundles parsed by tarfile on a stream instead of the hand-written reader
    "tar-reader": lambda: _patched("adapterhub.client.bundle", "IN_MEMORY", lambda: 0),
    # manifests and resolutions parsed again on every read (client/files.py read_json)
    "json-memo": lambda: _patched("adapterhub.client.files", "_JSON_MEMO", Forgets),
    # a repeated load in the process goes through parsing, settings and pinning again (client/resolve.py)
    "recent-loads": lambda: _patched("adapterhub.client.resolve", "_RECENT", Forgets),
}


def client_off(name: str) -> contextlib.AbstractContextManager:
    """A context in which the client trick ``name`` (a key of :data:`CLIENT`) is switched off."""
    return CLIENT[name]()


# ------------------------------------------------------------------------------------------------ hub
def _fast_bundle_off() -> None:
    from adapterhub.server import app, bundle

    async def declines(*args) -> bool:
        return False

    for module in (bundle, app):
        if hasattr(module, "fast_bundle"):
            module.fast_bundle = declines


def _loop_reader_off() -> None:
    from adapterhub.server.db import Database

    Database.loop_reader = lambda self: None  # the quick query in a worker thread, through the pool


def _bundle_bodies_off() -> None:
    from adapterhub.server import bundle

    bundle._BODIES = bundle._Bodies(limit=0)  # the files read from the store for every answer


SERVER: dict[str, Callable[[], None]] = {
    "fast-bundle": _fast_bundle_off,
    "loop-reader": _loop_reader_off,
    "bundle-bodies": _bundle_bodies_off,
}


def serve_plain(names: list[str]) -> None:
    """Switch the hub tricks ``names`` off in this process, then run ``adapterhub serve`` (one worker: this
    process) with the command line's arguments."""
    for name in names:
        SERVER[name]()
    import typer

    from adapterhub.server.cli import serve

    typer.run(serve)

"""Starting a hub on this machine for a program (the quickstart, notebooks, benchmarks): ``adapterhub serve``
in a child process on 127.0.0.1, with a user and a write token. The client never imports the server; the
server runs in its own process and is reached over HTTP like any other hub.

    with local_hub(".adapterhub/hub", user="me") as hub:
        model.push_adapter_to_hub("me/sst2", "sst", endpoint=hub.url, token=hub.token, task="sentiment")
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from .errors import HubHTTPError

_SERVE = "import typer; from adapterhub.server.cli import serve; typer.run(serve)"


@dataclasses.dataclass
class LocalHub:
    url: str
    token: str  # a write token of ``user``
    user: str
    data_dir: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_local_hub(
    data_dir: str | os.PathLike,
    *,
    user: str = "me",
    orgs: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 120.0,
    log: Path | None = None,
) -> LocalHub:
    """Start ``adapterhub serve`` on ``host:port`` (a free port if 0) with its data in ``data_dir``; create
    ``user`` (and organisations ``orgs`` with the user as a member) and return a write token. Call ``stop()``."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    serve = [sys.executable, "-c", _SERVE, "--data-dir", str(data_dir)]
    first_org = ["--create-org", orgs[0], "--member", user] if orgs else []
    made = subprocess.run(
        serve + ["--create-user", user] + first_org, capture_output=True, text=True, timeout=timeout
    )
    if made.returncode != 0 or not made.stdout.strip():
        raise HubHTTPError(
            f"could not create user {user!r} on the local hub in {data_dir}: {made.stderr.strip()}"
        )
    token = made.stdout.strip().splitlines()[-1]
    for org in orgs[1:]:
        subprocess.run(
            serve + ["--create-org", org, "--member", user],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    port = port or _free_port(host)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child process
    process = subprocess.Popen(serve + ["--host", host, "--port", str(port)], stdout=out, stderr=out)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise HubHTTPError(
                f"the local hub exited at start (code {process.returncode})" + (f"; see {log}" if log else "")
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(
                f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"}, timeout=2
            ).is_success:
                return LocalHub(url, token, user, data_dir, process)
        if time.monotonic() > deadline:
            process.kill()
            raise HubHTTPError(f"the local hub at {url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def local_hub(data_dir: str | os.PathLike, **options) -> Iterator[LocalHub]:
    """:func:`start_local_hub` as a context manager: the hub stops when the block ends."""
    hub = start_local_hub(data_dir, **options)
    try:
        yield hub
    finally:
        hub.stop()

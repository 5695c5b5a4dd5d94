"""Starting a hub on this machine for a program (the quickstart, notebooks, benchmarks, tests): ``adapterhub
serve`` in a child process on 127.0.0.1, with a user and a write token. The client never imports the server; the
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
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from .errors import HubHTTPError

_SERVE = "import typer; from adapterhub.server.cli import serve; typer.run(serve)"


@dataclasses.dataclass
class LocalHub:
    url: str
    token: str  # a write token of ``user`` ("" when no user was made)
    user: str | None
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_local_hub(
    data_dir: str | os.PathLike,
    *,
    user: str | None = "me",
    orgs: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    timeout: float = 120.0,
    log: Path | None = None,
) -> LocalHub:
    """Start ``adapterhub serve`` on ``host:port`` (a free port if 0) with its data in ``data_dir``; create
    ``user`` (and organisations ``orgs`` with the user as a member) and return a write token (``user=None``: no
    user, the token is ""). ``options``: more ``serve`` options (``--database-url``, ``--workers``, ...), also
    given when the user is made; ``env``: variables added to the child's environment; ``command``: the program
    that runs the serve command (by default this Python running ``adapterhub.server.cli.serve``); ``log``: a
    file that gets the server's output (appended). The child imports the ``adapterhub`` that this process
    imported. Call ``stop()``."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    serve = [*(command or [sys.executable, "-c", _SERVE]), "--data-dir", str(data_dir), *options]
    child_env = _child_env(env)
    token = ""
    if user is not None:
        token = _make_user(serve, user, orgs, child_env, timeout, data_dir)
    port = port or free_port(host)
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
        err = out if log else files.enter_context(tempfile.TemporaryFile())  # read only if the start fails
        process = subprocess.Popen(
            serve + ["--host", host, "--port", str(port)], stdout=out, stderr=err, env=child_env
        )
        url = f"http://{host}:{port}"
        _wait_until_serving(process, url, token, timeout, err if not log else None, log)
    return LocalHub(url, token, user, data_dir, process)


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """This process's environment with ``extra``, and the folder of the imported ``adapterhub`` first on the
    import path (so a source checkout's child runs that checkout, whatever its working directory)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(extra or {})}


def _make_user(
    serve: list[str], user: str, orgs: tuple[str, ...], env: dict[str, str], timeout: float, data_dir: Path
) -> str:
    first_org = ["--create-org", orgs[0], "--member", user] if orgs else []
    made = subprocess.run(
        serve + ["--create-user", user] + first_org, capture_output=True, text=True, timeout=timeout, env=env
    )
    if made.returncode != 0 or not made.stdout.strip():
        raise HubHTTPError(
            f"could not create user {user!r} on the local hub in {data_dir}: {made.stderr.strip()}"
        )
    for org in orgs[1:]:
        subprocess.run(
            serve + ["--create-org", org, "--member", user],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
            env=env,
        )
    return made.stdout.strip().splitlines()[-1]


def _wait_until_serving(process, url: str, token: str, timeout: float, err, log: Path | None) -> None:
    """Returns once the hub at ``url`` answers (with ``token``: accepts it); raises if it exits or stays silent."""
    probe = f"{url}/api/whoami-v2" if token else f"{url}/api/models"
    headers = {"authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            said = ""
            if err is not None:
                err.seek(0)
                said = ": " + err.read().decode(errors="replace")[-2000:].strip()
            raise HubHTTPError(
                f"the local hub exited at start (code {process.returncode})"
                + (f"; see {log}" if log else said)
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(probe, headers=headers, timeout=2).is_success:
                return
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

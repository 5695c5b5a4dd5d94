"""A hub app served by uvicorn in a thread of this process, on a loopback port: the quickstart's embedded hub
(``lifecycle.start_embedded_hub``) and the tests' live hubs start it this way. ``adapterhub serve`` (worker
processes, its own access log) is the way to run a hub for others."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from typing import Any


@dataclasses.dataclass
class ServerThread:
    """A running server: its URL, the ``uvicorn.Server`` and the thread that runs it."""

    url: str
    server: Any  # uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish (open requests complete), wait up to ``timeout`` s, then drop the connections
        of requests that do not end and wait as long again."""
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(timeout)


def serve_in_thread(
    app, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 20.0, name: str = "adapterhub-hub"
) -> ServerThread:
    """Serve ``app`` on ``host:port`` (``port=0``: a free one) in a daemon thread; returns once the server
    listens. ``OSError``: the address cannot be bound; ``RuntimeError``: the server stopped or did not start
    within ``timeout`` s."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    url = f"http://{host}:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=name)
    thread.start()
    running = ServerThread(url, server, thread)
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop(timeout=5)
            sock.close()
            raise RuntimeError(f"the hub server at {url} stopped or did not start within {timeout:.0f} s")
        time.sleep(0.02)
    return running

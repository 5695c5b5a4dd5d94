"""Helpers shared by the hub server tests (imported by name: a module called ``conftest`` is ambiguous when
several test folders have one)."""

from __future__ import annotations

import socket
import threading
import time


def start_server(app) -> tuple[str, object, threading.Thread]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test hub server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread

"""Download throughput of a 3.6 MB adapter file over loopback: our hub (`adapterhub serve`, resolve
endpoint) against a plain static file server (`python -m http.server`) serving the same bytes on the same
machine. Both are measured in interleaved rounds with the same clients: httpx (what huggingface_hub uses; a
fresh connection per download) and, where installed, curl (a fresh connection each, and keep-alive); the
median of the rounds is reported, and the ratio hub/static. Every download is checked (sha256 or size).

    .venv/bin/python benchmarks/hub_download.py [--rounds 15] [--downloads 10]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from huggingface_hub import HfApi, hf_hub_download
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from _hub import free_port, hub_server, wait_http  # noqa: E402

SIZE = 3_600_000


def server_pid(url: str) -> int:
    """The pid of the process listening on ``url``'s port (the hub started by hub_server)."""
    port = int(url.rsplit(":", 1)[1])
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":  # LISTEN
            inode = parts[9]
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                return int(fd.parts[2])
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def timed_downloads(url: str, n: int, expected_sha: str) -> float:
    """MB/s over ``n`` sequential downloads of ``url``, each on a new connection, each checked."""
    t0 = time.perf_counter()
    for _ in range(n):
        r = httpx.get(url, headers={"Accept-Encoding": "identity"})
        r.raise_for_status()
        if hashlib.sha256(r.content).hexdigest() != expected_sha:
            raise SystemExit(f"corrupt download from {url}")
    return n * len(r.content) / (time.perf_counter() - t0) / 1e6


def timed_curl(url: str, n: int, close: bool) -> float:
    """MB/s of one curl process fetching ``url`` ``n`` times (with ``close``, a new connection each; without,
    the connection is reused where the server allows it); every response's status and size are checked."""
    cmd = ["curl", "-s", "-w", "%{http_code} %{size_download}\\n"] + (
        ["-H", "Connection: close"] if close else []
    )
    for _ in range(n):
        cmd += ["-o", "/dev/null", url]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split("\n")
    dt = time.perf_counter() - t0
    if [line for line in out if line] != [f"200 {SIZE_ACTUAL[0]}"] * n:
        raise SystemExit(f"curl: unexpected answers from {url}: {out[:3]}")
    return n * SIZE_ACTUAL[0] / dt / 1e6


SIZE_ACTUAL = [0]


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process (Linux /proc), to compare servers' own work per download,
    which other load on the machine disturbs less than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--downloads", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        static_dir = tmp / "static"
        static_dir.mkdir()
        n = (SIZE - 200) // 4
        save_file(
            {"adapter.weight": torch.randn(n - n % 1000).reshape(-1, 1000)},
            str(static_dir / "adapter.safetensors"),
        )
        data = (static_dir / "adapter.safetensors").read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        SIZE_ACTUAL[0] = len(data)
        port = free_port()
        static = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(static_dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            static_url = f"http://127.0.0.1:{port}/adapter.safetensors"
            wait_http(static_url)
            with contextlib.ExitStack() as stack:
                url, token = stack.enter_context(hub_server(tmp / "hub"))
                api = HfApi(endpoint=url, token=token)
                api.create_repo("bench/adapter")
                api.upload_file(
                    path_or_fileobj=data, path_in_repo="adapter.safetensors", repo_id="bench/adapter"
                )
                hub_url = f"{url}/bench/adapter/resolve/main/adapter.safetensors"
                # the real client end to end once (HEAD + GET + cache), to check the bytes
                got = hf_hub_download(
                    "bench/adapter", "adapter.safetensors", endpoint=url, cache_dir=tmp / "cache", token=False
                )
                assert Path(got).read_bytes() == data
                timed_downloads(hub_url, 3, sha), timed_downloads(static_url, 3, sha)  # warm-up
                hub_pid = server_pid(url)
                cpu0 = (process_cpu_seconds(hub_pid), process_cpu_seconds(static.pid))
                hub, stat, curl = [], [], {True: ([], []), False: ([], [])}
                for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits both alike
                    hub.append(timed_downloads(hub_url, args.downloads, sha))
                    stat.append(timed_downloads(static_url, args.downloads, sha))
                    if shutil.which("curl"):
                        for close in (True, False):
                            curl[close][0].append(timed_curl(hub_url, args.downloads, close))
                            curl[close][1].append(timed_curl(static_url, args.downloads, close))
                n_each = args.rounds * args.downloads * (3 if shutil.which("curl") else 1)
                cpu = [
                    (process_cpu_seconds(p) - c) / n_each * 1000 for p, c in zip((hub_pid, static.pid), cpu0)
                ]
        finally:
            static.terminate()
    h, s = statistics.median(hub), statistics.median(stat)
    print(
        f"file: {len(data)} bytes; {args.rounds} rounds x {args.downloads} downloads, fresh connection each"
    )
    print(
        f"hub    (adapterhub serve, /resolve/main/...): median {h:7.1f} MB/s  (rounds: {', '.join(f'{x:.0f}' for x in hub)})"
    )
    print(
        f"static (python -m http.server)              : median {s:7.1f} MB/s  (rounds: {', '.join(f'{x:.0f}' for x in stat)})"
    )
    print(f"ratio hub/static (httpx client): {h / s:.2f}x (target >= 0.8x)")
    print(f"server CPU per download (user+system): hub {cpu[0]:.2f} ms, static {cpu[1]:.2f} ms")
    for close, (hub_c, stat_c) in curl.items():
        if hub_c:
            hc, sc = statistics.median(hub_c), statistics.median(stat_c)
            how = "new connection each" if close else "keep-alive where offered (http.server closes)"
            print(
                f"curl ({how}): hub median {hc:.1f} MB/s, static median {sc:.1f} MB/s, ratio {hc / sc:.2f}x"
            )


if __name__ == "__main__":
    main()

"""32 concurrent clients uploading and downloading against one hub for a bounded time; every transfer is
checked byte for byte (sha256). Exits non-zero on any failed or corrupt transfer.

Each client owns a repository and loops: upload a random file (8-256 KB) with huggingface_hub
(preupload + NDJSON commit), download it back through /resolve at the new commit, and download a file
that another client uploaded earlier. A quarter of the uploads go to one shared repository, so commits race
on the same branch (the server retries them on the moved branch). With several hub URLs (replicas, see
hub_scaleout.py) client i uploads through URL i and downloads through the next one.

    .venv/bin/python benchmarks/hub_concurrency.py [--clients 32] [--seconds 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from huggingface_hub import HfApi

sys.path.insert(0, str(Path(__file__).parent))
from _hub import hub_server  # noqa: E402

MAX_OPS_PER_CLIENT = 2000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        hub_server(Path(tmp) / "hub", args.database_url, args.workers) as (url, token),
    ):
        ok = run_load([url], token, args.clients, args.seconds)
    print(f"db: {'postgresql' if args.database_url else 'sqlite'}, workers: {args.workers}")
    if not ok:
        raise SystemExit(1)


def run_load(
    urls: list[str],
    token: str,
    clients: int,
    seconds: float,
    extra: Callable[[int, int, str], None] | None = None,
) -> bool:
    """The load above against the hubs ``urls``; prints the results and returns whether nothing failed, nothing
    was corrupt and no commit was lost. ``extra(client, n, url)``, if given, runs after each round of a client
    (its failures are counted too)."""
    api = HfApi(endpoint=urls[0], token=token)
    api.create_repo("bench/shared", exist_ok=True)
    for i in range(clients):
        api.create_repo(f"bench/c{i}", exist_ok=True)
    uploaded: list[tuple[str, str, str, str]] = []  # (repo, commit, path, sha256)
    lock = threading.Lock()
    stats = {"uploads": 0, "downloads": 0, "bytes_up": 0, "bytes_down": 0, "failed": 0, "corrupt": 0}
    errors: list[str] = []
    stop = time.time() + seconds

    def fetch(client: httpx.Client, url: str, repo: str, commit: str, path: str, sha: str) -> None:
        r = client.get(f"{url}/{repo}/resolve/{commit}/{path}")
        r.raise_for_status()
        with lock:
            stats["downloads"] += 1
            stats["bytes_down"] += len(r.content)
            if hashlib.sha256(r.content).hexdigest() != sha:
                stats["corrupt"] += 1
                errors.append(f"corrupt: {repo}@{commit}/{path} from {url}")

    def client_loop(i: int) -> None:
        rng = random.Random(i)
        up, down = urls[i % len(urls)], urls[(i + 1) % len(urls)]
        capi = HfApi(endpoint=up, token=token)
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            for n in range(MAX_OPS_PER_CLIENT):
                if time.time() > stop:
                    return
                repo = "bench/shared" if rng.random() < 0.25 else f"bench/c{i}"
                data = os.urandom(rng.randint(8, 256) * 1024)
                path = f"c{i}/f{n}.dat"
                try:
                    commit = capi.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo).oid
                    sha = hashlib.sha256(data).hexdigest()
                    with lock:
                        stats["uploads"] += 1
                        stats["bytes_up"] += len(data)
                        uploaded.append((repo, commit, path, sha))
                        other = rng.choice(uploaded)
                    fetch(client, down, repo, commit, path, sha)  # through another replica, at once
                    fetch(client, down, *other)
                    if extra is not None:
                        extra(i, n, up)
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        stats["failed"] += 1
                        errors.append(f"client {i}: {type(e).__name__}: {str(e)[:200]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    elapsed = time.perf_counter() - t0
    # final check: every uploaded file is still there with the right bytes, through every hub
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        for url in urls:
            for item in uploaded:
                try:
                    fetch(client, url, *item)
                except Exception as e:  # noqa: BLE001
                    stats["failed"] += 1
                    errors.append(f"final check {item[0]}/{item[2]} from {url}: {e}")
    shared_files = len([f for f in api.list_repo_files("bench/shared") if f.endswith(".dat")])
    expected_shared = sum(1 for u in uploaded if u[0] == "bench/shared")
    print(f"{clients} clients, {elapsed:.1f} s, {len(urls)} hub(s)")
    print(
        f"uploads: {stats['uploads']} ({stats['uploads'] / elapsed:.1f}/s, {stats['bytes_up'] / 1e6:.1f} MB)"
    )
    print(
        f"downloads (incl. final re-check of all uploads): {stats['downloads']} ({stats['bytes_down'] / 1e6:.1f} MB)"
    )
    print(
        f"shared repo: {shared_files} files, {expected_shared} uploaded to it (no lost commit: {shared_files == expected_shared})"
    )
    print(f"failed: {stats['failed']}  corrupt: {stats['corrupt']}")
    for e in errors[:10]:
        print("  ", e)
    return not (stats["failed"] or stats["corrupt"] or shared_files != expected_shared)


if __name__ == "__main__":
    main()

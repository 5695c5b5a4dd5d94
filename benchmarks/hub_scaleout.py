"""The hub beyond one machine under load: two `adapterhub serve` replicas (own data folders) and one
`adapterhub worker` on one database and one S3 bucket.

1. ``--clients`` concurrent clients for ``--seconds`` s (hub_concurrency.py's load: upload a random file, read
   it back through the other replica at once, read another client's file; a quarter of the commits race on one
   shared branch); every ``--adapter-every``-th round a client also pushes an adapter (the interop seq_bn from
   ../shared) whose load check the worker runs. Afterwards every upload is read again through both replicas,
   and every adapter's validation must have passed: zero failed, zero corrupt, no commit lost.
2. Download throughput of one ``--big-mb`` MiB file, ``--big-clients`` clients at once, ``--big-rounds`` each:
   streamed through replica A versus a presigned redirect from replica B (``--blob-redirect``), checked.

Without ``--s3-endpoint-url`` the script starts moto's S3 server (the dev extra) on a free port; without
``--database-url`` it uses a SQLite file (one machine only: a check of the script, not the measurement).

    .venv/bin/python benchmarks/hub_scaleout.py --database-url postgresql+psycopg2://u:pw@127.0.0.1/db \\
        [--s3-endpoint-url http://127.0.0.1:9000 --bucket adapterhub] [--clients 32 --seconds 30]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from huggingface_hub import CommitOperationAdd, HfApi

sys.path.insert(0, str(Path(__file__).parent))
from _hub import free_port, wait_http  # noqa: E402

from adapterhub.client.local import local_hub  # noqa: E402
from hub_concurrency import run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "adapterhub.cli"]
INTEROP = ROOT.parent / "shared" / "fixtures" / "interop" / "bert"
MiB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--s3-endpoint-url", default="", help="an S3-compatible server (default: start moto's)")
    ap.add_argument("--bucket", default="", help="an existing bucket (default: a new one)")
    ap.add_argument(
        "--adapter-every", type=int, default=8, help="push an adapter every n-th round (0: never)"
    )
    ap.add_argument("--big-mb", type=int, default=64)
    ap.add_argument("--big-clients", type=int, default=4)
    ap.add_argument("--big-rounds", type=int, default=3)
    args = ap.parse_args()
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
    ):
        os.environ.setdefault(key, value)  # moto accepts any; a real store takes the caller's own
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        endpoint = args.s3_endpoint_url or stack.enter_context(moto_server())
        bucket = args.bucket or new_bucket(endpoint)
        db = args.database_url or f"sqlite:///{tmp / 'hub.sqlite'}"
        common = ["--database-url", db, "--blob-store", f"s3://{bucket}/bench-{uuid.uuid4().hex[:8]}",
                  "--s3-endpoint-url", endpoint]  # fmt: skip
        replica_a = stack.enter_context(
            local_hub(tmp / "a", user="bench", options=[*common, "--validation-queue"])
        )
        a, token = replica_a.url, replica_a.token
        b = stack.enter_context(
            local_hub(tmp / "b", user=None, options=[*common, "--validation-queue", "--blob-redirect"])
        ).url
        worker = CLI + ["worker", "--data-dir", str(tmp / "w"), *common, "--poll", "0.2"]
        stack.enter_context(process(worker))
        print(f"replicas {a} and {b}, one worker; db {db.split('@')[-1]}; S3 {endpoint}/{bucket}")

        adapters = AdapterPushes(token) if args.adapter_every and INTEROP.is_dir() else None
        if args.adapter_every and adapters is None:
            print(f"(no adapters pushed: {INTEROP} is missing)")

        def extra(client: int, n: int, url: str) -> None:
            if adapters is not None and n % args.adapter_every == args.adapter_every - 1:
                adapters.push(url, f"bench/adapter-{client}-{n}")

        if adapters is not None:
            adapters.base(a)
        ok = run_load([a, b], token, args.clients, args.seconds, extra)
        if adapters is not None:
            ok = adapters.settled(b) and ok
        ok = throughput(a, b, token, args.big_mb, args.big_clients, args.big_rounds) and ok
    if not ok:
        raise SystemExit(1)


class AdapterPushes:
    """Adapters pushed during the load (the worker validates them); all must end up passed."""

    def __init__(self, token: str):
        self.token, self.repos, self.lock = token, [], threading.Lock()
        folder = INTEROP / "adapters" / "seq_bn" / "safetensors"
        self.files = {
            p.name: p.read_bytes()
            for p in folder.iterdir()
            if p.name in ("adapter_config.json", "adapter.safetensors")
        }
        self.files["README.md"] = b"---\nbase_model: bench/bert-tiny\n---\n# bench\n"  # fmt: skip

    def base(self, url: str) -> None:
        api = HfApi(endpoint=url, token=self.token)
        api.create_repo("bench/bert-tiny", exist_ok=True)
        api.upload_file(
            path_or_fileobj=INTEROP / "base" / "config.json",
            path_in_repo="config.json",
            repo_id="bench/bert-tiny",
        )

    def push(self, url: str, repo: str) -> None:
        api = HfApi(endpoint=url, token=self.token)
        api.create_repo(repo)
        api.create_commit(
            repo,
            operations=[CommitOperationAdd(p, d) for p, d in self.files.items()],
            commit_message="adapter",
        )
        with self.lock:
            self.repos.append(repo)

    def settled(self, url: str, timeout: float = 300) -> bool:
        t0, deadline, statuses = time.perf_counter(), time.time() + timeout, {}
        while time.time() < deadline:
            statuses = {
                r: httpx.get(f"{url}/api/models/{r}/validation").json().get("status") for r in self.repos
            }
            if not any(s in ("pending", "running") for s in statuses.values()):
                break
            time.sleep(1)
        passed = sum(s == "passed" for s in statuses.values())
        settle = time.perf_counter() - t0
        print(f"adapters pushed: {len(self.repos)}, validated by the worker: {passed} passed, "
              f"{len(self.repos) - passed} not ({settle:.1f} s after the load to settle)")  # fmt: skip
        return passed == len(self.repos)


def throughput(a: str, b: str, token: str, mb: int, clients: int, rounds: int) -> bool:
    data = os.urandom(mb * MiB)
    sha = hashlib.sha256(data).hexdigest()
    api = HfApi(endpoint=a, token=token)
    api.create_repo("bench/big", exist_ok=True)
    commit = api.upload_file(path_or_fileobj=data, path_in_repo="big.dat", repo_id="bench/big").oid
    del data
    ok = True
    for label, url in (("streamed through the hub", a), ("presigned redirect", b)):

        def one(_: int, url: str = url) -> tuple[int, bool, int]:
            h, n = hashlib.sha256(), 0
            with httpx.Client(timeout=300, follow_redirects=True) as client:
                with client.stream("GET", f"{url}/bench/big/resolve/{commit}/big.dat") as r:
                    for chunk in r.iter_bytes(MiB):
                        h.update(chunk)
                        n += len(chunk)
                    return n, h.hexdigest() == sha and r.status_code == 200, len(r.history)

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(clients * rounds)))
        elapsed = time.perf_counter() - t0
        good = all(r[1] for r in results)
        ok = ok and good
        print(f"download {mb} MiB x {len(results)} ({clients} at once), {label}: "
              f"{sum(r[0] for r in results) / MiB / elapsed:.0f} MiB/s, {elapsed:.1f} s, "
              f"redirects followed: {sum(r[2] for r in results)}, all intact: {good}")  # fmt: skip
    return ok


@contextlib.contextmanager
def process(cmd: list[str]):
    """A child process (the validation worker, moto's S3 server), stopped afterwards."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def moto_server():
    port = free_port()
    with process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]):
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/moto-api/")
        yield url


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


if __name__ == "__main__":
    main()

"""An S3-compatible server for the tests: moto's standalone server (``moto[server]``, the dev extra) in a child
process on a free loopback port, and fake AWS credentials in the environment for boto3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx

from adapterhub.client.local import free_port

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto() -> tuple[str, subprocess.Popen]:
    """(endpoint URL, process) of a fresh moto server; the caller stops the process."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **FAKE_AWS},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                return url, proc
            except httpx.TransportError:
                time.sleep(0.1)
        proc.kill()
        proc.wait()
    raise RuntimeError("moto's S3 server did not start")


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"hub-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def objects(endpoint: str, bucket: str) -> dict[str, int]:
    """Every object in ``bucket``: key -> size."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out

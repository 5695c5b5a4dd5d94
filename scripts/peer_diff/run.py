"""Differential harness: adapterhub against the `adapters` library 1.3 (the peer), both directions.

    bash scripts/setup.sh                                   # creates .venv-adapters (the peer) too
    .venv/bin/python scripts/peer_diff/run.py               # every variation (variations.py)
    .venv/bin/python scripts/peer_diff/run.py --subset ci --only 'fuse|flex'   # a part of it

The peer runs in its own virtual environment (torch, transformers 4.57, adapters 1.3); the two processes only
exchange files: base checkpoints (written by the peer's transformers), saved adapters, and per case the outputs
and gradients as safetensors with a json status. For every case each side builds the model, adds the adapters,
randomises every adapter and head weight, saves, and records outputs (padded batch, padding zeroed) and the
gradients of every adapter and head parameter; then each side loads what the other saved and records the
same. A direction passes when the loading side reproduces the saving side's outputs and gradients within
``--tol`` (relative to the largest value). Variations the peer itself cannot run are reported as skipped.
Exit status 1 if any direction fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from common import read_result  # noqa: E402
from variations import KNOWN  # noqa: E402
from variations import cases as all_cases  # noqa: E402

DIRECTIONS = (("ours", "peer"), ("peer", "ours"))  # (saver, loader)


def compare(saved: dict, loaded: dict) -> tuple[float, str | None]:
    """Largest difference (relative to the largest value) over the output and every gradient."""
    if set(saved) != set(loaded):
        only = sorted(set(saved) ^ set(loaded))
        return float("inf"), f"different gradients: {', '.join(only[:4])}"
    worst = 0.0
    for key, value in saved.items():
        other = loaded[key]
        if value.shape != other.shape:
            return float("inf"), f"{key}: shape {tuple(value.shape)} vs {tuple(other.shape)}"
        scale = max(1.0, value.abs().max().item())
        worst = max(worst, (value - other).abs().max().item() / scale)
    return worst, None


def judge(folder: Path, saver: str, loader: str, tol: float) -> tuple[str, str]:
    """(status, detail) of one direction: pass, FAIL, skip (the peer cannot run the variation itself) or known
    (a documented difference, see variations.KNOWN)."""
    for pattern, reason in KNOWN.items():
        if re.search(pattern, f"{folder.name} {saver}->{loader}"):
            return "known", reason
    own, own_error = read_result(folder / f"{saver}_own")
    peer_own, peer_error = read_result(folder / "peer_own")
    if peer_error:
        return "skip", f"peer cannot: {peer_error}"
    if own_error:
        return "FAIL", f"{saver} cannot: {own_error}"
    loaded, load_error = read_result(folder / f"{loader}_loaded")
    if load_error:
        return "FAIL", f"{loader} cannot load {saver}'s files: {load_error}"
    diff, problem = compare(own, loaded)
    if problem:
        return "FAIL", problem
    return ("pass" if diff <= tol else "FAIL"), f"max diff {diff:.2e}"


def run(subset: str, only: str | None, work: Path, peer_python: Path, tol: float, quiet: bool) -> dict:
    chosen = {k: v for k, v in all_cases(subset).items() if not only or re.search(only, k)}
    work.mkdir(parents=True, exist_ok=True)
    (work / "cases.json").write_text(json.dumps(chosen, indent=1))
    steps = [
        (
            [str(peer_python), str(HERE / "peer.py"), str(work)]
            + ([] if (work / "models").is_dir() else ["models"])
        ),
        ([sys.executable, str(HERE / "ours.py"), str(work), "own"]),
        ([str(peer_python), str(HERE / "peer.py"), str(work), "load:ours", "own"]),
        ([sys.executable, str(HERE / "ours.py"), str(work), "load:peer"]),
    ]
    with open(work / "log.txt", "a") as log:
        for command in steps:
            done = subprocess.run(command, cwd=HERE, env=_env(), stdout=log, stderr=subprocess.STDOUT)
            if done.returncode:
                raise SystemExit(f"{' '.join(command)} failed ({done.returncode}); see {work / 'log.txt'}")
    report = {}
    for case_id in chosen:
        for saver, loader in DIRECTIONS:
            status, detail = judge(work / "cases" / case_id, saver, loader, tol)
            report[f"{case_id} {saver}->{loader}"] = (status, detail)
            if not quiet and status in ("FAIL", "known"):
                print(f"{status:5} {case_id} {saver}->{loader}: {detail}")
    counts = {s: sum(1 for v in report.values() if v[0] == s) for s in ("pass", "FAIL", "skip", "known")}
    if not quiet:
        print(
            f"{len(chosen)} cases, {2 * len(chosen)} directions: {counts['pass']} pass, {counts['FAIL']} fail, "
            f"{counts['skip']} skipped (the peer cannot run them), {counts['known']} known differences"
        )
    (work / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _env() -> dict:
    import os

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["TRANSFORMERS_VERBOSITY"] = "error"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="full", choices=["full", "ci"])
    parser.add_argument("--only", help="regular expression: run only the cases whose id it matches")
    parser.add_argument(
        "--work", type=Path, help="folder for models, saved files and results (default: temporary)"
    )
    parser.add_argument("--peer-python", type=Path, default=ROOT / ".venv-adapters" / "bin" / "python")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    if not args.peer_python.is_file():
        sys.exit(f"no peer environment at {args.peer_python}: run scripts/setup.sh")
    if args.work is not None:
        report = run(args.subset, args.only, args.work, args.peer_python, args.tol, quiet=False)
    else:
        with tempfile.TemporaryDirectory(prefix="peer-diff-") as tmp:
            report = run(args.subset, args.only, Path(tmp), args.peer_python, args.tol, quiet=False)
    sys.exit(1 if any(status == "FAIL" for status, _ in report.values()) else 0)


if __name__ == "__main__":
    main()

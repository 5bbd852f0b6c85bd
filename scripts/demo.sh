#!/usr/bin/env bash
# Command 1: set everything up, then process sample uploads end to end and print what came out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pipeline demo "$@"

#!/usr/bin/env bash
# Runs the test suite (unit tests, schema checks, dry run of the paper's grid, end-to-end mini run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"

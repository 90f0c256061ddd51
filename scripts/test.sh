#!/usr/bin/env bash
# Runs the test suite (unit tests, schema checks, dry run of the paper's grid, end-to-end mini run,
# the LLM explainer against a real vLLM server on this CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --vllm
exec .venv/bin/python -m pytest "$@"

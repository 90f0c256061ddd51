#!/usr/bin/env bash
# Runs the test suite (unit tests, schema checks, dry run of the paper's grid, end-to-end mini run,
# the LLM explainer against a real vLLM server on this CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --vllm --saelens
# Lint and format (configured in pyproject.toml): a finding fails the run before any test.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/snakefmt --check Snakefile workflow/rules
# Two workers, each taking whole groups of tests that share a costly fixture (tests/conftest.py).
# pytest stays at 9.1 (requirements.txt): 9.2 keeps node ids where pytest-xdist 3.8 cannot append
# its group suffix, and the groups are then split across the workers.
exec .venv/bin/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder "$@"

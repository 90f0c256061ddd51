#!/usr/bin/env bash
# Runs the embedded default (config/demo.yaml) end to end on this machine, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/snakemake --profile profiles/local --configfile config/demo.yaml "$@"

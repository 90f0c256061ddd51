#!/usr/bin/env bash
# Runs the embedded default (config/demo.yaml) end to end on this machine, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Ends with the report (results/report.html): every figure and table with its caption, and the claims.
exec .venv/bin/snakemake --profile profiles/local --report results/report.html --report-after-run \
    --configfile config/demo.yaml "$@"

#!/usr/bin/env bash
# Runs the embedded default (config/demo.yaml) end to end on this machine, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Ends with the report: every figure and table with its caption, the claims and the latent browser, as
# Snakemake writes a report that holds folders (results/report.zip), unpacked to results/report/.
.venv/bin/snakemake --profile profiles/local --report results/report.zip --report-after-run \
    --configfile config/demo.yaml "$@"
if [ -f results/report.zip ]; then
  .venv/bin/python -m zipfile -e results/report.zip results/
  echo "report: results/report/report.html"
fi

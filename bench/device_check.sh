#!/usr/bin/env bash
# Every GPU measurement of bench/ in one run, sized for under 8 minutes on an H100: the cost model's
# rates (matmul, memory, disk, a step's fixed cost); throughput at Pythia-160M and 1B shapes (caching
# against the bare forward pass and the scratch disk's fsync'd write rate, our training against
# sparsify's Trainer, reading against training, fused Adam and TopK before ReLU against the
# defaults), the peak memory of a 6.9B-size SAE step, and a torch.profiler trace of 20 steps at
# d 2048. Writes rates.json, device_check.json and device_check.md (figures, ratios, the cost model
# against them, device, versions, date) to $OUT, or to bench/results/<device>-<date>/ when OUT is
# unset, and prints the table.
#
# On a lent GPU machine (bench/device_wheels.sh first, here; then carry .whl):
#   bash bench/device_check.sh
# CHECK_SIZE=toy runs the same steps at toy size on a CPU (tests/test_bench.py does).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The GPU machine's image has torch and transformers, not these: carried wheels (bench/device_wheels.sh).
if ! "$PYTHON" -c 'import zarr, sparsify, datasets, jsonschema' 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results/$($PYTHON -c 'import torch; print(torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "cpu")')-$(date -u +%F)}
mkdir -p "$OUT"
SCRATCH=${SCRATCH:-${TMPDIR:-/tmp}}
# The cost model's constants first (saerand.device_rates): a minute at most.
"$PYTHON" bench/device_rates.py --json "$OUT/rates.json" --scratch "$SCRATCH" ${CHECK_SIZE:+--device cpu}

if [ "${CHECK_SIZE:-}" = toy ]; then
  # Toy shapes on the CPU: the steps run, the figures mean nothing.
  throughput=(--size toy --tokens 4096 --context 64 --expansion 4 --k 8 --device cpu)
  "$PYTHON" bench/throughput.py "${throughput[@]}" --flags fused_adam topk_before_relu --json "$OUT/throughput-toy.json" --scratch "$SCRATCH"
  "$PYTHON" bench/profile_step.py --d-model 64 --expansion 4 --k 4 --batch-tokens 256 --steps 3 --warmup 1 \
    --device cpu --out "$OUT/profile"
else
  # Stores of 1M tokens x 12 layers x 768 (18 GB) and 262k x 16 x 2048 (17 GB) in float16: the disk holds 64 GB.
  "$PYTHON" bench/throughput.py --size pythia-160m --tokens 1048576 --flags fused_adam topk_before_relu \
    --json "$OUT/throughput-pythia-160m.json" --scratch "$SCRATCH"
  "$PYTHON" bench/throughput.py --size pythia-1b --tokens 262144 --flags fused_adam topk_before_relu \
    --json "$OUT/throughput-pythia-1b.json" --scratch "$SCRATCH"
  "$PYTHON" bench/profile_step.py --d-model 2048 --steps 20 --out "$OUT/profile"
fi
"$PYTHON" bench/device_report.py "$OUT"

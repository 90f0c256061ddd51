#!/usr/bin/env bash
# Run here, before a device check: downloads into .whl/ the wheels the GPU machine's image lacks
# (device README: Python 3.12, torch and transformers there; no registry), at the versions pinned in
# requirements.txt. Then: run `bash bench/device_check.sh` there with `.whl` carried.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
MISSING=(zarr numcodecs donfig google-crc32c eai-sparsify schedulefree simple-parsing natsort datasets dill
  multiprocess xxhash fsspec jsonschema jsonschema-specifications referencing rpds-py docstring-parser)
rm -rf .whl && mkdir .whl
for name in "${MISSING[@]}"; do
  pin=$(grep -i "^${name}==" requirements.txt || true)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${pin:-$name}"
done
du -sh .whl

#!/usr/bin/env bash
# Creates .venv with the pinned dependencies (idempotent: reinstalls only when a pin changes).
# With --vllm also .venv-vllm: vLLM's CPU build, which pins its own torch and transformers, for the
# LLM explainer's server in local runs and the tests (a cluster uses envs/vllm.yaml).
# With --saelens also .venv-saelens: SAELens and TransformerLens, in which the tests load the
# workflow's SAELens exports (requirements-saelens.txt says why it is a venv of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.saerand-setup
want=$(cat requirements.txt requirements-delphi.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and pinned, so pip takes the CPU wheel and never resolves a CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -r requirements.txt
  # delphi's own pins pull vllm (CUDA, several GB); the parts we use need only what is above.
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-delphi.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
# A venv of its own beside .venv, reinstalled only when its requirements change: side_venv DIR
# REQUIREMENTS [pip flags for them].
side_venv() {
  local dir=$1 requirements=$2
  shift 2
  local stamp="$dir/.saerand-setup" want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "torch==2.13.0"
    "$dir/bin/python" -m pip install --quiet "$@" -r "$requirements"
    echo "$want" > "$stamp"
  fi
}
if [[ " $* " == *" --vllm "* ]]; then
  side_venv .venv-vllm requirements-vllm.txt --no-deps
fi
if [[ " $* " == *" --saelens "* ]]; then
  side_venv .venv-saelens requirements-saelens.txt
fi

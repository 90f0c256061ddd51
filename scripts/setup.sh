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
if [[ " $* " == *" --vllm "* ]]; then
  vllm_stamp=.venv-vllm/.saerand-setup
  vllm_want=$(sha256sum requirements-vllm.txt | cut -d' ' -f1)
  if [ "$(cat "$vllm_stamp" 2>/dev/null)" != "$vllm_want" ]; then
    [ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
    .venv-vllm/bin/python -m pip install --quiet --upgrade pip
    .venv-vllm/bin/python -m pip install --quiet "torch==2.13.0"
    .venv-vllm/bin/python -m pip install --quiet --no-deps -r requirements-vllm.txt
    echo "$vllm_want" > "$vllm_stamp"
  fi
fi
if [[ " $* " == *" --saelens "* ]]; then
  saelens_stamp=.venv-saelens/.saerand-setup
  saelens_want=$(sha256sum requirements-saelens.txt | cut -d' ' -f1)
  if [ "$(cat "$saelens_stamp" 2>/dev/null)" != "$saelens_want" ]; then
    [ -x .venv-saelens/bin/python ] || "$PYTHON" -m venv .venv-saelens
    .venv-saelens/bin/python -m pip install --quiet --upgrade pip
    .venv-saelens/bin/python -m pip install --quiet "torch==2.13.0"
    .venv-saelens/bin/python -m pip install --quiet -r requirements-saelens.txt
    echo "$saelens_want" > "$saelens_stamp"
  fi
fi

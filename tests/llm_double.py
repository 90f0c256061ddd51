"""Test doubles for the 70B explainer/scorer LLM: a tiny random Llama that vLLM really serves
(on CPU, in its own venv), and the settings to serve it. Its explanations are noise; what is tested
is the path: service job, socket, readiness, logprobs, parsing, counting, resuming."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from saerand.config import validate_section

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# One line, no system-prompt logic: enough for vLLM's chat endpoint and delphi's message lists.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def make_tiny_llama(directory: str | Path, tokenizer) -> Path:
    """A random Llama vLLM's CPU backend accepts (head_dim 64; 16 fails there) with `tokenizer`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return Path(directory)


def llm_settings(model_dir: str | Path, **overrides) -> dict:
    """`autointerp.llm` for the double on this CPU, the schema's defaults for the rest."""
    llm = {
        "model": str(model_dir),
        "python": str(VLLM_PYTHON),
        "gpus": 1,
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.9,
        "dtype": "float32",
        "seed": 0,
        "server_args": ["--enforce-eager"],
        "environment": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "start_timeout": 300,
        "request_timeout": 120,
        "stuck_after": 3,
        "concurrency": 4,
        "max_tokens": 60,
        "examples_per_prompt": 5,
        "structured_outputs": True,
        **overrides,
    }
    return validate_section("autointerp", {"llm": llm})["llm"]


def vllm_available() -> bool:
    return VLLM_PYTHON.exists() and os.access(VLLM_PYTHON, os.X_OK)


def write_llm_config(path: str | Path, model_dir: str | Path, **overrides) -> Path:
    """A config file that adds the LLM explainer, served by the double, to a study's config."""
    llm = {**llm_settings(model_dir), "cpus": 1, "mem_mb": 4000, "parameters": 1e6, **overrides}
    Path(path).write_text(yaml.safe_dump({"autointerp": {"explainers": ["tokens", "llm"], "llm": llm}}))
    return Path(path)

"""Shared fixtures: a tiny GPT-NeoX with random weights and a small BPE tokenizer, built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from .workflow_runs import run_watching_shards

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="session")
def tiny_neox_config() -> GPTNeoXConfig:
    return GPTNeoXConfig(
        vocab_size=512, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=256, max_position_embeddings=32, rotary_pct=0.25,
        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
    )


@pytest.fixture()
def tiny_neox(tiny_neox_config) -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(tiny_neox_config).eval()
    # Give every tensor a distinct non-trivial distribution (fresh biases are all zero).
    with torch.no_grad():
        for i, param in enumerate(model.parameters()):
            param.add_(torch.randn_like(param) * 0.05 + 0.01 * (i % 7))
    return model


@pytest.fixture(scope="session")
def pydoc_text_file(tmp_path_factory) -> Path:
    """About 0.4 MB of English from CPython's own docs, one topic per paragraph."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("corpus") / "pydoc.txt"
    path.write_text("\n\n".join(text.strip() for text in topics.values()))
    return path


@pytest.fixture(scope="session")
def small_tokenizer(pydoc_text_file):
    from saerand.tiny_model import train_tokenizer

    return train_tokenizer([str(pydoc_text_file)], vocab_size=512, context_length=32)


@pytest.fixture()
def token_ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 512, size=(24, 32)).astype(np.int32)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> tuple[Path, int]:
    """tests/configs/mini.yaml run end to end locally; also the reference for the Slurm run."""
    workdir = tmp_path_factory.mktemp("mini")
    return workdir, run_watching_shards(workdir)[0]

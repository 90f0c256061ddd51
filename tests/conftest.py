"""Shared fixtures: a tiny GPT-NeoX with random weights and a small BPE tokenizer, built offline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from saerand.config import SCHEMA, load_config, validate_section
from saerand.dag import study_jobs

from .workflow_runs import run_watching_shards

REPO = Path(__file__).resolve().parents[1]

# No test sees a Slurm it did not start: sinfo (the partitions' limits, saerand.retries) would
# otherwise answer from the machine's own configuration, which a test cluster running beside the
# test (another xdist worker's) takes over. Tests of a cluster give its SLURM_CONF to its commands.
# The configuration names a controller that is down, which Slurm's commands report at once.
NO_SLURM_CONF = str(REPO / "tests" / "no-slurm-here.conf")
os.environ["SLURM_CONF"] = NO_SLURM_CONF


@pytest.fixture(scope="session")
def paper() -> dict:
    """The paper's study, config/config.yaml, validated."""
    return load_config(REPO / "config" / "config.yaml", SCHEMA)


@pytest.fixture(scope="session")
def paper_jobs(paper) -> list:
    """Snakemake's own jobs for the paper's study (a dry run: their counts are checked in
    tests/test_workflow.py)."""
    return study_jobs(paper)


def dataset_spec(**keys) -> dict:
    """A `datasets.train` entry with the schema's defaults, as a validated config holds it."""
    return validate_section("datasets", {"train": keys})["train"]


@pytest.fixture(scope="session")
def tiny_neox_config() -> GPTNeoXConfig:
    return GPTNeoXConfig(
        vocab_size=512,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=32,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
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


# Auto-interp test data (tests/test_autointerp_scoring.py, tests/test_autointerp_llm.py).
TOKEN_LATENT, RANDOM_LATENT = 3, 5


@pytest.fixture()
def model_dir(tmp_path, small_tokenizer, tiny_neox):
    tiny_neox.save_pretrained(tmp_path / "model" / "main")
    small_tokenizer.save_pretrained(tmp_path / "model" / "main")
    return {"location": str(tmp_path / "model"), "revision": "main", "step0_revision": "step0"}


@pytest.fixture()
def local_model(tmp_path, tiny_neox, small_tokenizer):
    """A local directory laid out like Pythia's hub revisions."""
    for revision in ("main", "step0"):
        tiny_neox.save_pretrained(tmp_path / revision)
        small_tokenizer.save_pretrained(tmp_path / revision)
    return tmp_path


@pytest.fixture()
def raw_dir(tmp_path):
    """Latent 3 fires exactly on two token ids; latent 5 as often, at random positions."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(20, 500, size=(300, 32))
    tokens[rng.random(tokens.shape) < 0.04] = 300
    tokens[rng.random(tokens.shape) < 0.04] = 301
    on_token = np.argwhere(np.isin(tokens, [300, 301]))
    at_random = np.argwhere(rng.random(tokens.shape) < len(on_token) / tokens.size)
    locations = np.concatenate(
        [
            np.c_[on_token, np.full(len(on_token), TOKEN_LATENT)],
            np.c_[at_random, np.full(len(at_random), RANDOM_LATENT)],
        ]
    )
    activations = np.concatenate(
        [np.where(tokens[tuple(on_token.T)] == 300, 2.0, 1.0), rng.uniform(0.5, 2.0, len(at_random))]
    )
    from saerand.autointerp.latents import LatentSelection, save_latents

    selection = LatentSelection(16, 2, 0, 0, [TOKEN_LATENT, RANDOM_LATENT], [len(on_token), len(at_random)])
    save_latents(
        tmp_path / "latents",
        "layers.0",
        tokens,
        locations,
        activations,
        selection,
        {"cache_ctx_len": 32, "model_name": "unused"},
    )
    return tmp_path / "latents"


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, pydoc_text_file) -> Path:
    """The stand-in for the 70B explainer/scorer that vLLM serves on this CPU (tests/llm_double.py)."""
    from saerand.tiny_model import train_tokenizer

    from .llm_double import make_tiny_llama

    tokenizer = train_tokenizer([str(pydoc_text_file)], vocab_size=512, context_length=32)
    return make_tiny_llama(tmp_path_factory.mktemp("llm") / "llama", tokenizer)


@pytest.fixture()
def token_ids() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 512, size=(24, 32)).astype(np.int32)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory, worker_id) -> tuple[Path, int]:
    """tests/configs/mini.yaml run end to end locally; also the reference for the Slurm run. Run
    once per session: pytest-xdist's workers share it (the first to ask runs it, the others wait)."""
    shared = tmp_path_factory.getbasetemp()
    shared = shared if worker_id == "master" else shared.parent
    workdir, done = shared / "mini", shared / "mini.done.json"
    with FileLock(shared / "mini.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a worker's failed attempt
            shutil.rmtree(_snapshot(workdir), ignore_errors=True)
            workdir.mkdir()
            most_shards = run_watching_shards(workdir)[0]
            shutil.copytree(workdir, _snapshot(workdir), symlinks=True)  # copy2 keeps every mtime
            done.write_text(json.dumps(most_shards))
    return workdir, json.loads(done.read_text())


def _snapshot(workdir: Path) -> Path:
    return workdir.with_name(f"{workdir.name}.snapshot")


@pytest.fixture(scope="session")
def mini_snapshot(mini_run) -> Path:
    """The finished mini run as it was before any test touched it, for the tests that copy a
    finished study: the tests of mini_run itself rerun parts of it in place, one after the other
    on one xdist worker, while these may run on the other."""
    return _snapshot(mini_run[0])


# Fixtures that run the workflow, a Slurm cluster or an LLM server: every test using one takes
# minutes and is marked slow, so `pytest -m "not slow"` is the quick loop (README: Development).
SLOW_FIXTURES = {"mini_run", "finished_run", "slurm_study", "served_llm", "tiny_llama"}
# scripts/test.sh runs the suite on two pytest-xdist workers (--dist loadgroup): the tests that share
# a costly fixture run on one worker, each group whole, the largest first: the Slurm cluster's
# (which mostly waits on its jobs' time limits) beside the local workflow runs'.
XDIST_GROUPS = (
    ("slurm", lambda item: item.path.name.startswith("test_slurm")),
    ("rerun", lambda item: "finished_run" in item.fixturenames),
    ("llm", lambda item: {"served_llm", "tiny_llama"} & set(item.fixturenames)),
    ("paper", lambda item: "paper_jobs" in item.fixturenames),
    # Tests that work in the shared mini run itself; those on a copy (mini_snapshot) go anywhere.
    ("mini", lambda item: "mini_run" in item.fixturenames and "mini_snapshot" not in item.fixturenames),
)


# First among the hooks: xdist's worker reads the groups in its own hook, registered after this file.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    rank = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        group = next((name for name, member in XDIST_GROUPS if member(item)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item] = [name for name, _ in XDIST_GROUPS].index(group) if group else len(XDIST_GROUPS)
    items.sort(key=rank.__getitem__)  # stable: each group in collection order, the groups first

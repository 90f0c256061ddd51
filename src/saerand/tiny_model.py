"""The offline default's subject model: a byte-level BPE tokenizer and a tiny Pythia-style GPT-NeoX.

Saved like a Pythia checkpoint with revisions: `<dir>/step0` is the seeded initialisation and
`<dir>/main` the trained model, each loadable with `from_pretrained` (tokenizer included).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)

EOS = "<|endoftext|>"


def train_tokenizer(text_files: list[str], vocab_size: int, context_length: int):
    """Byte-level BPE with <|endoftext|> as id 0 and as bos/eos/unk/pad, as in Pythia."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train(text_files, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=context_length,
    )


def neox_config(architecture: dict[str, Any], vocab_size: int) -> GPTNeoXConfig:
    """Pythia's choices at small size: partial rotary, parallel residual, untied unembedding."""
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=architecture["hidden_size"],
        num_hidden_layers=architecture["num_hidden_layers"],
        num_attention_heads=architecture["num_attention_heads"],
        intermediate_size=architecture["intermediate_size"],
        max_position_embeddings=architecture["context_length"],
        rotary_pct=architecture["rotary_pct"],
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )


@torch.no_grad()
def mean_cross_entropy(model, sequences: np.ndarray, batch_size: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        ids = torch.from_numpy(sequences[start : start + batch_size]).long()
        loss = model(input_ids=ids, labels=ids).loss
        n = ids.numel() - len(ids)
        total += loss.item() * n
        count += n
    return total / count


def unigram_cross_entropy(train: np.ndarray, held_out: np.ndarray, vocab_size: int) -> float:
    """Baseline: CE of add-one unigram frequencies from `train` on `held_out`'s targets."""
    counts = np.bincount(train.ravel(), minlength=vocab_size) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[held_out[:, 1:].ravel()].mean())


def train_language_model(
    config: GPTNeoXConfig,
    training: dict[str, Any],
    train_ids: np.ndarray,
    eval_ids: np.ndarray,
) -> tuple[GPTNeoXForCausalLM, GPTNeoXForCausalLM, list[dict[str, float]]]:
    """Return (initialisation, trained model, evaluation log). Stops by step count, not time."""
    torch.manual_seed(training["seed"])
    model = GPTNeoXForCausalLM(config)
    init = GPTNeoXForCausalLM(config)
    init.load_state_dict(model.state_dict())

    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=training["lr"],
        betas=(0.9, 0.95),
        weight_decay=training["weight_decay"],
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, training["warmup_steps"], training["steps"])
    sampler = np.random.default_rng(training["seed"])
    log = [{"step": 0, "eval_ce": mean_cross_entropy(model, eval_ids)}]
    progress = tqdm(range(1, training["steps"] + 1), desc="training subject model")
    for step in progress:
        model.train()
        rows = sampler.integers(0, len(train_ids), size=training["batch_size"])
        ids = torch.from_numpy(train_ids[rows]).long()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % training["eval_every"] == 0 or step == training["steps"]:
            log.append({"step": step, "train_loss": loss.item(), "eval_ce": mean_cross_entropy(model, eval_ids)})
            if not math.isfinite(log[-1]["eval_ce"]):
                raise FloatingPointError(f"subject model diverged at step {step}: {log[-1]}")
    model.eval()
    return init, model, log


def save_revision(model, tokenizer, directory: Path) -> None:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)

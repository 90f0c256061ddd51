"""TopK SAE training from the activation cache with sparsify's SparseCoder.

The loop keeps what sparsify 1.3.3's Trainer does per step: seed right before building the SAE in
fp32, b_dec from the first batch's mean, unit-norm decoder rows before every forward, AuxK on
latents dead for `dead_feature_threshold` tokens, loss fvu + auxk_alpha * auxk + multi_topk_fvu / 8,
gradient parallel to decoder rows removed, lr scaled by sqrt(2**14 / num_latents), and the
schedule-free average saved (optimizer.eval()). Batches are `batch_size` sequences of the cache in
order, as the Trainer's unshuffled DataLoader feeds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig
from sparsify.sign_sgd import SignSGD
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .atomic import atomic_directory, write_json
from .cache import ActivationCache


def default_lr(optimizer: str, num_latents: int) -> float:
    scale = (num_latents / 2**14) ** 0.5
    return {"signum": 5e-3, "adam": 2e-4}[optimizer] / scale


def _optimizer(sae: SparseCoder, settings: dict[str, Any], num_steps: int):
    lr = settings.get("lr") or default_lr(settings["optimizer"], sae.num_latents)
    if settings["optimizer"] == "signum":
        optimizer = ScheduleFreeWrapper(SignSGD(sae.parameters(), lr=lr), momentum=0.95)
        optimizer.train()
        return optimizer, None, lr
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    schedule = get_linear_schedule_with_warmup(optimizer, settings.get("lr_warmup_steps", 1000), num_steps)
    return optimizer, schedule, lr


def train_sae(cache: ActivationCache, layer: int, settings: dict[str, Any], context_length: int) -> tuple[SparseCoder, dict]:
    """Train one SAE on `layer` of `cache`; returns it (eval mode) and a training summary."""
    device = settings.get("device", "cpu")
    batch_rows = settings["batch_size"] * context_length
    num_steps = -(-cache.n_tokens // batch_rows)
    torch.manual_seed(settings.get("seed", 0))
    sae = SparseCoder(
        cache.d_model,
        SparseCoderConfig(expansion_factor=settings["expansion_factor"], k=settings["k"]),
        device,
        dtype=torch.float32,
    )
    optimizer, schedule, lr = _optimizer(sae, settings, num_steps)
    auxk_alpha = settings.get("auxk_alpha", 0.0)
    threshold = settings.get("dead_feature_threshold", 10_000_000)
    clip = settings.get("grad_clip_norm")
    tokens_since_fired = torch.zeros(sae.num_latents, dtype=torch.long, device=device)
    did_fire = torch.zeros(sae.num_latents, dtype=torch.bool, device=device)
    fvu_trace: list[float] = []

    progress = tqdm(cache.batches(layer, batch_rows), total=num_steps, desc=f"SAE layers.{layer}")
    for step, batch in enumerate(progress):
        x = batch.to(device)
        if step == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        dead_mask = tokens_since_fired > threshold if auxk_alpha > 0 else None
        total_variance = (x - x.mean(0)).pow(2).sum()
        out = sae(x, dead_mask=dead_mask, total_variance=total_variance)
        did_fire[out.latent_indices.flatten()] = True
        loss = out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad()
        if schedule is not None:
            schedule.step()
        with torch.no_grad():
            tokens_since_fired += len(x)
            tokens_since_fired[did_fire] = 0
            did_fire.zero_()
        fvu_trace.append(out.fvu.item())
        progress.set_postfix(fvu=f"{fvu_trace[-1]:.3f}")

    if isinstance(optimizer, ScheduleFreeWrapper):
        optimizer.eval()  # the schedule-free average is the model sparsify saves
    sae.eval()
    summary = {
        "steps": len(fvu_trace),
        "tokens": cache.n_tokens,
        "lr": lr,
        "final_train_fvu": fvu_trace[-1] if fvu_trace else None,
        "first_train_fvu": fvu_trace[0] if fvu_trace else None,
        "dead_pct_sparsify": (tokens_since_fired > threshold).float().mean().item(),
    }
    return sae, summary


def save_sae(sae: SparseCoder, directory: str | Path, provenance: dict[str, Any]) -> None:
    """sparsify's own format (cfg.json + sae.safetensors) plus provenance.json, published at once."""
    with atomic_directory(directory) as staging:
        sae.save_to_disk(staging)
        write_json(staging / "provenance.json", provenance)

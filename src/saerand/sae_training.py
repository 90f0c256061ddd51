"""TopK SAE training from the activation cache with sparsify's SparseCoder.

The loop keeps what sparsify 1.3.3's Trainer does per step: seed right before building the SAE in
fp32, b_dec from the first batch's mean, unit-norm decoder rows before every forward, AuxK on
latents dead for `dead_feature_threshold` tokens, loss fvu + auxk_alpha * auxk + multi_topk_fvu / 8,
gradients accumulated over grad_acc_steps batches of micro_acc_steps chunks, gradient parallel to
decoder rows removed, lr scaled by sqrt(2**14 / num_latents), and the schedule-free average saved
(optimizer.eval()). `loop: authors` with config/presets/authors_sae.yaml trains as the paper's
authors' fork of EleutherAI's sae does instead (geometric-median decoder bias, clipping after every
batch, 8-bit Adam, the schedule sized in batches). Batches are `batch_size` sequences' worth of
activations: in stored order, as the Trainer's unshuffled DataLoader feeds them (`buffer_shuffle`
off, which the parity tests use), or mixed across the activation buffer. SaeTrainer checkpoints everything
(weights, optimizer and schedule state, dead-latent counters, a step's accumulated gradients), so
training split over activation shards gives the same weights as one pass. The SAEs of one layer (the sweep points) train side by
side from one read of each batch (train_together), each exactly as it would alone.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig
from sparsify.sign_sgd import SignSGD
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .atomic import atomic_directory, write_json
from .cache import ActivationCache, ReaderStats
from .devices import resolve_device
from .finished_sae import FINISHED
from .paths import CURVE_FILE, sae_directory
from .settings import SaeSettings, from_config
from .study import SaeHyperparameters
from .topk_encoder import topk_before_relu
from .tracking import CurveWriter, run_directory

# Points of each SAE's training curve (saved beside it as config.CURVE_FILE).
CURVE_POINTS = 200


def job_settings(sae_param: dict[str, Any]) -> SaeSettings:
    """A job's `sae` param (the config section at its SAE's point) as settings on this job's device."""
    settings = from_config(SaeSettings, sae_param, "sae")
    return dataclasses.replace(settings, device=resolve_device(settings.device))


def default_lr(optimizer: str, num_latents: int) -> float:
    scale = (num_latents / 2**14) ** 0.5
    return {"signum": 5e-3, "adam": 2e-4}[optimizer] / scale


def sparsify_adam_is_8bit() -> bool:
    """Whether sparsify's Trainer, given optimizer adam, takes bitsandbytes' 8-bit Adam: it does
    whenever bitsandbytes is installed (so do the authors' fork), and torch's Adam otherwise."""
    return importlib.util.find_spec("bitsandbytes") is not None


def _adam_class(settings: SaeSettings):
    if not settings.adam_8bit:
        return functools.partial(torch.optim.Adam, fused=settings.fused_adam or None)
    if settings.fused_adam:
        raise ValueError(
            "sae.adam_8bit and sae.fused_adam exclude each other: bitsandbytes' 8-bit Adam is its own kernel"
        )
    try:
        from bitsandbytes.optim import Adam8bit
    except ImportError as error:
        raise ImportError(
            "sae.adam_8bit needs bitsandbytes (pip install bitsandbytes==0.50.2, envs/sae.yaml has it); "
            "or set sae.adam_8bit: false"
        ) from error
    return Adam8bit


def _optimizer(sae: SparseCoder, settings: SaeSettings, num_batches: int):
    lr = settings.lr or default_lr(settings.optimizer, sae.num_latents)
    if settings.optimizer == "signum":
        if settings.adam_8bit:
            raise ValueError("sae.adam_8bit applies to optimizer adam, not signum")
        optimizer = ScheduleFreeWrapper(SignSGD(sae.parameters(), lr=lr), momentum=0.95)
        optimizer.train()
        return optimizer, None, lr
    optimizer = _adam_class(settings)(sae.parameters(), lr=lr)
    # sparsify's Trainer and the authors' fork size the decay in batches but step it per optimizer
    # step: with gradient accumulation the learning rate never decays far.
    length = num_batches if settings.lr_schedule_length == "batches" else -(-num_batches // settings.grad_acc_steps)
    schedule = get_linear_schedule_with_warmup(optimizer, settings.lr_warmup_steps, length)
    return optimizer, schedule, lr


def geometric_median(points: torch.Tensor, max_iterations: int = 100, tolerance: float = 1e-5) -> torch.Tensor:
    """The point minimising the summed distances to `points` (rows), by Weiszfeld's iteration from
    their mean, stopping as the authors' fork does (100 iterations, or a move under 1e-5)."""
    guess = points.mean(0)
    for _ in range(max_iterations):
        weights = 1 / torch.linalg.vector_norm(points - guess, dim=1).clamp_min(torch.finfo(points.dtype).tiny)
        previous, guess = guess, (weights / weights.sum()) @ points
        if torch.linalg.vector_norm(guess - previous) < tolerance:
            break
    return guess


class SaeTrainer:
    """One SAE's complete training state, so training can stop after any shard and resume exactly."""

    def __init__(self, d_in: int, settings: SaeSettings, num_steps: int):
        self.settings = settings
        self.device = settings.device
        self.num_steps = num_steps
        torch.manual_seed(settings.seed)
        self.sae = SparseCoder(
            d_in,
            SparseCoderConfig(expansion_factor=settings.expansion_factor, k=settings.k),
            self.device,
            dtype=torch.float32,
        )
        if settings.topk_before_relu:
            self.sae.encode = functools.partial(topk_before_relu, self.sae, relu_all=settings.auxk_alpha > 0)
        self.optimizer, self.schedule, self.lr = _optimizer(self.sae, settings, num_steps)
        self.tokens_since_fired = torch.zeros(self.sae.num_latents, dtype=torch.long, device=self.device)
        # Latents fired and tokens seen since the last optimizer step (gradient accumulation).
        self.fired_in_step = torch.zeros(self.sae.num_latents, dtype=torch.bool, device=self.device)
        self.tokens_in_step = 0
        self.step = 0  # batches trained on; an optimizer step every grad_acc_steps of them
        self.tokens_seen = 0
        # The training curve: a point every curve_every batches (CURVE_POINTS over the training),
        # with the share of latents that fired since the last point and the share dead by AuxK's count.
        self.curve_every = max(1, num_steps // CURVE_POINTS)
        self.fired_in_window = torch.zeros(self.sae.num_latents, dtype=torch.bool, device=self.device)
        self._curve: list[list[float]] = []
        self._curve_pending: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        self._fvu_trace: list[float] = []
        self._fvu_pending: list[torch.Tensor] = []  # on the device until read: no host sync per step

    @property
    def fvu_trace(self) -> list[float]:
        """The training FVU of every chunk so far, one per batch unless micro_acc_steps splits them
        (reading it waits for the device)."""
        if self._fvu_pending:
            self._fvu_trace.extend(torch.stack(self._fvu_pending).tolist())
            self._fvu_pending.clear()
        return self._fvu_trace

    @property
    def curve(self) -> list[dict[str, float]]:
        """The training curve so far: per point, the batches and tokens trained on, the mean FVU of
        the chunks since the previous point, the share of latents that fired since it, and the
        share dead (not fired for dead_feature_threshold tokens)."""
        trace, chunks = self.fvu_trace, self.settings.micro_acc_steps
        points, previous = [], 0
        for step, tokens, fired, dead in self._curve_points():
            window = trace[previous * chunks : int(step) * chunks]
            points.append(
                {
                    "batches": int(step),
                    "tokens": int(tokens),
                    "fvu": sum(window) / len(window),
                    "fired_fraction": fired,
                    "dead_fraction": dead,
                }
            )
            previous = int(step)
        return points

    def _curve_points(self) -> list[list[float]]:
        """[batches, tokens, fired share, dead share] per point (reading it waits for the device)."""
        if self._curve_pending:
            self._curve.extend(
                [step, tokens, float(fired), float(dead)] for step, tokens, fired, dead in self._curve_pending
            )
            self._curve_pending.clear()
        return self._curve

    def step_on(self, x: torch.Tensor) -> None:
        """Train on one batch of activations (already on this trainer's device): forward and
        backward per chunk, and the optimizer step once grad_acc_steps batches have added up."""
        settings = self.settings
        sae = self.sae
        accumulated = settings.grad_acc_steps * settings.micro_acc_steps
        if self.step == 0:
            sae.b_dec.data = geometric_median(x) if settings.decoder_bias_init == "geometric_median" else x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        dead_mask = self.tokens_since_fired > settings.dead_feature_threshold if settings.auxk_alpha > 0 else None
        batch_variance = (x - x.mean(0)).pow(2).sum()
        for chunk in x.chunk(settings.micro_acc_steps):
            # sparsify normalises every chunk by its batch; the authors' fork by the chunk itself.
            variance = batch_variance if settings.loop == "sparsify" else (chunk - chunk.mean(0)).pow(2).sum()
            out = sae(chunk, dead_mask=dead_mask, total_variance=variance)
            loss = out.fvu + settings.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
            loss.div(accumulated).backward()
            self.fired_in_step[out.latent_indices.flatten()] = True
            self.fired_in_window[out.latent_indices.flatten()] = True
            self._fvu_pending.append(out.fvu.detach())
        if settings.loop == "authors" and settings.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), settings.grad_clip_norm)
        self.step += 1
        self.tokens_seen += len(x)
        self.tokens_in_step += len(x)
        if self.step % settings.grad_acc_steps == 0:
            self._optimizer_step()
        if self.step % self.curve_every == 0:
            dead = (self.tokens_since_fired > settings.dead_feature_threshold).float().mean()
            self._curve_pending.append((self.step, self.tokens_seen, self.fired_in_window.float().mean(), dead))
            self.fired_in_window.zero_()

    def _optimizer_step(self) -> None:
        clip = self.settings.grad_clip_norm
        self.sae.remove_gradient_parallel_to_decoder_directions()
        if self.settings.loop == "sparsify" and clip is not None:
            torch.nn.utils.clip_grad_norm_(self.sae.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.schedule is not None:
            self.schedule.step()
        with torch.no_grad():
            self.tokens_since_fired += self.tokens_in_step
            self.tokens_since_fired.masked_fill_(self.fired_in_step, 0)  # no host sync, unlike a boolean index
        self.fired_in_step.zero_()
        self.tokens_in_step = 0

    def train_on(self, batches, *, description: str = "SAE") -> None:
        train_together([self], batches, description=description)

    def state_dict(self) -> dict[str, Any]:
        return {
            "d_in": self.sae.d_in,
            "sae": self.sae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "tokens_since_fired": self.tokens_since_fired,
            # An optimizer step in the making when the shard ended: the next shard completes it.
            "fired_in_step": self.fired_in_step,
            "tokens_in_step": self.tokens_in_step,
            "accumulated_grads": [parameter.grad for parameter in self.sae.parameters()],
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "fvu_trace": self.fvu_trace,
            "curve": self._curve_points(),
            "fired_in_window": self.fired_in_window,
            "num_steps": self.num_steps,
        }

    def write_checkpoint(self, directory: Path, provenance: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "trainer_state.pt")
        write_json(directory / "provenance.json", provenance | {"step": self.step, "tokens_seen": self.tokens_seen})

    @classmethod
    def from_checkpoint(cls, directory: str | Path, settings: SaeSettings) -> SaeTrainer:
        state = torch.load(Path(directory) / "trainer_state.pt", map_location=settings.device, weights_only=True)
        trainer = cls(state["d_in"], settings, state["num_steps"])
        trainer.sae.load_state_dict(state["sae"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.schedule is not None:
            trainer.schedule.load_state_dict(state["schedule"])
        trainer.tokens_since_fired.copy_(state["tokens_since_fired"])
        if "fired_in_step" in state:  # checkpoints from before gradient accumulation have none
            trainer.fired_in_step.copy_(state["fired_in_step"])
            trainer.tokens_in_step = state["tokens_in_step"]
            for parameter, grad in zip(trainer.sae.parameters(), state["accumulated_grads"], strict=True):
                parameter.grad = grad
        trainer.step, trainer.tokens_seen = state["step"], state["tokens_seen"]
        trainer._fvu_trace = list(state["fvu_trace"])
        if "curve" in state:  # checkpoints from before training curves have none
            trainer._curve = [list(point) for point in state["curve"]]
            trainer.fired_in_window.copy_(state["fired_in_window"])
        return trainer

    def finish(self) -> tuple[SparseCoder, dict[str, Any]]:
        """The SAE to save (schedule-free average, as sparsify saves it) and a summary."""
        if isinstance(self.optimizer, ScheduleFreeWrapper):
            self.optimizer.eval()
        self.sae.eval()
        threshold = self.settings.dead_feature_threshold
        return self.sae, {
            "steps": self.step,
            "optimizer_steps": self.step // self.settings.grad_acc_steps,
            "tokens": self.tokens_seen,
            "lr": self.lr,
            "first_train_fvu": self.fvu_trace[0] if self.fvu_trace else None,
            "final_train_fvu": self.fvu_trace[-1] if self.fvu_trace else None,
            "dead_pct_sparsify": (self.tokens_since_fired > threshold).float().mean().item(),
        }


# Steps between two looks at the training FVU for the progress bar: each look waits for the GPU.
PROGRESS_EVERY = 100


def train_together(
    trainers: list[SaeTrainer],
    batches,
    *,
    description: str = "SAEs",
    curve_writers: list[CurveWriter] | None = None,
) -> None:
    """Train SAEs of one layer side by side from one read of each batch. Each takes exactly the
    steps it would take alone (its own seed, optimizer and counters; the batches do not depend on
    expansion or k), so every SAE's weights equal those of training it alone. `batches` are best
    already on the trainers' device and read ahead (ActivationCache.batches). `curve_writers`, one
    per trainer, get each curve point as it is made (saerand.tracking)."""
    if len({(trainer.step, trainer.num_steps, trainer.device) for trainer in trainers}) != 1:
        raise ValueError("SAEs trained together must be at the same step of the same schedule on one device")
    first = trainers[0]
    # TF32 tensor cores for the float32 matmuls on a GPU, as sparsify's Trainer.fit sets (no effect on a CPU).
    torch.set_float32_matmul_precision("high")
    progress = tqdm(batches, initial=first.step, total=first.num_steps, desc=description)
    for batch in progress:
        x = batch.to(first.device, non_blocking=True)
        for trainer in trainers:
            trainer.step_on(x)
        if first.step % PROGRESS_EVERY == 0:
            progress.set_postfix(fvu=" ".join(f"{trainer.fvu_trace[-1]:.3f}" for trainer in trainers))
        if curve_writers and first.step % first.curve_every == 0:
            for trainer, writer in zip(trainers, curve_writers, strict=True):
                writer.write(trainer.curve)


def save_layer_checkpoint(directory: str | Path, trainers: dict[str, SaeTrainer], provenance: dict[str, Any]) -> None:
    """Every SAE's training state after a shard, one subdirectory per SAE label, published at once.
    After the last shard each SAE's subdirectory also holds it finished (finished_sae.FINISHED), so
    finalize_sae only publishes files and needs neither torch nor sparsify."""
    with atomic_directory(directory) as staging:
        for label, trainer in trainers.items():
            trainer.write_checkpoint(staging / label, provenance | {"sae_config": dataclasses.asdict(trainer.settings)})
            if trainer.step >= trainer.num_steps:
                sae, summary = trainer.finish()  # after the state is written: finish() swaps in the eval weights
                save_sae(sae.cpu(), staging / label / FINISHED, {"training": summary}, curve=trainer.curve)


def batch_rows(settings: SaeSettings, context_length: int) -> int:
    """Activations per step: sparsify counts its batch size in sequences."""
    return settings.batch_size * context_length


def buffer_order_seed(settings: SaeSettings, shard: int) -> int | None:
    """The seed of a shard's reading order (None: stored order), fixed by (SAE seed, shard) so a
    rerun or resumed shard reads exactly the same batches."""
    if not settings.buffer_shuffle:
        return None
    return int(np.random.SeedSequence((settings.seed, shard)).generate_state(1, np.uint64)[0])


def training_batches(
    cache: ActivationCache,
    layer: int,
    settings: SaeSettings,
    context_length: int,
    shard: int = 0,
    stats: ReaderStats | None = None,
):
    """One shard's training batches on the SAEs' device, in stored order or mixed across the buffer
    (`buffer_shuffle`), read ahead by `read_threads` threads."""
    return cache.batches(
        layer,
        batch_rows(settings, context_length),
        shuffle_seed=buffer_order_seed(settings, shard),
        window_chunks=settings.buffer_window_chunks,
        block_rows=settings.buffer_block_rows,
        device=settings.device,
        read_threads=settings.read_threads,
        stats=stats,
    )


def retrain_hint(model: str, variant: str, layer: int | str, point: SaeHyperparameters) -> str:
    """How to retrain one SAE's layer chain, and nothing else: its chain (model, variant, layer),
    shard by shard, finishing only that SAE."""
    target = f"{sae_directory(model, variant, layer, point.expansion_factor, point.k)}/sae"
    return f"retrain its layer's chain: snakemake --forcerun train_layer_shard -- {target}"


def train_layer_shard(
    cache: ActivationCache,
    layer: int,
    shard: int,
    sae_settings: SaeSettings,
    points: list[SaeHyperparameters],
    context_length: int,
    train_tokens: int,
    previous: str | Path | None = None,
    chain: tuple[str, str] = ("{model}", "{variant}"),
    tensorboard: str | Path | None = None,
) -> dict[str, SaeTrainer]:
    """Train every SAE of `points` on one layer of one training shard, from one read of each batch,
    starting fresh (shard 0) or from the `previous` shard's layer checkpoint; with `tensorboard` (a
    directory), each SAE's curve is written there as it trains."""
    num_steps = math.ceil(train_tokens / batch_rows(sae_settings, context_length))
    trainers = {}
    for point in points:
        settings = dataclasses.replace(sae_settings, expansion_factor=point.expansion_factor, k=point.k)
        if previous is None:
            trainers[point.label] = SaeTrainer(cache.d_model, settings, num_steps)
            continue
        if not (Path(previous) / point.label).is_dir():
            raise FileNotFoundError(
                f"{previous} holds no training state of SAE {point.label}: its chain was started for other SAEs; "
                f"{retrain_hint(*chain, layer, point)}"
            )
        trainers[point.label] = SaeTrainer.from_checkpoint(Path(previous) / point.label, settings)
    writers = [
        CurveWriter(run_directory(tensorboard, *chain, point, layer), trainers[point.label].step)
        for point in points
        if tensorboard is not None
    ]
    train_together(
        list(trainers.values()),
        training_batches(cache, layer, sae_settings, context_length, shard),
        description=f"{len(trainers)} SAEs layers.{layer} shard {shard}",
        curve_writers=writers,
    )
    for writer in writers:
        writer.close()
    return trainers


def train_sae(
    cache: ActivationCache, layer: int, settings: SaeSettings, context_length: int
) -> tuple[SparseCoder, dict]:
    """Train one SAE on all of `layer` in `cache` (one shard); returns it (eval mode) and a summary."""
    rows = batch_rows(settings, context_length)
    trainer = SaeTrainer(cache.d_model, settings, num_steps=-(-cache.n_tokens // rows))
    trainer.train_on(training_batches(cache, layer, settings, context_length), description=f"SAE layers.{layer}")
    return trainer.finish()


def save_sae(
    sae: SparseCoder, directory: str | Path, provenance: dict[str, Any], curve: list[dict[str, float]] | None = None
) -> None:
    """sparsify's own format (cfg.json + sae.safetensors) plus provenance.json and the training
    curve (SaeTrainer.curve) as training_curve.csv, published at once."""
    with atomic_directory(directory) as staging:
        sae.save_to_disk(staging)
        write_json(staging / "provenance.json", provenance)
        if curve:
            with open(staging / CURVE_FILE, "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=list(curve[0]))
                writer.writeheader()
                writer.writerows(curve)

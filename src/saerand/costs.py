"""Cost model of the study's jobs: FLOPs, bytes moved, steps, memory and disk from the model and
SAE sizes, and their time on a device (saerand.device_rates: fixed cost per step + dense FLOPs at the
matmul rate + bytes at the memory bandwidth, and no less than a store's bytes at the disk's rate).

One model serves both the planner (GPU-hours and disk before anything runs) and the cluster
resources each job asks for (memory and time limit, scaled by the retry attempt).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saerand.config import ConfigError
from saerand.device_rates import DeviceRates, newest_gpu_rates
from saerand.rules import GPU_RULES
from saerand.settings import ModelSettings, study_settings
from saerand.study import SaeHyperparameters, SaeTarget, Study, toy_latent_counts

SCORERS = ("fuzz", "detection")  # delphi's, both run per latent (saerand.autointerp.scoring)
PYTHIA_VOCAB = 50304  # padded; hub and local models are Pythias, the embedded model has its own
CACHE_BYTES = {"float32": 4, "float16": 2}
# "auto" is bfloat16 on the GPU nodes the cost model plans for.
MODEL_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2}
# Time limits are the estimate times this margin plus start-up: loading (or downloading) the subject
# model for jobs that run it, reading a checkpoint for the others.
RUNTIME_MARGIN = 3.0
MODEL_STARTUP_MINUTES = 10
SAE_STARTUP_MINUTES = 2
# Toy sweeps of small data run on one CPU core (rule toy_sweep), which does about 57 GFLOP/s per L1
# SAE (1024 latents, 256 dims, 100 epochs in 40-57 s on this project's 2-core machine); those of
# large matrices (toy.gpu_sources: GloVe, embeddings) would take thousands of core-hours and keep a
# GPU (rule toy_sweep_gpu).
CPU_CORE_FLOPS = 57e9
# Bytes a TopK SAE's optimizer step moves through device memory per weight: fused Adam reads the
# weight, its gradient and both moments and writes three (28); the backward writes the gradients and
# zeroing them writes again (8); clipping reads them (4). Per decoder weight also the renormalisation
# (read, write: 8) and the gradient projection (read weight and gradient, write gradient: 12).
STEP_BYTES_PER_WEIGHT, STEP_BYTES_PER_DECODER_WEIGHT = 40, 20
# Per token and latent: the encoder's float32 pre-activations written, then read by the top-k.
PREACTIVATION_BYTES = 8
TOY_KINDS = 4  # inputs, Gaussian control, and both through the random MLP
# delphi's prompts in tokens (about 4 characters each, measured on its prompts for 8-token examples):
# the explainer's system prompt and few-shot examples, and per example shown its text and its
# activations line (about 2.5 tokens per example token); a scorer's fixed part (the fuzzing one; the
# detection one is a little shorter) and per sample about 1.25 tokens per example token; answers.
EXPLAIN_FIXED_TOKENS, EXPLAIN_TOKENS_PER_EXAMPLE_TOKEN = 640, 2.5
SCORE_FIXED_TOKENS, SCORE_TOKENS_PER_SAMPLE_TOKEN = 670, 1.25
ANSWER_TOKENS = 60
# The served LLM per GPU: its work is reading prompts (answers are about 1% of the tokens), with
# INT4 weights and vLLM's batching; about a fifth of an H100's 990 TFLOP/s dense bf16 peak.
LLM_GPU_FLOPS = 200e12
LLM_STARTUP_MINUTES = 15  # 35 GB of weights from a shared filesystem, and the engine's warm-up
# GloVe files whose size is not known before they are read: glove.6B has 400K words of 300 dims.
GLOVE_ROWS, GLOVE_DIMS = 400_000, 300


@dataclass(frozen=True)
class ModelSize:
    n_layers: int
    d_model: int
    vocab: int
    dtype: str

    @classmethod
    def of(cls, model: ModelSettings, vocab: int = PYTHIA_VOCAB) -> ModelSize:
        """A `models` entry's shapes (its vocabulary is given only for the embedded model)."""
        return cls(model.n_layers, model.d_model, vocab, model.dtype)

    def block_params(self) -> int:
        # GPT-NeoX block: fused QKV + output projection (4 d^2) and a 4x MLP (8 d^2).
        return 12 * self.d_model**2

    def params(self) -> int:
        return self.n_layers * self.block_params() + 2 * self.vocab * self.d_model

    def forward_flops_per_token(self, through_layer: int, context: int, logits: bool = False) -> float:
        """Matmul FLOPs of one token through blocks 0..through_layer (causal attention included)."""
        per_block = 2 * self.block_params() + 2 * context * self.d_model
        return (through_layer + 1) * per_block + (2 * self.vocab * self.d_model if logits else 0)


def sae_latents(d_model: int, expansion_factor: int) -> int:
    return d_model * expansion_factor


def sae_training_work(
    d_model: int,
    expansion_factor: int,
    tokens: int,
    batch_tokens: int,
    grad_acc_steps: int = 1,
    micro_acc_steps: int = 1,
) -> dict[str, float]:
    """The work of training one TopK SAE on `tokens`, as JobCost fields: dense FLOPs, device-memory
    bytes, passes (a forward and backward of one chunk, each with a step's fixed cost) and top-k
    elements. The encoder's forward is the dense work (2 d n per token); sparsify's decoder and
    backward touch only the k active latents of each token, which is small beside it; the top-k goes
    through every latent of every token; the optimizer's passes over the weights come once per
    optimizer step (grad_acc_steps batches)."""
    latents = sae_latents(d_model, expansion_factor)
    batches = tokens / batch_tokens
    weights = 2 * d_model * latents + latents + d_model
    per_step = STEP_BYTES_PER_WEIGHT * weights + STEP_BYTES_PER_DECODER_WEIGHT * d_model * latents
    return {
        "flops": 2 * d_model * latents * tokens,
        "memory_bytes": batches / grad_acc_steps * per_step + PREACTIVATION_BYTES * latents * tokens,
        "steps": batches * micro_acc_steps,
        "topk_elements": latents * tokens,
    }


def sae_state_bytes(d_model: int, expansion_factor: int, optimizer: str, adam_8bit: bool = False) -> int:
    """fp32 weights plus the optimizer's state (Adam: two fp32 moments, or two bytes with 8-bit
    Adam; signum: one fp32 buffer)."""
    weights = 2 * d_model * sae_latents(d_model, expansion_factor) + sae_latents(d_model, expansion_factor) + d_model
    state = {"adam": 2 if adam_8bit else 8, "signum": 4}[optimizer]
    return weights * (4 + state)


def sae_train_gpu_bytes(d_model: int, expansion_factor: int, optimizer: str, batch_tokens: int, adam_8bit=False) -> int:
    """Peak GPU memory of a training step: state, gradients, and the batch's pre-activations."""
    latents = sae_latents(d_model, expansion_factor)
    gradients = 4 * 2 * d_model * latents
    activations = 4 * batch_tokens * latents * 2  # pre-activations and their gradient
    return sae_state_bytes(d_model, expansion_factor, optimizer, adam_8bit) + gradients + activations


@dataclass(frozen=True)
class JobCost:
    flops: float
    host_memory_bytes: int
    disk_bytes: int = 0  # written by the job, and held on disk after it
    startup_minutes: float = MODEL_STARTUP_MINUTES
    memory_bytes: float = 0.0  # moved through device memory besides the matmuls' own
    steps: float = 0.0  # SAE forward and backward passes, each with a step's fixed cost
    half_precision: bool = False  # its matmuls in the subject model's 16-bit dtype
    topk_elements: float = 0.0  # pre-activations its top-k selections go through


class StudyCosts:
    """Per-job costs of one validated study configuration, read from its typed settings and its Study."""

    def __init__(
        self,
        config: dict[str, Any],
        study: Study | None = None,
        gpu_runtime_cap: float | None | Callable[[], float | None] = None,
        rates: DeviceRates | None = None,
    ):
        """`gpu_runtime_cap`: the GPU partition's time limit in minutes (None: none), which an LLM
        server's batch of SAEs must fit in; a function is asked on first need (the workflow's: once
        Snakemake knows whether it submits to Slurm). `rates`: the GPU's (default: the newest bench
        file's)."""
        self.settings = study_settings(config)
        self.rates = newest_gpu_rates() if rates is None else rates
        self.study = Study.of(config) if study is None else study
        self.context = self.settings.tokens.context_length
        self.eval_tokens = self.settings.tokens.eval_tokens // self.context * self.context
        self.cache_bytes = CACHE_BYTES[self.settings.cache.dtype]
        self._layer_points: dict[tuple[str, int], list[SaeHyperparameters]] = {}
        for target in self.study.targets:
            points = self._layer_points.setdefault((target.model, target.layer), [])
            if target.hyperparameters not in points:
                points.append(target.hyperparameters)
        self.lanes = self._scratch_lanes()
        self._gpu_runtime_cap = gpu_runtime_cap

    def chain_scratch_bytes(self, model: str) -> int:
        """Temporary activations one (model, variant) holds at once: two shards (the lookahead)."""
        shards = range(len(self.study.shards))
        return min(2, len(shards)) * max((self.cache_train_shard(model, s).disk_bytes for s in shards), default=0)

    def _scratch_lanes(self) -> int | None:
        """How many chains may hold training activations at once within `scratch_budget`."""
        budget = self.settings.scratch_budget
        if budget is None or not self.study.chains:
            return None
        largest = max(self.chain_scratch_bytes(model) for model, _ in self.study.chains)
        if budget < largest:
            raise ConfigError(
                f"config key 'scratch_budget': {budget} bytes is less than one (model, variant) "
                f"holds at once ({largest} bytes: two shards of its training activations)"
            )
        return budget // largest

    def chain_before(self, model: str, variant: str) -> tuple[str, str] | None:
        """The chain that must finish training before this one caches its first shard: the one
        `lanes` places earlier, so at most `lanes` chains hold activations at once (None: no wait)."""
        index = self.study.chains.index((model, variant))
        return self.study.chains[index - self.lanes] if self.lanes and index >= self.lanes else None

    def size(self, model: str) -> ModelSize:
        spec = self.settings.models[model]
        return (
            ModelSize.of(spec, self.settings.embedded_model.tokenizer.vocab_size)
            if spec.embedded
            else ModelSize.of(spec)
        )

    def cached_layers(self, model: str) -> list[int]:
        """The layers an SAE trains on, the sweep's included: what caching stores."""
        return sorted(layer for m, layer in self._layer_points if m == model)

    def shard_tokens(self, shard: int) -> int:
        start, stop = self.study.shards[shard]
        return (stop - start) * self.context

    def half_precision(self, model: str) -> bool:
        return MODEL_BYTES[self.size(model).dtype] == 2

    def _model_host_bytes(self, model: str) -> int:
        size = self.size(model)
        # from_pretrained holds about one extra copy while converting; 4 GiB for Python and torch.
        return 2 * size.params() * MODEL_BYTES[size.dtype] + 4 * 2**30

    def cache(self, model: str, tokens: int) -> JobCost:
        size, layers = self.size(model), self.cached_layers(model)
        stored = tokens * len(layers) * size.d_model * self.cache_bytes
        return JobCost(
            flops=tokens * size.forward_flops_per_token(max(layers), self.context),
            host_memory_bytes=self._model_host_bytes(model),
            disk_bytes=stored,
            half_precision=self.half_precision(model),
        )

    def cache_train_shard(self, model: str, shard: int) -> JobCost:
        return self.cache(model, self.shard_tokens(shard))

    def cache_eval(self, model: str) -> JobCost:
        return self.cache(model, self.eval_tokens)

    def layer_points(self, model: str, layer: int) -> list[SaeHyperparameters]:
        """The SAEs trained together on one layer (the study's own and the sweep's)."""
        return self._layer_points[model, layer]

    def _sae_state_bytes(self, d_model: int, expansion_factor: int) -> int:
        sae = self.settings.sae
        return sae_state_bytes(d_model, expansion_factor, sae.optimizer, sae.adam_8bit)

    def _chunk_tokens(self) -> int:
        """Tokens of one forward and backward pass of an SAE: a batch, or a chunk of one."""
        sae = self.settings.sae
        return sae.batch_size * self.context // sae.micro_acc_steps

    def train_layer_shard(self, model: str, layer: int, shard: int) -> JobCost:
        """Training every SAE of a layer on one shard from one read of each batch."""
        d_model = self.size(model).d_model
        points = self.layer_points(model, layer)
        sae = self.settings.sae
        states = sum(self._sae_state_bytes(d_model, p.expansion_factor) for p in points)
        chunk = self.settings.cache.chunk_rows * d_model * 4
        batch_tokens = sae.batch_size * self.context
        accumulation = {"grad_acc_steps": sae.grad_acc_steps, "micro_acc_steps": sae.micro_acc_steps}
        work = [
            sae_training_work(d_model, p.expansion_factor, self.shard_tokens(shard), batch_tokens, **accumulation)
            for p in points
        ]
        total = {name: sum(point[name] for point in work) for name in work[0]}
        return JobCost(
            flops=total["flops"],
            # The mixing window in float32 and its permuted copy, one chunk read, one pending.
            host_memory_bytes=2 * states + (2 * sae.buffer_window_chunks + 2) * chunk + 4 * 2**30,
            disk_bytes=states,
            startup_minutes=SAE_STARTUP_MINUTES,
            memory_bytes=total["memory_bytes"],
            steps=total["steps"],
            topk_elements=total["topk_elements"],
        )

    def finalize_sae(self, target: SaeTarget) -> JobCost:
        d_model = self.size(target.model).d_model
        state = self._sae_state_bytes(d_model, target.expansion_factor)
        return JobCost(
            flops=0.0,
            host_memory_bytes=2 * state + 2 * 2**30,
            disk_bytes=self._sae_weight_bytes(target),
            startup_minutes=SAE_STARTUP_MINUTES,
        )

    def export_saelens(self, target: SaeTarget) -> JobCost:
        """The SAE read, its transposed encoder and the copy written: about 1.5x its weights at the
        peak (measured: 1.05 GB for a 513 MB SAE), and the interpreter."""
        weights = self._sae_weight_bytes(target)
        return JobCost(
            flops=0.0, host_memory_bytes=2 * weights + 2**30, disk_bytes=weights, startup_minutes=SAE_STARTUP_MINUTES
        )

    def _sae_weight_bytes(self, target: SaeTarget) -> int:
        d_model = self.size(target.model).d_model
        return 4 * (2 * d_model * sae_latents(d_model, target.expansion_factor))

    def layer_step_gpu_bytes(self, model: str, layer: int) -> int:
        """Peak GPU memory of a layer's training job: every SAE's state resident, one SAE's pass at a time."""
        d_model, sae = self.size(model).d_model, self.settings.sae
        points = self.layer_points(model, layer)
        states = [self._sae_state_bytes(d_model, p.expansion_factor) for p in points]
        passes = [
            sae_train_gpu_bytes(d_model, p.expansion_factor, sae.optimizer, self._chunk_tokens(), sae.adam_8bit)
            for p in points
        ]
        return sum(states) + max(step - state for step, state in zip(passes, states))

    def evaluate_sae(self, target: SaeTarget) -> JobCost:
        size = self.size(target.model)
        # Clean, patched and zero-ablated passes through the whole model, logits included.
        model_flops = 3 * size.forward_flops_per_token(size.n_layers - 1, self.context, logits=True)
        sae_flops = 2 * size.d_model * sae_latents(size.d_model, target.expansion_factor)
        state = sae_state_bytes(size.d_model, target.expansion_factor, "signum")
        ce_sequences = self.settings.evaluation.ce_sequences
        ce_tokens = self.eval_tokens if ce_sequences is None else min(self.eval_tokens, ce_sequences * self.context)
        return JobCost(
            flops=ce_tokens * model_flops + self.eval_tokens * sae_flops,
            host_memory_bytes=self._model_host_bytes(target.model) + state,
            half_precision=self.half_precision(target.model),
        )

    def collect_latents(self, model: str) -> JobCost:
        """One pass over the auto-interp tokens, each auto-interpreted SAE encoding its layer."""
        size, tokens = self.size(model), self.settings.autointerp.tokens
        saes = {(t.layer, t.expansion_factor) for t in self.study.autointerp_targets if t.model == model}
        encode = sum(2 * size.d_model * sae_latents(size.d_model, expansion) for _, expansion in saes)
        weights = sum(4 * 2 * size.d_model * sae_latents(size.d_model, expansion) for _, expansion in saes)
        last_layer = max(layer for layer, _ in saes)
        return JobCost(
            flops=tokens * (size.forward_flops_per_token(last_layer, self.context) + encode),
            host_memory_bytes=self._model_host_bytes(model) + weights,
            half_precision=self.half_precision(model),
        )

    def llm_tokens_per_latent(self, prefix_cached: bool | None = None) -> float:
        """Tokens the LLM computes for one latent: its explanation, then each scorer's prompts
        (examples_per_prompt samples each), and the answers. With vLLM's prefix cache
        (`prefix_cached`, by default autointerp.llm.prefix_caching) the fixed part of each prompt,
        the same for every latent, is computed once per server, so none of it counts here."""
        settings = self.settings.autointerp
        cached = settings.llm.prefix_caching if prefix_cached is None else prefix_cached
        example = settings.example_context
        explain = (0 if cached else EXPLAIN_FIXED_TOKENS) + (
            settings.explanation_examples * example * EXPLAIN_TOKENS_PER_EXAMPLE_TOKEN
        )
        per_prompt = settings.llm.examples_per_prompt
        prompts = (settings.test_examples + settings.non_activating) / per_prompt
        score = prompts * ((0 if cached else SCORE_FIXED_TOKENS) + per_prompt * example * SCORE_TOKENS_PER_SAMPLE_TOKEN)
        return explain + len(SCORERS) * score + (1 + len(SCORERS) * prompts) * ANSWER_TOKENS

    def autointerp_llm(self, sharing: float = 1.0, prefix_cached: bool | None = None) -> JobCost:
        """One SAE's latents explained and scored by the served LLM (2 FLOPs per parameter and token);
        with `sharing` SAEs per server GPU, the FLOPs its job waits for."""
        settings = self.settings.autointerp
        tokens = settings.latents * self.llm_tokens_per_latent(prefix_cached)
        return JobCost(
            flops=sharing * 2 * settings.llm.parameters * tokens,
            host_memory_bytes=2 * 2**30,
            startup_minutes=LLM_STARTUP_MINUTES,
        )

    @functools.cached_property
    def saes_per_server(self) -> int:
        """SAEs one LLM server serves: autointerp.llm.saes_per_server, fewer where that many would not
        finish within the GPU partition's time limit (at least one: its clients resume latent by latent)."""
        autointerp = self.settings.autointerp
        if not autointerp:
            return 1
        llm = autointerp.llm
        wanted = llm.saes_per_server
        gpu_runtime_cap = self._gpu_runtime_cap() if callable(self._gpu_runtime_cap) else self._gpu_runtime_cap
        if gpu_runtime_cap is None:
            return wanted
        one_sae = RUNTIME_MARGIN * self.job_seconds("autointerp_llm", self.autointerp_llm(sharing=1 / llm.gpus)) / 60
        fitting = math.floor((gpu_runtime_cap - LLM_STARTUP_MINUTES) / one_sae) if one_sae > 0 else wanted
        return max(1, min(wanted, fitting))

    def toy_shape(self, dataset: str) -> tuple[int, int]:
        """(samples, dimensions) of a toy dataset, without reading it."""
        spec = self.study.toy_datasets[dataset]
        if spec["source"] == "superposition":
            return spec["n_samples"], spec["n_dims"]
        if spec["source"] == "embeddings":
            size = self.size(spec["model"])
            return size.vocab, size.d_model
        path = Path(spec["path"])
        dims = len(path.open().readline().split()) - 1 if path.is_file() else GLOVE_DIMS
        return spec["limit"] or GLOVE_ROWS, dims

    def toy_on_gpu(self, dataset: str) -> bool:
        return self.study.toy_datasets[dataset]["source"] in self.settings.toy.gpu_sources

    def toy_sweep(self, dataset: str) -> JobCost:
        """One seed of a toy dataset: an L1 SAE per (kind, latent count, L1 coefficient)."""
        samples, dims = self.toy_shape(dataset)
        sae = self.settings.toy.sae
        latents = toy_latent_counts(self.study.toy_datasets[dataset], dims)
        saes_per_latent_count = TOY_KINDS * sae.l1_coefficients.n
        train = samples * (1 - sae.validation_fraction)
        steps = saes_per_latent_count * len(latents) * sae.epochs * math.ceil(train / sae.batch_size)
        # Encoder and decoder, forward and backward: 12 d n FLOPs per sample and latent count n. On a
        # GPU these small steps are bound by their fixed cost, not their FLOPs.
        flops = saes_per_latent_count * sum(sae.epochs * train * 12 * dims * n for n in latents)
        data_bytes = (TOY_KINDS + 1) * samples * dims * 4
        return JobCost(
            flops=flops, host_memory_bytes=2 * data_bytes + 4 * 2**30, startup_minutes=SAE_STARTUP_MINUTES, steps=steps
        )

    def job_cost(self, rule: str, wildcards: Mapping[str, str]) -> JobCost | None:
        """The cost of one job of `rule` (None: outside the cost model), from its wildcards: the one
        map from rules to costs, for the rules' resources and the planner's GPU-hours alike."""
        if rule in ("cache_train_shard", "cache_eval", "collect_latents"):
            model = wildcards["model"]
            return (
                self.cache_train_shard(model, int(wildcards["shard"]))
                if rule == "cache_train_shard"
                else (self.cache_eval(model) if rule == "cache_eval" else self.collect_latents(model))
            )
        if rule == "train_layer_shard":
            return self.train_layer_shard(wildcards["model"], int(wildcards["layer"]), int(wildcards["shard"]))
        if rule in ("finalize_sae", "evaluate_sae", "export_saelens"):
            target = SaeTarget.from_wildcards(wildcards)
            per_sae = {"finalize_sae": self.finalize_sae, "evaluate_sae": self.evaluate_sae}
            return per_sae.get(rule, self.export_saelens)(target)
        if rule in ("toy_sweep", "toy_sweep_gpu"):
            return self.toy_sweep(wildcards["toy_dataset"])
        if rule == "autointerp_llm":
            # The SAEs of a server share it at once: each one's job takes as long as the group's work.
            return self.autointerp_llm(sharing=self.saes_per_server / self.settings.autointerp.llm.gpus)
        return None

    def token_store_bytes(self, model: str) -> int:
        train = self.study.shards[-1][1] * self.context if self.study.shards else 0
        return 4 * (train + self.eval_tokens)

    def job_seconds(self, rule: str, cost: JobCost) -> float:
        """A job's time without start-up: the served LLM's FLOPs at its assumed rate per GPU, a CPU
        rule's at one core's, a GPU rule's on the device (`rates`)."""
        if rule == "autointerp_llm":
            return cost.flops / LLM_GPU_FLOPS
        if rule not in GPU_RULES:
            return cost.flops / CPU_CORE_FLOPS
        return self.rates.seconds(
            cost.flops, cost.memory_bytes, cost.steps, cost.disk_bytes, cost.half_precision, cost.topk_elements
        )

    def estimated_minutes(self, rule: str, cost: JobCost) -> float:
        """A job's first time limit: the estimate with a margin, plus start-up (saerand.retries
        raises it after a time-out)."""
        return RUNTIME_MARGIN * self.job_seconds(rule, cost) / 60 + cost.startup_minutes


def estimated_mb(cost: JobCost) -> float:
    """A job's first memory request (saerand.retries raises it after an out-of-memory kill)."""
    return cost.host_memory_bytes / 2**20

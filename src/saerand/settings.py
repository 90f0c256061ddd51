"""The study's settings as types: one frozen dataclass per config section (as sparsify's
TrainConfig), built once from the validated config (saerand.config fills the schema's defaults, so
no field here repeats one). A field without a default is a required key or one the schema defaults;
one defaulting to None is an optional key the schema leaves unset. `from_config` refuses a key no
field takes, so the schema and the code cannot drift apart (tests/test_settings.py)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

from .config import ConfigError, validate_section
from .reruns import with_operational

Device = str  # "auto", "cpu", "cuda" or "cuda:<n>"
Layers = Literal["all"] | list[int] | dict[str, int]  # "all", explicit blocks, or {every: n}


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    path: str
    split: str
    text_column: str
    load_kwargs: dict[str, Any]
    name: str | None = None
    revision: str | None = None
    data_files: str | None = None
    download_bytes: float | None = None


@dataclasses.dataclass(frozen=True)
class DatasetsSettings:
    train: DatasetSettings
    shuffle_seed: int | None
    eval: DatasetSettings | None = None


@dataclasses.dataclass(frozen=True)
class TokensSettings:
    context_length: int
    train_tokens: int
    buffer_tokens: int
    eval_tokens: int


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    n_layers: int
    d_model: int
    layers: Layers
    revision: str
    step0_revision: str
    dtype: str
    hub_id: str | None = None
    path: str | None = None
    embedded: bool | None = None
    gpu_constraint: str | None = None


@dataclasses.dataclass(frozen=True)
class GloveDownloadSettings:
    urls: list[str]
    checksum: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class PrefetchSettings:
    hf_home: str
    attempts: int
    timeout: float
    bandwidth_mb_s: float
    glove: GloveDownloadSettings


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    dtype: str
    chunk_rows: int
    batch_sequences: int
    compressor: str
    device: Device
    node_local_dir: str | None  # where training shards live (saerand.paths.train_shard)


@dataclasses.dataclass(frozen=True)
class SaeSettings:
    """How SAEs train (config `sae`); a sweep point replaces expansion_factor and k."""

    expansion_factor: int
    k: int
    batch_size: int
    optimizer: Literal["signum", "adam"]
    lr: float | None  # None: sparsify's default for the optimizer, scaled by the latent count
    lr_warmup_steps: int
    grad_clip_norm: float | None
    auxk_alpha: float
    dead_feature_threshold: int
    seed: int
    buffer_shuffle: bool
    buffer_window_chunks: int
    buffer_block_rows: int
    device: Device
    read_threads: int  # chunks read at once (saerand.cache.ActivationCache.batches)
    fused_adam: bool  # torch's fused Adam kernel: faster, not bit-identical to the default
    topk_before_relu: bool  # saerand.topk_encoder: no ReLU pass over every pre-activation
    grad_acc_steps: int  # batches per optimizer step
    micro_acc_steps: int  # chunks per batch, one forward and backward each
    lr_schedule_length: Literal["optimizer_steps", "batches"]
    decoder_bias_init: Literal["mean", "geometric_median"]
    adam_8bit: bool  # bitsandbytes' Adam8bit
    loop: Literal["sparsify", "authors"]  # where the gradient is clipped, and each chunk's FVU variance


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    models: list[str]
    expansion_factors: list[int]
    k: list[int]
    layers: Layers | None = None  # None: each swept model's own layers


@dataclasses.dataclass(frozen=True)
class SimilarityMargins:
    explained_variance: float
    cosine_similarity: float
    fuzz_auroc: float


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    batch_tokens: int
    batch_sequences: int
    ce_special_tokens: Literal["excluded", "spliced"]
    ce_sequences: int | None  # None: every held-out sequence
    bootstrap_resamples: int
    similarity_margins: SimilarityMargins
    figure_reading: Literal["masked_per_token", "pooled"]
    device: Device


@dataclasses.dataclass(frozen=True)
class LlmSettings:
    """The explainer and scorer LLM, served by vLLM (config `autointerp.llm`)."""

    model: str
    revision: str | None
    python: str
    weights_bytes: float
    parameters: float
    gpus: int
    max_model_len: int
    gpu_memory_utilization: float
    dtype: str
    seed: int
    prefix_caching: bool
    server_args: list[str | float]
    environment: dict[str, str | float]
    start_timeout: float
    request_timeout: float
    stuck_after: int
    concurrency: int
    max_tokens: int
    examples_per_prompt: int
    structured_outputs: bool
    saes_per_server: int
    cpus: int
    mem_mb: int
    gpu_constraint: str | None


@dataclasses.dataclass(frozen=True)
class AutointerpSettings:
    explainers: list[str]  # names in saerand.autointerp.explainers
    tokens: int
    context_length: int
    example_context: int
    latents: int
    draw: int
    min_examples: int
    filter_special_tokens: bool
    max_examples: int | None
    explanation_examples: int
    explanation_sampling: Literal["top", "random", "quantiles", "mix"]
    test_examples: int
    quantiles: int
    non_activating: int
    batch_sequences: int
    sweep: bool
    highlight_threshold: float
    show_activations: bool
    bootstrap_resamples: int
    seed: int
    device: Device
    llm: LlmSettings


@dataclasses.dataclass(frozen=True)
class L1Coefficients:
    low: float
    high: float
    n: int


@dataclasses.dataclass(frozen=True)
class ToySaeSettings:
    epochs: int
    batch_size: int
    lr: float
    validation_fraction: float
    loss: Literal["summed_squared_error", "standardized_mean_squared_error"]
    l1_coefficients: L1Coefficients


@dataclasses.dataclass(frozen=True)
class LomaxSettings:
    n_samples: int
    seed: int


@dataclasses.dataclass(frozen=True)
class SuperpositionSettings:
    n_samples: int
    n_features: int
    n_dims: int
    expected_active: float
    decay: float
    seeds: int
    latents: list[int]


@dataclasses.dataclass(frozen=True)
class WordVectorSettings:
    glove: dict[str, str]
    embeddings: list[str]
    latent_multiples: list[int]
    limit: int | None = None  # None: every row


@dataclasses.dataclass(frozen=True)
class ToySettings:
    device: Device
    gpu_sources: list[str]
    gaussian_control: Literal["per_dimension", "scalar"]
    sae: ToySaeSettings
    lomax: LomaxSettings
    superposition: SuperpositionSettings | None = None
    word_vectors: WordVectorSettings | None = None


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    source: Literal["kjv"]
    holdout_books: list[str]


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
    vocab_size: int


@dataclasses.dataclass(frozen=True)
class ArchitectureSettings:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    context_length: int
    rotary_pct: float


@dataclasses.dataclass(frozen=True)
class EmbeddedTrainingSettings:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    seed: int
    eval_every: int


@dataclasses.dataclass(frozen=True)
class EmbeddedModelSettings:
    name: str
    corpus: CorpusSettings
    tokenizer: TokenizerSettings
    architecture: ArchitectureSettings
    training: EmbeddedTrainingSettings


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    saelens: bool


@dataclasses.dataclass(frozen=True)
class PublishSettings:
    repo: str | None
    saelens: bool
    private: bool
    token_env: str


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    tensorboard: bool
    directory: str


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """The whole config. Optional sections are None when the study leaves them out."""

    seed: int
    datasets: DatasetsSettings
    tokens: TokensSettings
    models: dict[str, ModelSettings]
    variants: list[str]
    variant_seed: int
    prefetch: PrefetchSettings
    scratch_budget: int | None
    cache: CacheSettings
    sae: SaeSettings
    evaluation: EvaluationSettings
    export: ExportSettings
    tracking: TrackingSettings
    publish: PublishSettings
    embedded_model: EmbeddedModelSettings | None = None
    sweep: SweepSettings | None = None
    autointerp: AutointerpSettings | None = None
    toy: ToySettings | None = None


Section = TypeVar("Section")


def from_config(cls: type[Section], values: dict[str, Any], key: str = "") -> Section:
    """`cls` from a validated config section (`key` names it in errors)."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"config key '{key + '.' if key else ''}{unknown[0]}': not a setting of {cls.__name__}")
    hints = typing.get_type_hints(cls)
    return cls(
        **{
            name: _typed(hints[name], value, f"{key}.{name}" if key else name)
            for name, value in values.items()
            if name in fields
        }
    )


def _typed(hint: Any, value: Any, key: str) -> Any:
    """A section's value as its field's type: a dataclass built, a dict of dataclasses built each."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    section = next((option for option in options if dataclasses.is_dataclass(option)), None)
    if section is not None and isinstance(value, dict):
        return from_config(section, value, key)
    if typing.get_origin(hint) is dict:
        item = typing.get_args(hint)[1]
        if dataclasses.is_dataclass(item):
            return {name: from_config(item, entry, f"{key}.{name}") for name, entry in value.items()}
    return value


def study_settings(config: dict[str, Any]) -> StudySettings:
    """The typed settings of a validated config (saerand.config.validate_config)."""
    return from_config(StudySettings, config)


def section_settings(cls: type[Section], section: str, **values: Any) -> Section:
    """`cls` from some keys of config section `section`, the schema's defaults for the rest: for
    code that runs outside a study (benchmarks, tests)."""
    return from_config(cls, validate_section(section, values), section)


def job_section(cls: type[Section], section: str, params: dict[str, Any], run_config: dict[str, Any]) -> Section:
    """A job's settings of config section `section`, typed: its params (what defines its result)
    over the run's section, which adds the operational keys (saerand.reruns.with_operational)."""
    return from_config(cls, with_operational(params, run_config[section]), section)

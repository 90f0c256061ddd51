"""Throughput benchmark of the cache and training stages, measured side by side in one run.

On a GPT-NeoX of a given Pythia size with random weights (built from its config: no hub), prints
  (a) caching tokens/s / min(bare forward, fsync'd write bound)  goal >= 0.8
  (b) our SAE training tokens/s / sparsify Trainer tokens/s       goal >= 1.0
  (c) zarr read tokens/s / our SAE training tokens/s              goal >= 2
  (d) peak GPU memory of one 6.9B-size SAE training step (d 4096, 262,144 latents, k 32)
  (e) overlap of reading and training: 1 - (time the trainer waited for data) / (time the reader
      was busy), while our SAE trains (1: every read hidden behind the steps)
The write bound is the scratch folder's write rate with fsync, in tokens/s at that many bytes per
token. Both trainers are built before their timing starts; sparsify's end-of-fit checkpoint is not
timed (ours writes none here). On a CPU use --size toy; (d) then reports the toy SAE and no GPU
memory. --json writes the figures with the device, the versions and the date.

    .venv/bin/python bench/throughput.py --size pythia-160m --tokens 2000000 --json bench/results/h100-160m.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sparsify import SaeConfig, TrainConfig, Trainer
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from saerand.cache import ActivationCache, ReaderStats, write_activation_cache
from saerand.devices import resolve_device
from saerand.provenance import provenance
from saerand.sae_training import SaeTrainer, sparsify_adam_is_8bit, training_batches
from saerand.settings import SaeSettings, section_settings
from saerand.variants import SubjectModel

# Optional faster maths (sae settings), each timed against the default with --flags.
FAST_FLAGS = ("fused_adam", "topk_before_relu")
SIZES = {  # Pythia's published architectures (hidden, layers, heads)
    "toy": (128, 4, 4),
    "pythia-160m": (768, 12, 12),
    "pythia-1b": (2048, 16, 8),
    "pythia-6.9b": (4096, 32, 32),
}


def neox(size: str, context: int) -> GPTNeoXForCausalLM:
    hidden, layers, heads = SIZES[size]
    config = GPTNeoXConfig(
        vocab_size=50304 if size != "toy" else 4096,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=context,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(config)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    function()
    _sync(device)
    return time.perf_counter() - start


def storage_write_bytes_per_s(folder: str, total_bytes: int, block_bytes: int = 64 * 2**20) -> float:
    """Write rate of `folder` for `total_bytes` of incompressible data, flushed to the device (fsync)."""
    block = np.random.default_rng(0).bytes(block_bytes)
    with tempfile.NamedTemporaryFile(dir=folder) as handle:
        start = time.perf_counter()
        for _ in range(max(1, total_bytes // block_bytes)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
        return max(1, total_bytes // block_bytes) * block_bytes / (time.perf_counter() - start)


def sae_step_memory(device: str, d_in: int, num_latents: int, k: int, batch_tokens: int) -> float | None:
    """Peak GPU GiB of one Adam step of the SAE (None without CUDA: the step still runs)."""
    settings = section_settings(
        SaeSettings,
        "sae",
        expansion_factor=num_latents // d_in,
        k=k,
        batch_size=1,
        optimizer="adam",
        device=device,
        lr_warmup_steps=10,
    )
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = SaeTrainer(d_in, settings, num_steps=10)
    trainer.train_on([torch.randn(batch_tokens, d_in)] * 2)
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="toy")
    parser.add_argument("--tokens", type=int, default=65536, help="tokens per measurement")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--batch-sequences", type=int, default=8, help="sequences per SAE step and forward pass")
    parser.add_argument("--expansion", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scratch", default=None, help="folder for the stores (default: the system's temp folder)")
    parser.add_argument("--read-threads", type=int, default=4, help="chunk-reading threads while training")
    parser.add_argument("--optimizer", choices=["adam", "signum"], default="adam", help="adam: the paper's config")
    parser.add_argument(
        "--flags",
        nargs="*",
        default=[],
        choices=FAST_FLAGS,
        help="also time ours with each of these sae settings on (the same batches; final FVU compared)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here, with device and versions")
    return parser.parse_args(argv)


def measure_caching(model, ids: np.ndarray, layers: list[int], args, device: str, scratch: str) -> dict[str, float]:
    """Tokens/s of the bare forward, of caching every layer into a zarr store in `scratch`, of the
    scratch folder's write bound, and of reading one layer back in training batches."""
    tokens = ids.size

    def bare_forward():
        with torch.no_grad():
            for start in range(0, len(ids), args.batch_sequences):
                model.base_model(
                    input_ids=torch.from_numpy(ids[start : start + args.batch_sequences]).long().to(device),
                    use_cache=False,
                )

    bare_forward()  # warm-up (kernels, allocator)
    bytes_per_token = len(layers) * model.config.hidden_size * np.dtype(args.dtype).itemsize
    results = {
        "storage_bound_tokens_per_s": storage_write_bytes_per_s(scratch, tokens * bytes_per_token) / bytes_per_token
    }
    results["forward_tokens_per_s"] = tokens / timed(bare_forward, device)
    write_cache = functools.partial(
        write_activation_cache,
        Path(scratch) / "train.zarr",
        SubjectModel(model, "trained"),
        ids,
        layers,
        batch_sequences=args.batch_sequences,
        dtype=args.dtype,
        chunk_rows=16384,
    )
    results["cache_tokens_per_s"] = tokens / timed(write_cache, device)
    return results


def measure_training(cache: ActivationCache, layer: int, settings: SaeSettings, args, device: str, tokens: int):
    """Tokens/s of reading one layer in training batches, of our SAE training on it (with how long
    the reader was busy and the trainer waited) and of it with each of --flags."""

    def read_all():
        for _ in training_batches(cache, layer, settings, args.context):
            pass

    results = {"zarr_read_tokens_per_s": tokens / timed(read_all, device)}
    # Two steps first, untimed, as sparsify's Trainer gets after ours: its Triton kernels compile once.
    SaeTrainer(cache.d_model, settings, num_steps=2).train_on(
        itertools.islice(training_batches(cache, layer, settings, args.context), 2)
    )
    ours = SaeTrainer(cache.d_model, settings, num_steps=tokens // args.context // args.batch_sequences)
    reader = ReaderStats()
    results["our_training_tokens_per_s"] = tokens / timed(
        lambda: ours.train_on(training_batches(cache, layer, settings, args.context, stats=reader)), device
    )
    results["reader_busy_s"], results["trainer_waited_s"] = reader.read_seconds, reader.wait_seconds
    for flag in args.flags:
        # fused_adam is torch's Adam: it replaces an 8-bit one.
        flagged_settings = dataclasses.replace(
            settings, **{flag: True}, **({"adam_8bit": False} if flag == "fused_adam" else {})
        )
        flagged = SaeTrainer(cache.d_model, flagged_settings, num_steps=ours.num_steps)
        batches = training_batches(cache, layer, flagged_settings, args.context)
        results[f"{flag}_training_tokens_per_s"] = tokens / timed(functools.partial(flagged.train_on, batches), device)
        results[f"{flag}_final_fvu_difference"] = flagged.fvu_trace[-1] - ours.fvu_trace[-1]
    return results


def measure_sparsify(model, ids: np.ndarray, layer: int, args, device: str, scratch: str) -> float:
    """Tokens/s of sparsify's own Trainer on the same tokens and layer (the model runs inside it)."""
    config = TrainConfig(
        SaeConfig(expansion_factor=args.expansion, k=args.k),
        batch_size=args.batch_sequences,
        layers=[layer],
        optimizer=args.optimizer,
        save_dir=str(Path(scratch) / "sparsify"),
        run_name="bench",
        log_to_wandb=False,
        save_every=10**9,
    )
    dataset = Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    trainer = Trainer(config, dataset, model)
    trainer.save = lambda: None  # its end-of-fit checkpoint: ours writes none here
    return ids.size / timed(trainer.fit, device)


def add_ratios(results: dict[str, float]) -> None:
    bound = min(results["forward_tokens_per_s"], results["storage_bound_tokens_per_s"])
    results["a_cache_over_bound"] = results["cache_tokens_per_s"] / bound
    results["a_cache_over_forward"] = results["cache_tokens_per_s"] / results["forward_tokens_per_s"]
    results["e_read_overlap"] = max(0.0, 1 - results["trainer_waited_s"] / max(results["reader_busy_s"], 1e-9))
    results["b_ours_over_sparsify"] = results["our_training_tokens_per_s"] / results["sparsify_trainer_tokens_per_s"]
    results["c_read_over_consumption"] = results["zarr_read_tokens_per_s"] / results["our_training_tokens_per_s"]


def print_report(results: dict[str, float], args, bytes_per_token: int) -> None:
    for key in (
        "forward_tokens_per_s",
        "cache_tokens_per_s",
        "storage_bound_tokens_per_s",
        "zarr_read_tokens_per_s",
        "our_training_tokens_per_s",
        "sparsify_trainer_tokens_per_s",
    ):
        print(f"  {key:32s} {results[key]:12.0f}")
    print(f"  (a) caching / min(forward, write) {results['a_cache_over_bound']:6.2f}   goal >= 0.8")
    print(
        f"      caching / bare forward       {results['a_cache_over_forward']:6.2f}"
        f"   ({bytes_per_token} bytes per token, scratch {args.scratch or tempfile.gettempdir()})"
    )
    print(f"  (b) ours / sparsify Trainer      {results['b_ours_over_sparsify']:6.2f}   goal >= 1.0")
    print(f"  (c) zarr read / SAE consumption  {results['c_read_over_consumption']:6.2f}   goal >= 2")
    print(
        f"  (e) reading hidden by training   {results['e_read_overlap']:6.2f}   (reader busy "
        f"{results['reader_busy_s']:.2f} s, trainer waited {results['trainer_waited_s']:.2f} s, "
        f"{args.read_threads} threads)"
    )
    for flag in args.flags:
        print(
            f"  sae.{flag + ' / default':27s}"
            f"{results[f'{flag}_training_tokens_per_s'] / results['our_training_tokens_per_s']:6.2f}"
            f"   final training FVU {results[f'{flag}_final_fvu_difference']:+.2e} from the default's"
        )


def main(argv=None) -> dict[str, float]:
    args = parse_arguments(argv)
    device = resolve_device(args.device)
    model_dtype = torch.float16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    model = neox(args.size, args.context).to(device=device, dtype=model_dtype).eval().requires_grad_(False)
    layers = list(range(model.config.num_hidden_layers))
    layer = layers[len(layers) // 2]
    n_sequences = max(args.batch_sequences, args.tokens // args.context)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (n_sequences, args.context)).astype(np.int32)
    # The buffer mixed as the paper's config trains (bench/buffer_read.py: the read orders).
    settings = section_settings(
        SaeSettings,
        "sae",
        expansion_factor=args.expansion,
        k=args.k,
        batch_size=args.batch_sequences,
        optimizer=args.optimizer,
        # Like for like: sparsify's Trainer takes 8-bit Adam where bitsandbytes is installed.
        adam_8bit=args.optimizer == "adam" and sparsify_adam_is_8bit(),
        device=device,
        buffer_shuffle=True,
        read_threads=args.read_threads,
    )
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        results = measure_caching(model, ids, layers, args, device, scratch)
        cache = ActivationCache(Path(scratch) / "train.zarr")
        results |= measure_training(cache, layer, settings, args, device, ids.size)
        results["sparsify_trainer_tokens_per_s"] = measure_sparsify(model, ids, layer, args, device, scratch)
    add_ratios(results)

    rows = args.batch_sequences * args.context
    print(
        f"device {device}, {args.size}, {ids.size} tokens, layer {layer}, SAE x{args.expansion} k{args.k}, "
        f"batch {rows} tokens"
    )
    print_report(results, args, bytes_per_token=len(layers) * model.config.hidden_size * np.dtype(args.dtype).itemsize)
    d_in, latents = (
        (4096, 262144)
        if device.startswith("cuda")
        else (model.config.hidden_size, model.config.hidden_size * args.expansion)
    )
    peak = sae_step_memory(device, d_in, latents, args.k, rows)
    if peak is None:
        print(f"  (d) SAE step d={d_in} latents={latents}: ran; no GPU, so no GPU memory to report")
    else:
        results["d_peak_gpu_gib"] = peak
        print(
            f"  (d) peak GPU memory, SAE step d={d_in} latents={latents} k={args.k} batch {rows}: {peak:.1f} GiB "
            f"(an 80 GB card holds {80e9 / 2**30:.0f} GiB)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = provenance(
            bench="throughput",
            arguments={key: str(value) for key, value in vars(args).items()},
            device=torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)",
            results=results,
        )
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

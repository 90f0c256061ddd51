"""Reading an activation shard in stored order vs mixed across the buffer, side by side in one run.

Writes a store shaped like one layer of a training shard (random values, `--dtype`, uncompressed,
`--chunk-rows` rows per chunk, as the cache writes them) and times every read order over it:
stored order, then the mixed order (chunks in a random order, `window` chunks mixed together in
blocks of `block` rows) for each window and block size. Prints tokens/s and the ratio to stored order. Each order is read twice and
the second read timed, so all orders read from the page cache alike.

    .venv/bin/python bench/buffer_read.py --tokens 2000000 --d-model 768
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from saerand.cache import ActivationCache


def synthetic_store(path: Path, tokens: int, d_model: int, chunk_rows: int, dtype: str) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array(
        "layers.0", shape=(tokens, d_model), chunks=(chunk_rows, d_model), dtype=dtype, compressors=None, fill_value=0
    )
    rng = np.random.default_rng(0)
    for start in range(0, tokens, chunk_rows):
        rows = min(chunk_rows, tokens - start)
        array[start : start + rows] = rng.standard_normal((rows, d_model), dtype=np.float32).astype(dtype)
    group.attrs.update({"n_tokens": tokens, "d_model": d_model, "layers": [0], "complete": True})


def print_rates(results: dict[str, float], baseline: str, unit: str) -> None:
    """One line per measurement: its rate and its ratio to the baseline's, measured in the same run."""
    width = max(map(len, results))
    for name, rate in results.items():
        print(f"  {name:{width}s} {rate:12.0f} {unit}   {rate / results[baseline]:5.2f} x {baseline.replace('_', ' ')}")


def read_seconds(cache: ActivationCache, batch_rows: int, shuffle_seed: int | None, window: int, block: int) -> float:
    def read():
        for _ in cache.batches(0, batch_rows, shuffle_seed=shuffle_seed, window_chunks=window, block_rows=block):
            pass

    read()
    start = time.perf_counter()
    read()
    return time.perf_counter() - start


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--chunk-rows", type=int, default=16384)
    parser.add_argument("--batch-rows", type=int, default=16384, help="activations per SAE step")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 8], help="chunks mixed together")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 16], help="rows moved together")
    args = parser.parse_args(argv)

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "shard.zarr"
        synthetic_store(store, args.tokens, args.d_model, args.chunk_rows, args.dtype)
        cache = ActivationCache(store)
        results["stored"] = args.tokens / read_seconds(cache, args.batch_rows, None, 1, 1)
        for window in args.windows:
            for block in args.blocks:
                results[f"mixed_window_{window}_block_{block}"] = args.tokens / read_seconds(
                    cache, args.batch_rows, 0, window, block
                )
    print(
        f"{args.tokens} tokens x d_model {args.d_model}, {args.dtype}, chunks of {args.chunk_rows} rows, "
        f"batches of {args.batch_rows}"
    )
    print_rates(results, "stored", "tokens/s")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

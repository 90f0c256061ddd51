"""Training a layer's N SAEs (the sweep points) from one read of each batch vs N separate runs,
side by side in one run.

Writes a store shaped like one layer of a training shard (`bench/buffer_read.py`'s synthetic
store) and trains the same N SAEs on it three ways:
  separate jobs   N processes, one SAE each: Python and torch start-up and a read per SAE, as one
                  workflow job per SAE did;
  one process     one process, the SAEs one after the other: a read per SAE, one start-up;
  one read        one process, every SAE from one read of each batch (train_layer_shard, as the
                  workflow's layer jobs train).
Prints SAE-tokens/s (tokens x SAEs / wall seconds) and the ratios to separate jobs.

    .venv/bin/python bench/layer_training.py --tokens 262144 --d-model 64 --points 2:8 4:8 8:8 16:8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from buffer_read import print_rates, synthetic_store  # noqa: E402

# One training run, as a job would do it: imports, store, SAEs, batches.
WORKER = """
import json, sys
from saerand.cache import ActivationCache
from saerand.study import SaeHyperparameters
from saerand.sae_training import train_layer_shard
from saerand.settings import SaeSettings, section_settings
args = json.loads(sys.argv[1])
settings = section_settings(SaeSettings, "sae", **args["settings"])
cache = ActivationCache(args["store"])
for group in args["groups"]:
    train_layer_shard(cache, 0, 0, settings, [SaeHyperparameters(*p) for p in group],
                      args["context"], cache.n_tokens)
"""


def run_seconds(store: Path, groups: list[list[list[int]]], settings: dict, context: int, threads: int) -> float:
    payload = json.dumps({"store": str(store), "groups": groups, "settings": settings, "context": context})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORKER, payload], check=True, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=262_144)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    parser.add_argument("--chunk-rows", type=int, default=16384)
    parser.add_argument("--points", nargs="+", default=["2:8", "4:8", "8:8", "16:8"], help="expansion:k per SAE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)

    points = [[int(v) for v in point.split(":")] for point in args.points]
    # The config's `sae` section for the runs (the schema's defaults for the rest); each SAE's
    # expansion and k come from its point.
    settings = {
        "expansion_factor": 1,
        "k": 1,
        "batch_size": args.batch_size,
        "optimizer": "adam",
        "lr_warmup_steps": 10,
        "device": "cpu",
    }
    sae_tokens = args.tokens * len(points)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "shard.zarr"
        synthetic_store(store, args.tokens, args.d_model, args.chunk_rows, "float16")

        def rate(groups: list[list[list[int]]]) -> float:
            return sae_tokens / run_seconds(store, groups, settings, args.context, args.threads)

        rate([[points[0]]])  # warm the page cache and the imports' files
        results["separate_jobs"] = 1 / sum(1 / rate([[point]]) for point in points)
        results["one_process"] = rate([[point] for point in points])
        results["one_read"] = rate([points])
    print(
        f"{len(points)} SAEs ({' '.join(args.points)}) on {args.tokens} tokens x d_model {args.d_model}, "
        f"batches of {args.batch_size * args.context} tokens, {args.threads} thread(s) per process"
    )
    print_rates(results, "separate_jobs", "SAE-tokens/s")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

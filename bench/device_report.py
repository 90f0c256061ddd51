"""One JSON and one markdown table from bench/device_check.sh's figures: for each throughput run
its rates and the ratios against their goals, with the device, the versions and the date; and, with
the device's rates.json (bench/device_rates.py), what the cost model predicts for each run's caching
and training beside what it measured (goal: within 1.5x either way).

    python3 bench/device_report.py bench/results/NVIDIA-H100-80GB-HBM3-2026-12-05
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from saerand.costs import ModelSize, sae_training_work
from saerand.device_rates import RATES_FILE, DeviceRates

# (key, what it is, goal): the ratios bench/throughput.py computes.
RATIOS = (
    ("a_cache_over_bound", "caching / min(bare forward, fsync'd write)", ">= 0.8"),
    ("b_ours_over_sparsify", "our SAE training / sparsify's Trainer", ">= 1.0"),
    ("c_read_over_consumption", "reading / training", ">= 2"),
    ("e_read_overlap", "reading hidden by training", "1 at best"),
)
RATES = (
    "forward_tokens_per_s",
    "cache_tokens_per_s",
    "storage_bound_tokens_per_s",
    "zarr_read_tokens_per_s",
    "our_training_tokens_per_s",
    "sparsify_trainer_tokens_per_s",
    "fused_adam_training_tokens_per_s",
    "topk_before_relu_training_tokens_per_s",
)


# bench/throughput.py's model shapes (hidden, layers) and vocabularies, which its JSON names by size.
SHAPES = {"toy": (128, 4, 4096), "pythia-160m": (768, 12, 50304), "pythia-1b": (2048, 16, 50304)}


def predicted_tokens_per_s(rates: DeviceRates, arguments: dict[str, str]) -> dict[str, float]:
    """The cost model's caching and training tokens/s for one bench/throughput.py run on `rates`."""
    hidden, layers, vocab = SHAPES[arguments["size"]]
    context, tokens = int(arguments["context"]), int(arguments["tokens"])
    tokens = max(tokens, int(arguments["batch_sequences"]) * context) // context * context
    gpu = not rates.device.startswith("cpu")
    model = ModelSize(layers, hidden, vocab, "float16" if gpu else "float32")
    written = tokens * layers * hidden * (2 if arguments["dtype"] == "float16" else 4)
    caching = rates.seconds(
        tokens * model.forward_flops_per_token(layers - 1, context), written_bytes=written, half_precision=gpu
    )
    work = sae_training_work(hidden, int(arguments["expansion"]), tokens, int(arguments["batch_sequences"]) * context)
    return {"cache_tokens_per_s": tokens / caching, "our_training_tokens_per_s": tokens / rates.seconds(**work)}


def report(folder: Path) -> dict:
    runs = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("throughput-*.json"))}
    if not runs:
        raise SystemExit(f"{folder} holds no throughput-*.json: run bench/device_check.sh")
    first = next(iter(runs.values()))
    summary = {
        "device": first["device"],
        "versions": first["versions"],
        "created_utc": first["created_utc"],
        "runs": {name: run["results"] for name, run in runs.items()},
    }
    lines = [f"# Device check: {summary['device']}, {summary['created_utc']}", ""]
    lines.append("| figure | goal | " + " | ".join(runs) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in runs) + " |")
    for key, label, goal in RATIOS:
        lines.append(
            f"| {label} | {goal} | "
            + " | ".join(f"{r['results'].get(key, float('nan')):.2f}" for r in runs.values())
            + " |"
        )
    for key in RATES:
        lines.append(
            f"| {key} | | " + " | ".join(f"{r['results'].get(key, float('nan')):,.0f}" for r in runs.values()) + " |"
        )
    if (folder / RATES_FILE).exists():
        rates = DeviceRates.load(folder / RATES_FILE)
        summary["rates"] = rates.record()["rates"]
        lines += ["", "| cost model / measured (goal: 0.67 to 1.5) | " + " | ".join(runs) + " |"]
        lines.append("| --- | " + " | ".join("---" for _ in runs) + " |")
        predicted = {name: predicted_tokens_per_s(rates, run["arguments"]) for name, run in runs.items()}
        summary["model_over_measured"] = {
            name: {key: value / runs[name]["results"][key] for key, value in figures.items()}
            for name, figures in predicted.items()
        }
        for key in ("cache_tokens_per_s", "our_training_tokens_per_s"):
            lines.append(
                f"| {key} | " + " | ".join(f"{summary['model_over_measured'][n][key]:.2f}" for n in runs) + " |"
            )
        lines.append(", ".join(f"{key} {value:.3g}" for key, value in summary["rates"].items()))
    lines.append("")
    profile = "; the step profile: profile/table.md" if (folder / "profile" / "table.md").exists() else ""
    lines.append(
        f"torch {summary['versions'].get('torch')}, sparsify {summary['versions'].get('eai-sparsify')}, "
        f"zarr {summary['versions'].get('zarr')}{profile}"
    )
    (folder / "device_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "device_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    report(Path(sys.argv[1]))
    sys.exit(0)

"""How much two runs of one study differ: two `results/` folders made under two readings of a
setting (e.g. config/presets/authors_sae.yaml against config.yaml's SAE training, or an example cap).

Prints, per variant, the mean over SAEs of each metric in both runs and their difference, the
largest difference of one SAE, and every claim whose verdict changed; writes the same as JSON.

    .venv/bin/python bench/compare_runs.py A/results B/results --labels default authors --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

KEYS = ["model", "variant", "layer", "expansion_factor", "k"]
METRICS = (
    "explained_variance_masked_per_token",
    "cosine_similarity_masked",
    "l1",
    "l0",
    "dead_fraction",
    "ce_loss_score",
    "fuzz_auroc_tokens",
    "fuzz_auroc_llm",
    "entropy_normalised",
)


def compare(first: Path, second: Path, labels: tuple[str, str]) -> dict:
    tables = [pd.read_csv(folder / "metrics.csv").set_index(KEYS) for folder in (first, second)]
    joined = tables[0].join(tables[1], lsuffix=f" {labels[0]}", rsuffix=f" {labels[1]}", how="inner")
    metrics = [m for m in METRICS if m in tables[0].columns and m in tables[1].columns]
    per_variant = {}
    for variant, part in joined.groupby(level="variant"):
        per_variant[variant] = {
            metric: {
                labels[0]: part[f"{metric} {labels[0]}"].mean(),
                labels[1]: part[f"{metric} {labels[1]}"].mean(),
                "largest |difference| of one SAE": (part[f"{metric} {labels[1]}"] - part[f"{metric} {labels[0]}"])
                .abs()
                .max(),
            }
            for metric in metrics
        }
    claims = [pd.read_csv(folder / "claims.csv") for folder in (first, second)]
    keys = ["model", "layer", "claim", "metric", "comparison"]
    verdicts = claims[0].merge(claims[1], on=keys, suffixes=(f" {labels[0]}", f" {labels[1]}"))
    changed = verdicts[verdicts[f"holds {labels[0]}"] != verdicts[f"holds {labels[1]}"]]
    return {
        "saes": len(joined),
        "per_variant": per_variant,
        "claims": len(verdicts),
        "claims_holding": {label: int(verdicts[f"holds {label}"].sum()) for label in labels},
        "verdicts_changed": changed[keys + [f"estimate {labels[0]}", f"estimate {labels[1]}", f"holds {labels[1]}"]]
        .astype(str)
        .to_dict("records"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="a results/ folder")
    parser.add_argument("second", type=Path, help="the other run's results/ folder")
    parser.add_argument("--labels", nargs=2, default=["first", "second"])
    parser.add_argument("--json", type=Path, help="write the comparison here too")
    args = parser.parse_args(argv)
    labels = tuple(args.labels)
    result = compare(args.first, args.second, labels)
    print(f"{result['saes']} SAEs in both runs")
    for variant, metrics in result["per_variant"].items():
        print(f"\n{variant}")
        print(f"  {'metric':<38} {labels[0]:>10} {labels[1]:>10} {'max |diff|':>10}")
        for metric, values in metrics.items():
            print(f"  {metric:<38} " + " ".join(f"{value:>10.4f}" for value in values.values()))
    print(f"\nclaims holding: {result['claims_holding']} of {result['claims']}; verdicts changed:")
    for change in result["verdicts_changed"]:
        print("  " + " | ".join(change.values()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

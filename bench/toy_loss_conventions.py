"""Does Figure 6's finding survive each L1-SAE loss convention (config `toy.sae.loss`)?

On a config's superposition dataset (the demo's by default): its inputs, their Gaussian control and
both through one random MLP, an L1 SAE per coefficient of the paper's grid between --low and --high,
under each convention. Prints, per convention and sparsity measure, how much denser the control is
than the data at matched 1 - NRE, before the MLP and after it (the paper: much sparser before, only
slightly after), the outputs' sparsity over the inputs', and the RMS of the MLP's outputs over its
inputs' (the summed loss sees that scale; the standardised one does not).

    .venv/bin/python bench/toy_loss_conventions.py --configfile config/demo.yaml --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from saerand.config import SCHEMA, load_config
from saerand.provenance import provenance
from saerand.settings import ToySaeSettings, from_config
from saerand.study import Study
from saerand.toy import metrics
from saerand.toy.l1_sae import LOSSES, l1_coefficients, train_l1_sae
from saerand.toy.sweep import KINDS, SUPERPOSITION, dataset_kinds, toy_dataset

MEASURES = ("l0", "l1_over_sqrt_l2")


def sparsity_at(table: pd.DataFrame, kind: str, measure: str, level: float) -> float:
    """The `measure` the Pareto frontier of `kind` reaches at 1 - NRE `level`."""
    return metrics.sparsity_at_one_minus_nre(table[table["kind"] == kind], measure, level)


def ratios(table: pd.DataFrame, measure: str, level: float) -> dict[str, float]:
    """The control's sparsity over the data's, before the MLP and after it, and the outputs' over the inputs'."""
    at = {kind: sparsity_at(table, kind, measure, level) for kind in KINDS}
    return {
        "inputs": at["gaussian inputs"] / at["inputs"],
        "outputs": at["gaussian outputs"] / at["outputs"],
        "outputs_over_inputs": at["outputs"] / at["inputs"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=float, default=10**-2.5, help="smallest coefficient of the paper's grid to train")
    parser.add_argument("--high", type=float, default=1.0)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.7, 0.85], help="1 - NRE levels compared")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    config = load_config(args.configfile, SCHEMA)
    spec = next(s for s in Study.of(config).toy_datasets.values() if s["source"] == SUPERPOSITION)
    settings = from_config(ToySaeSettings, config["toy"]["sae"], "toy.sae")
    n_latents = max(spec["latents"])
    inputs, _ = toy_dataset(spec, args.seed)
    kinds = dataset_kinds(inputs, args.seed, config["toy"]["gaussian_control"])
    rms = {kind: float(np.sqrt((data**2).mean())) for kind, data in kinds.items()}
    coefficients = [c for c in l1_coefficients() if args.low * 0.999 <= c <= args.high * 1.001]
    results: dict = {"outputs_rms_over_inputs": rms["outputs"] / rms["inputs"], "conventions": {}}
    for loss in LOSSES:
        trained = dataclasses.replace(settings, loss=loss)
        rows = []
        for kind, coefficient in tqdm([(k, c) for k in kinds for c in coefficients], desc=loss):
            result = train_l1_sae(
                kinds[kind],
                n_latents,
                coefficient,
                epochs=trained.epochs,
                batch_size=trained.batch_size,
                lr=trained.lr,
                seed=args.seed,
                validation_fraction=trained.validation_fraction,
                progress=False,
                loss=loss,
            )
            rows.append({"kind": kind, "l1_coefficient": coefficient, **result.metrics})
        table = pd.DataFrame(rows)
        results["conventions"][loss] = {
            f"{measure}@{level}": ratios(table, measure, level) for measure in MEASURES for level in args.levels
        }
    print(
        f"{args.configfile}: {spec['n_samples']} points, {spec['n_features']} features in {spec['n_dims']} dims, "
        f"{n_latents} latents, {len(coefficients)} coefficients, seed {args.seed}; "
        f"outputs' RMS / inputs' {results['outputs_rms_over_inputs']:.2f}"
    )
    print(
        f"{'convention':34s}{'measure @ 1 - NRE':24s}{'control/data before MLP':>24s}{'after MLP':>12s}"
        f"{'outputs/inputs':>16s}"
    )
    for loss, by_measure in results["conventions"].items():
        for key, ratio in by_measure.items():
            print(
                f"{loss:34s}{key:24s}{ratio['inputs']:24.2f}{ratio['outputs']:12.2f}{ratio['outputs_over_inputs']:16.2f}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = provenance(bench="toy_loss_conventions", config=str(args.configfile), seed=args.seed, results=results)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

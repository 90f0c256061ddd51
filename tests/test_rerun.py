"""Reruns after a finished run: shrinking the set of SAEs redoes the aggregation and its figures,
and does nothing else; the same with the local profile and with a plain `snakemake` (no --profile),
which the workflow profile (profiles/default) makes as safe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from PIL import Image

from saerand.aggregate import study_table
from saerand.dag import planned_jobs
from saerand.paths import sae_directory
from saerand.study import SaeTarget

from .conftest import REPO
from .workflow_runs import MINI, SNAKEMAKE, start_from_built_model

# No --profile: what `snakemake` does by itself (it still loads profiles/default).
PLAIN = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
SAFE_TRIGGERS = {"mtime", "params"}
WORKFLOW_PROFILE = "workflow specific profile"


def _snakemake(command: list[str], cwd: Path, *args: str) -> str:
    result = subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake {args} failed:\n{output[-4000:]}"
    return output


# ---------------------------------------------------------------------------------------------
# Which profiles Snakemake loads (snakemake/cli.py, parse_args): the workflow profile is
# `profiles/default` searched relative to the working directory and to the Snakefile's folder, and
# is appended after any --profile, so its keys win over theirs.


def _parsed(cwd: Path, *argv: str, monkeypatch) -> SimpleNamespace:
    from snakemake.cli import parse_args

    monkeypatch.chdir(cwd)
    _, args = parse_args(list(argv))
    return SimpleNamespace(
        triggers={trigger.item_to_choice() for trigger in args.rerun_triggers},
        cores=args.cores,
        jobs=args.jobs,
        executor=args.executor,
        keep_going=args.keep_going,
    )


def test_the_workflow_profile_is_loaded_from_the_root_and_from_elsewhere(tmp_path, monkeypatch):
    assert _parsed(REPO, monkeypatch=monkeypatch).triggers == SAFE_TRIGGERS
    # Elsewhere (a test's or a user's working directory), found beside the Snakefile.
    elsewhere = _parsed(
        tmp_path, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), monkeypatch=monkeypatch
    )
    assert elsewhere.triggers == SAFE_TRIGGERS
    # Only `--workflow-profile none` leaves Snakemake's own default, which includes `input` and `code`.
    unsafe = _parsed(REPO, "--workflow-profile", "none", monkeypatch=monkeypatch)
    assert unsafe.triggers == SAFE_TRIGGERS | {"input", "code", "software-env"}


def test_the_workflow_profile_combines_with_the_profiles(tmp_path, monkeypatch):
    local = _parsed(REPO, "--profile", "profiles/local", monkeypatch=monkeypatch)
    assert (local.triggers, local.cores, local.executor) == (SAFE_TRIGGERS, 2, None)
    slurm = _parsed(REPO, "--profile", "profiles/slurm", monkeypatch=monkeypatch)
    assert (slurm.triggers, slurm.executor, slurm.jobs, slurm.keep_going) == (SAFE_TRIGGERS, "slurm", 100, True)
    # The Slurm profile's own bound on CPUs asked for at once (a dry run plans an LLM server's group,
    # which runs all at once, with it); the workflow profile adds no local settings to a cluster run.
    assert slurm.cores == 4096
    # A user's profile asking for the `input` trigger is overridden key by key; its other keys stay.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text(yaml.safe_dump({"rerun-triggers": sorted(SAFE_TRIGGERS | {"input"}), "cores": 3}))
    combined = _parsed(REPO, "--profile", str(mine), monkeypatch=monkeypatch)
    assert (combined.triggers, combined.cores) == (SAFE_TRIGGERS, 3)
    # The command line still wins.
    assert _parsed(REPO, "--rerun-triggers", "mtime", monkeypatch=monkeypatch).triggers == {"mtime"}


# ---------------------------------------------------------------------------------------------
# The aggregation script on its own: the table is the set of SAEs it is given, nothing else.


def _metrics_json(workdir: Path, model, variant, layer, expansion, k) -> str:
    path = workdir / sae_directory(model, variant, layer, expansion, k) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model": model,
                "variant": variant,
                "layer": layer,
                "sae": {"num_latents": 8 * expansion, "expansion_factor": expansion, "k": k},
                "metrics": {"explained_variance": 0.5 + 0.01 * layer, "cosine_similarity": 0.8, "l1": 2.0},
            }
        )
    )
    return str(path.relative_to(workdir))


def _study_table(workdir: Path, saes: list[list], inputs: list[str], monkeypatch) -> pd.DataFrame:
    monkeypatch.chdir(workdir)  # metrics paths are relative, as in a run
    return study_table([SaeTarget(*sae) for sae in saes], inputs)


def test_aggregation_tables_exactly_its_set_of_saes(tmp_path, monkeypatch):
    saes = [["m", variant, layer, 4, 4] for variant in ("control", "trained") for layer in (0, 1)]
    inputs = [_metrics_json(tmp_path, *sae) for sae in saes]
    _metrics_json(tmp_path, "m", "trained", 1, 2, 4)  # on disk, left over from a larger sweep
    table = _study_table(tmp_path, saes, inputs, monkeypatch)
    assert table[["model", "variant", "layer", "expansion_factor", "k"]].values.tolist() == saes


def test_aggregation_names_a_missing_or_foreign_metrics_file(tmp_path, monkeypatch):
    saes = [["m", "trained", layer, 4, 4] for layer in (0, 1)]
    inputs = [_metrics_json(tmp_path, *sae) for sae in saes]
    os.remove(tmp_path / inputs[1])
    with pytest.raises(FileNotFoundError, match=r"results/m/trained/x4-k4/layers\.1/metrics\.json"):
        _study_table(tmp_path, saes, inputs, monkeypatch)
    _metrics_json(tmp_path, *saes[1])
    foreign = _metrics_json(tmp_path, "m", "trained", 1, 2, 4)
    with pytest.raises(ValueError, match=r"not in the set of SAEs: \['results/m/trained/x2-k4/layers\.1/"):
        _study_table(tmp_path, saes, [*inputs, foreign], monkeypatch)
    # A metrics.json whose contents are another SAE's than its path says.
    shutil.copy(tmp_path / foreign, tmp_path / inputs[1])
    with pytest.raises(ValueError, match="do not match the set of SAEs"):
        _study_table(tmp_path, saes, inputs, monkeypatch)


# ---------------------------------------------------------------------------------------------
# End to end: a finished run, then a sweep point dropped from the config.


def _config(expansion_factors: list[int]) -> dict:
    """tests/configs/mini.yaml cut down: two variants, one layer, no toy study or auto-interp; the sweep adds
    (2, 4) to the study's own (4, 4) at that layer: four SAEs."""
    config = yaml.safe_load(MINI.read_text())
    config.pop("toy")
    config.pop("autointerp")
    config["variants"] = ["trained", "control"]
    config["models"]["mini-neox"]["layers"] = [1]
    config["sweep"] = {"models": ["mini-neox"], "layers": [1], "expansion_factors": expansion_factors, "k": [4]}
    return config


def _rows(workdir: Path) -> list[tuple]:
    table = pd.read_csv(workdir / "results" / "metrics.csv")
    return sorted(map(tuple, table[["variant", "layer", "expansion_factor", "k"]].values.tolist()))


def _figure_provenance(path: Path) -> dict:
    return json.loads(Image.open(path).text["Description"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mini_snapshot) -> Path:
    """The cut-down study run to the end by a plain `snakemake` (no --profile), from the mini
    study's embedded model and token stores."""
    workdir = tmp_path_factory.mktemp("rerun")
    start_from_built_model(mini_snapshot, workdir)
    # In the mini config's key order: Snakemake compares dict params by their repr.
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config([2, 4]), sort_keys=False))
    _snakemake(PLAIN, REPO, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2")
    assert _rows(workdir) == [(variant, 1, e, 4) for variant in ("control", "trained") for e in (2, 4)]
    return workdir


def _drop_a_sweep_point(finished_run: Path, tmp_path: Path, command: list[str], rerun_cwd: Path | None) -> None:
    """Copy the finished run, check a rerun has nothing to do, drop sweep point (2, 4) and rerun:
    the aggregation, both figures and the claims are redone without its SAEs, and nothing else is."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)  # copy2 keeps every mtime
    config = workdir / "config.yaml"
    where = ["--directory", str(workdir), "--configfile", str(config)]
    output = _snakemake(command, REPO, *where, "--dry-run")
    assert "Nothing to be done" in output, output[-4000:]
    plain = command is PLAIN
    assert not plain or WORKFLOW_PROFILE in output

    config.write_text(yaml.safe_dump(_config([4]), sort_keys=False))
    figures = workdir / "results" / "figures"
    before = {name: (figures / name).stat().st_mtime_ns for name in ("sae_metrics.png", "hyperparameter_sweep.png")}
    dropped = [
        workdir / sae_directory("mini-neox", variant, 1, 2, 4) / "metrics.json" for variant in ("trained", "control")
    ]
    # From the repository root with --directory, or from the run's own directory.
    cwd, args = (REPO, where) if rerun_cwd is None else (workdir, ["--configfile", str(config)])
    output = _snakemake(command, cwd, *args, "--cores", "2")
    assert not plain or WORKFLOW_PROFILE in output
    assert _rows(workdir) == [("control", 1, 4, 4), ("trained", 1, 4, 4)], output[-4000:]
    rules = sorted(rule for rule, _ in planned_jobs(output) if rule != "all")
    # The claims read the sweep too (Figure 11's ordering); the training curves only the study's own SAEs.
    assert rules == ["aggregate_metrics", "claims", "plot_hyperparameter_sweep"], output[-4000:]
    assert all(path.exists() for path in dropped)  # still on disk, no longer in the table
    for name, mtime in before.items():
        assert (figures / name).stat().st_mtime_ns > mtime, f"{name} was not redrawn"
    sweep = _figure_provenance(figures / "hyperparameter_sweep.png")["sweep"]
    assert sweep["expansion_factors"] == [4]
    record = json.loads((workdir / "results" / "metrics.provenance.json").read_text())
    assert [tuple(sae[1:]) for sae in record["saes"]] == [("control", 1, 4, 4), ("trained", 1, 4, 4)]

    output = _snakemake(command, REPO, *where, "--dry-run")
    assert "Nothing to be done" in output, output[-4000:]


@pytest.mark.slow
def test_dropping_a_sweep_point_with_the_local_profile(finished_run, tmp_path):
    _drop_a_sweep_point(finished_run, tmp_path, SNAKEMAKE, rerun_cwd=None)


@pytest.mark.slow
def test_dropping_a_sweep_point_with_a_plain_snakemake(finished_run, tmp_path):
    """No --profile: the workflow profile alone keeps the finished run finished and the table exact,
    found from the repository root and from the run's own directory."""
    _drop_a_sweep_point(finished_run, tmp_path, PLAIN, rerun_cwd=tmp_path / "run")


# The scripts of the finished run's GPU stages, as a `git pull` that edits them would leave them.
GPU_STAGE_SCRIPTS = ("cache_activations.py", "train_layer_shard.py", "finalize_sae.py", "evaluate_sae.py")


@pytest.mark.slow
def test_operational_settings_and_code_edits_rerun_nothing_finished(finished_run, tmp_path):
    """Devices, forward batch sizes, the store's codec, where shards live and a GPU constraint change
    how jobs run, not what they compute; a script edited by a `git pull` is newer than every output.
    Neither reruns anything; a setting that defines a result still does, and finished SAEs are write-protected."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    config = _config([2, 4])
    config["cache"].update(device="cpu", batch_sequences=7, compressor="zstd", node_local_dir=str(tmp_path / "node"))
    config["sae"]["device"] = "cpu"
    config["evaluation"].update(batch_tokens=512, batch_sequences=3, device="cpu")
    config["models"]["mini-neox"]["gpu_constraint"] = "a100_80gb"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    where = ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    output = _snakemake(SNAKEMAKE, REPO, *where, "--dry-run")
    assert "Nothing to be done" in output, output[-4000:]

    scripts = [REPO / "workflow" / "scripts" / name for name in GPU_STAGE_SCRIPTS]
    stamps = {path: path.stat() for path in scripts}
    try:
        for path in scripts:
            os.utime(path)  # now: newer than every output
        output = _snakemake(SNAKEMAKE, REPO, *where, "--dry-run")
        assert "Nothing to be done" in output, output[-4000:]
        # Asked for on purpose, the same edit reruns what reads those scripts.
        output = _snakemake(SNAKEMAKE, REPO, *where, "--dry-run", "--rerun-triggers", "mtime", "params", "code")
        assert {"finalize_sae", "evaluate_sae"} <= {rule for rule, _ in planned_jobs(output)}, output[-4000:]
    finally:
        for path, stamp in stamps.items():
            os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    config["sae"]["seed"] = 1  # defines every SAE
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    output = _snakemake(SNAKEMAKE, REPO, *where, "--dry-run")
    assert {"train_layer_shard", "finalize_sae", "evaluate_sae"} <= {rule for rule, _ in planned_jobs(output)}
    sae = workdir / sae_directory("mini-neox", "trained", 1, 4, 4) / "sae"
    assert all(not path.stat().st_mode & 0o222 for path in [sae, *sae.iterdir()])

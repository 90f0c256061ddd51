import base64
import os
import shutil
from collections import Counter

import pytest

from saerand.config import SCHEMA, load_config
from saerand.costs import StudyCosts
from saerand.dag import study_jobs
from saerand.paths import layer_checkpoint_directory
from saerand.planner import job_seconds, measured_scale, plan
from saerand.rules import GPU_RULES
from saerand.status import format_status, incomplete_outputs, main, slurm_queue, study_status
from saerand.study import Study

from .conftest import REPO


def _mark_incomplete(directory, path, max_len=None):
    """What Snakemake writes when a job starts: .snakemake/incomplete/<urlsafe b64 of the output>,
    split into '@' folders past a file name's length."""
    encoded = base64.urlsafe_b64encode(path.encode()).decode()
    parts = (
        [encoded] if max_len is None else [encoded[i : i + max_len - 1] for i in range(0, len(encoded), max_len - 1)]
    )
    parts = ["@" + part for part in parts[:-1]] + parts[-1:]
    marker = directory.joinpath(".snakemake", "incomplete", *parts)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")


def test_a_fresh_study_is_all_waiting_and_its_time_left_is_the_planners(paper, paper_jobs, tmp_path):
    config = paper
    status = study_status(config, tmp_path, queue=Counter(), jobs=paper_jobs)
    assert status.saes == 650
    assert all(
        states == Counter(done=0, running=0, waiting=650)
        for stage, states in status.stages.items()
        if stage in ("training", "evaluation")
    )
    assert status.gpu_hours_left == pytest.approx(plan(config, jobs=paper_jobs).gpu_hours)


def test_done_running_and_waiting_are_read_from_outputs_and_snakemakes_marks(tmp_path, capsys):
    config = load_config(REPO / "tests" / "configs" / "mini.yaml", SCHEMA)
    targets = Study.of(config).targets
    for target in targets[:3]:
        (tmp_path / target.directory / "sae").mkdir(parents=True)
    (tmp_path / targets[0].directory / "metrics.json").write_text("{}")
    (tmp_path / targets[1].directory / "metrics.json").write_text("{}")  # being rewritten: running
    _mark_incomplete(tmp_path, f"{targets[1].directory}/metrics.json")
    _mark_incomplete(tmp_path, f"{targets[3].directory}/sae", max_len=20)
    assert f"{targets[3].directory}/sae" in incomplete_outputs(tmp_path)
    # A layer's shard job running: every SAE of that layer (the study's and the sweep's) is training.
    layer_mates = [
        t
        for t in targets[4:]
        if (t.model, t.variant, t.layer) == (targets[4].model, targets[4].variant, targets[4].layer)
    ]
    _mark_incomplete(tmp_path, layer_checkpoint_directory(targets[4].model, targets[4].variant, targets[4].layer, 1))
    # (No jobs: these outputs are stand-ins, which a dry run would not take for finished work.)
    status = study_status(config, tmp_path, queue=Counter({("train_layer_shard", "running"): 2}), jobs=[])
    n = len(targets)
    assert status.stages["training"] == Counter(done=3, running=1 + len(layer_mates), waiting=n - 4 - len(layer_mates))
    assert status.stages["evaluation"] == Counter(done=1, running=1, waiting=n - 2)
    text = format_status(status, gpus=2)
    assert "training" in text and "Slurm: 2 running (train_layer_shard running 2)" in text


def test_finished_jobs_calibrate_the_time_left(tmp_path):
    config = load_config(REPO / "tests" / "configs" / "mini.yaml", SCHEMA)
    target = Study.of(config).targets[0]
    before = study_status(config, tmp_path, queue=Counter())
    benchmark = (
        tmp_path
        / "benchmarks"
        / "evaluate_sae"
        / target.model
        / target.variant
        / f"x{target.expansion_factor}-k{target.k}"
        / f"layers.{target.layer}.tsv"
    )
    benchmark.parent.mkdir(parents=True)
    benchmark.write_text("s\th:m:s\n3600\t1:00:00\n")  # an hour per evaluation: far slower than assumed
    after = study_status(config, tmp_path, queue=Counter())
    assert after.calibrated_rules == {"evaluate_sae": 1}
    assert after.gpu_hours_left > before.gpu_hours_left + len(Study.of(config).targets) - 2


def test_the_slurm_queue_is_counted_per_rule_and_state(tmp_path, monkeypatch):
    squeue = tmp_path / "squeue"  # a test double of Slurm's squeue: what `squeue --me -h -o %T|%k` prints
    squeue.write_text(
        "#!/bin/sh\nprintf 'RUNNING|rule_train_layer_shard_wildcards_m_trained_1_0\\n"
        "PENDING|rule_evaluate_sae_wildcards_m\\nPENDING|rule_evaluate_sae_wildcards_m\\n"
        "RUNNING|someone else\\n'\n"
    )
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert slurm_queue() == Counter({("train_layer_shard", "running"): 1, ("evaluate_sae", "pending"): 2})


def test_the_command_prints_the_table(capsys, tmp_path):
    main(["--configfile", str(REPO / "tests" / "configs" / "mini.yaml"), "--directory", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["stage", "done", "running", "waiting"] and "GPU time left" in out


def test_the_time_left_is_what_snakemake_would_still_run(mini_snapshot, tmp_path):
    """A finished study has nothing left; with one SAE's metrics and the table made from them
    deleted, exactly its evaluation is left (GPU work: the aggregations are local), timed at the
    throughput its study's own evaluations measured. (With the table kept, Snakemake would not
    redo the metrics, and neither does the time left count them.)"""
    workdir = tmp_path / "study"
    shutil.copytree(mini_snapshot, workdir, symlinks=True)  # copy2 keeps every mtime
    config = load_config(REPO / "tests" / "configs" / "mini.yaml", SCHEMA)
    finished = study_status(config, workdir, queue=Counter())
    assert finished.gpu_hours_left == 0 and finished.stages["evaluation"]["done"] == finished.saes
    target = Study.of(config).targets[0]
    (workdir / target.directory / "metrics.json").unlink()
    (workdir / "results" / "metrics.csv").unlink()
    status = study_status(config, workdir, queue=Counter())
    assert status.stages["evaluation"] == Counter(done=status.saes - 1, running=0, waiting=1)
    left = [job for job in study_jobs(config, workdir) if job.rule in GPU_RULES]
    assert [(job.rule, job.wildcards["layer"]) for job in left] == [("evaluate_sae", str(target.layer))]
    costs = StudyCosts(config)
    scale = measured_scale(costs, workdir / "benchmarks")["evaluate_sae"][0]
    assert status.gpu_hours_left == pytest.approx(job_seconds(costs, left[0]) * scale / 3600)

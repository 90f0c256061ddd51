import base64
import os
from collections import Counter

import pytest

from saerand.config import layer_checkpoint_directory, load_config
from saerand.costs import StudyCosts
from saerand.planner import SCHEMA, plan
from saerand.status import format_status, incomplete_outputs, main, slurm_queue, study_status

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


def test_a_fresh_study_is_all_waiting_and_its_time_left_is_the_planners():
    config = load_config(REPO / "config" / "config.yaml", SCHEMA)
    status = study_status(config, REPO / "no-such-study", queue=Counter())
    assert status.saes == 650
    assert all(
        states == Counter(done=0, running=0, waiting=650)
        for stage, states in status.stages.items()
        if stage in ("training", "evaluation")
    )
    assert status.gpu_hours_left == pytest.approx(plan(config).gpu_hours)


def test_done_running_and_waiting_are_read_from_outputs_and_snakemakes_marks(tmp_path, capsys):
    config = load_config(REPO / "tests" / "configs" / "mini.yaml", SCHEMA)
    targets = StudyCosts(config).targets
    fresh = study_status(config, tmp_path, queue=Counter())
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
    status = study_status(config, tmp_path, queue=Counter({("train_layer_shard", "running"): 2}))
    n = len(targets)
    assert status.stages["training"] == Counter(done=3, running=1 + len(layer_mates), waiting=n - 4 - len(layer_mates))
    assert status.stages["evaluation"] == Counter(done=1, running=1, waiting=n - 2)
    assert 0 < status.gpu_hours_left < fresh.gpu_hours_left  # three SAEs' layers need no more training jobs
    text = format_status(status, gpus=2)
    assert "training" in text and "Slurm: 2 running (train_layer_shard running 2)" in text


def test_finished_jobs_calibrate_the_time_left(tmp_path):
    config = load_config(REPO / "tests" / "configs" / "mini.yaml", SCHEMA)
    target = StudyCosts(config).targets[0]
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
    assert after.gpu_hours_left > before.gpu_hours_left + len(StudyCosts(config).targets) - 2


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


def test_the_command_prints_the_table(capsys):
    main(["--configfile", str(REPO / "tests" / "configs" / "mini.yaml"), "--directory", "no-such-study"])
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["stage", "done", "running", "waiting"] and "GPU time left" in out

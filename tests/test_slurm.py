"""The workflow on a real one-node Slurm (tests/slurm_cluster.py) through profiles/slurm, at the
shapes of a strict GPU cluster: accounting on, an account every sbatch needs, requests past a
partition's limits refused (EnforcePartLimits=ALL), jobs requeued only when they ask to be; a GPU
partition with a MaxTime (a 24 h limit scaled down) and a CPU partition whose MaxTime is 2 minutes,
both read from sinfo (no SAERAND_SLURM_*_MAX_RUNTIME set); GPU jobs that ask for 1 CPU on a node that
shows them 2.

One study of tests/configs/mini.yaml (the trained variant alone, no auto-interp, one seed of
superposed toy data, every job on the CPU: the cluster's GPUs are fake) goes through
`snakemake --profile` four times:
- run 0: without SAERAND_SLURM_ACCOUNT, it refuses to start and submits nothing.
- run 1: the toy sweep's CPU job hangs (SIGSTOP) twice: killed at its 1-minute limit, retried with
  2 minutes, killed again, retried with 2 minutes (4 would be past MaxTime), always with the same
  memory (only the local toy aggregation waits for it, so the 3 minutes overlap the study's); one
  layer of a shard group cannot write its checkpoint, so that group fails after its other members
  finished.
- run 2: the same command redoes only what run 1 left undone, and the toy sweep whose results
  were deleted; that sweep is killed for memory on every attempt, its memory raised 1.5x each time and
  its time limit kept.
- run 3: the sweep gets its default memory and is preempted (requeued by Slurm) once while it runs;
  it finishes, and the results equal those of the local run.
- run 4: one SAE is deleted and the training shards go to node-local disk (cache.node_local_dir),
  which the cluster empties after every job as a job's own tmpfs would be: its layer retrains
  shard group by shard group, each shard cached and read in one cluster job and never on the
  shared filesystem, and the SAE comes back as it was.
The aggregations and plots are local rules: they run in Snakemake's own process, never on Slurm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from saerand.dag import planned_jobs
from saerand.rules import FINISH_GROUP_RULES, LOCAL_RULES, SHARD_GROUP_RULES

from .conftest import REPO
from .slurm_cluster import SlurmCluster
from .workflow_runs import MINI, SNAKEMAKE

VARIANTS = ["trained"]  # one chain: the failed group and its rerun are the test; a second only adds minutes
# "... submitted with SLURM jobid 12 (log: .../slurm_logs/rule_cache_eval/mini-neox_control/12.log)"
SUBMITTED = re.compile(
    r"has been submitted with SLURM jobid (\d+) \(log: (?=\S*/slurm_logs/(?:rule|group)_([^/]+)/)(\S+)\)"
)
CPU_PARTITION, GPU_PARTITION = "cpu-test", "gpu-test"
PARTITION_MAX_MINUTES = {CPU_PARTITION: 2, GPU_PARTITION: 30}
ACCOUNT = "saerand"
SITE = {
    "SAERAND_SLURM_PARTITION": CPU_PARTITION,
    "SAERAND_SLURM_GPU_PARTITION": GPU_PARTITION,
    "SAERAND_SLURM_CPUS_PER_GPU_JOB": "1",
    "SAERAND_SLURM_ACCOUNT": ACCOUNT,
}
HUNG_RULE = "toy_sweep"
HUNG_OUTPUT = Path("results/toy/superposition/seed-0.csv")
# Deleted after run 1 (the seed's table and the aggregation over it, which would otherwise stand in
# for it): run 2 has the sweep to redo.
TOY_RESULTS = Path("results/toy/superposition")
# The layer whose SAEs' shard-0 checkpoint cannot be written in run 1: a file where its folder goes.
BLOCKED = Path("results/mini-neox/trained/layers.1/checkpoints")
# Deleted after run 3, rebuilt in run 4 from shards on node-local disk: layer 0's SAE, the only one
# of its layer (the sweep's are on layer 1).
REBUILT_SAE = Path("results/mini-neox/trained/x4-k4/layers.0/sae")
# The workflow's own limits (saerand.retries) from smaller first values: the hung job 1 minute; in
# run 2 1 minute and 100 MB, far below what Python with torch needs.
RETRIES = "__import__('saerand.retries', fromlist=['r'])"


def _limit(resource: str, rule: str, base: int) -> str:
    return f"{RETRIES}.{resource}({base}, {RETRIES}.earlier_failures('{rule}', wildcards, attempt), False)"


def _can_run_slurm() -> bool:
    return shutil.which("slurmctld") is not None or (os.geteuid() == 0 and shutil.which("apt-get") is not None)


pytestmark = pytest.mark.skipif(not _can_run_slurm(), reason="needs Slurm installed, or root and apt-get to install it")


def _profile(directory: Path, small_memory: bool = False) -> Path:
    """profiles/slurm plus the test overlay: fast status polling by squeue (no slurmdbd here), the
    hung job's 1-minute first limit and, in run 2, its small memory."""
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    settings.update(
        {
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,
            "seconds-between-status-checks": 2,
            "max-status-checks-per-second": 10,
            "latency-wait": 5,
        }
    )
    overlay = {HUNG_RULE: {"runtime": _limit("runtime_minutes", HUNG_RULE, 1)}}
    if small_memory:
        overlay[HUNG_RULE]["mem_mb"] = _limit("memory_mb", HUNG_RULE, 100)
    settings["set-resources"] = {**settings["set-resources"], **overlay}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(settings))
    return directory


def _hang(workdir: Path, process: subprocess.Popen, times: int) -> int:
    """SIGSTOP the first `times` processes running HUNG_RULE's script in `workdir` on the CPU
    partition (toy_sweep_gpu runs the same script on the GPU one), one attempt after the other, as
    a hung job would be; returns how many it stopped."""
    stopped: set[int] = set()
    while process.poll() is None and len(stopped) < times:
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                pid = int(proc.name)
                on_cpu = f"SLURM_JOB_PARTITION={CPU_PARTITION}".encode() in (proc / "environ").read_bytes().split(b"\0")
                here = Path(os.readlink(proc / "cwd")) == workdir
                if pid not in stopped and f".{HUNG_RULE}.py" in cmdline and here and on_cpu:
                    os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)
            except (OSError, ValueError):
                continue
        time.sleep(0.2)
    return len(stopped)


def _study_config(workdir: Path, node_local_dir: Path | None = None) -> Path:
    """tests/configs/mini.yaml without auto-interp (its jobs' partitions are checked by
    tests/test_slurm_profile.py; here they would add minutes of per-job Slurm overhead), and one
    toy sweep on the CPU partition: the one that hangs; every job on the CPU; training shards in
    `node_local_dir` if given."""
    path = workdir.parent / ("study.yaml" if node_local_dir is None else "study-node-local.yaml")
    if not path.exists():
        config = yaml.safe_load(MINI.read_text())
        config.pop("autointerp")
        config["toy"]["superposition"]["seeds"] = 1
        # The cluster's GPUs are fake: a job given one would stop at once (saerand.models), so the
        # study says where it runs.
        for section in ("cache", "sae", "evaluation", "toy"):
            config[section]["device"] = "cpu"
        config["cache"]["node_local_dir"] = None if node_local_dir is None else str(node_local_dir)
        path.write_text(yaml.safe_dump(config))
    return path


def _requeue(cluster: SlurmCluster, workdir: Path, process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Preempt HUNG_RULE's job once it runs, as a higher-priority job would under PreemptMode=REQUEUE
    (scontrol requeue: the job goes back to the queue, and starts again)."""
    while process.poll() is None:
        for proc in Path("/proc").iterdir():
            try:
                if f".{HUNG_RULE}.py" not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    continue
                if Path(os.readlink(proc / "cwd")) != workdir:
                    continue
                environ = dict(v.split(b"=", 1) for v in (proc / "environ").read_bytes().split(b"\0") if b"=" in v)
                job_id = environ[b"SLURM_JOB_ID"].decode()
            except (OSError, KeyError, ValueError):
                continue
            requeued = subprocess.run(["scontrol", "requeue", job_id], env=cluster.env, capture_output=True, text=True)
            if requeued.returncode == 0:
                _start_now(cluster, job_id)
            return requeued
        time.sleep(0.2)
    raise AssertionError(f"{HUNG_RULE} was never seen running")


def _start_now(cluster: SlurmCluster, job_id: str, timeout: float = 60.0) -> None:
    """Slurm holds a requeued job back for 2 minutes (its BeginTime); the test lets it start at
    once. Snakemake sees the same: the job pending again, then running from its start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%r"], env=cluster.env, capture_output=True, text=True
        ).stdout.strip()
        if reason == "BeginTime":
            command = ["scontrol", "update", f"JobId={job_id}", "StartTime=now"]
            subprocess.run(command, env=cluster.env, capture_output=True, text=True, check=True)
            return
        time.sleep(0.5)


def _run(
    cluster: SlurmCluster,
    workdir: Path,
    profile: Path,
    hang: int = 0,
    requeue: bool = False,
    site: dict | None = None,
    node_local_dir: Path | None = None,
    targets: tuple[str, ...] = (),
) -> tuple[int, str]:
    env = {
        **cluster.env,
        **(SITE if site is None else site),
        "PATH": f"{Path(SNAKEMAKE[0]).parent}:{cluster.env['PATH']}",
    }
    command = [
        *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
        *targets,  # before --config, which takes every word after it
        "--directory",
        str(workdir),
        "--profile",
        str(profile),
        "--configfile",
        str(_study_config(workdir, node_local_dir)),
        "--config",
        f"variants=[{','.join(VARIANTS)}]",
    ]
    log = workdir.parent / f"{profile.name}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        hung = _hang(workdir, process, hang)
        requeued = _requeue(cluster, workdir, process) if requeue else None
        returncode = process.wait(timeout=1500)
    assert hung == hang, f"the job to hang was seen running {hung} times, not {hang}"
    assert requeued is None or requeued.returncode == 0, f"preempting {HUNG_RULE} failed: {requeued.stderr}"
    return returncode, log.read_text()


def _metrics(path: Path) -> dict | None:
    """The metrics a run wrote, or None where it wrote none (the test then shows the run's log)."""
    return json.loads(path.read_text())["metrics"] if path.exists() else None


def _submitted(log: str, cluster: SlurmCluster) -> list[tuple[str, dict[str, str]]]:
    """(rule or group, Slurm record) of every job the run submitted, in submission order; the
    record's LogPath is where the executor put the job's log (it names a rule job's wildcards)."""
    records = {job["JobId"]: job for job in cluster.finished_jobs()}
    return [(name, {**records[job_id], "LogPath": path}) for job_id, name, path in SUBMITTED.findall(log)]


def _outputs(workdir: Path) -> dict[str, float]:
    """Every SAE checkpoint, SAE and metrics file on disk, with its modification time."""
    patterns = (
        "results/*/*/layers.*/checkpoints/shard-*",
        "results/*/*/*/layers.*/sae",
        "results/*/*/*/layers.*/metrics.json",
        "results/*/*/cache/train/shard-*.zarr",
    )
    return {
        str(path.relative_to(workdir)): path.stat().st_mtime for pattern in patterns for path in workdir.glob(pattern)
    }


@pytest.fixture(scope="module")
def slurm_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    workdir = root / "study"
    (workdir / BLOCKED).parent.mkdir(parents=True)
    (workdir / BLOCKED).write_text("not a folder\n")
    node_local = root / "node-local"
    # Slurm counts 4 CPUs on this 2-core machine, and no CPU binding: a job asking for 1 CPU sees 2.
    with SlurmCluster(
        root / "cluster",
        cpus=4,
        gpus=2,
        real_memory_mb=12000,
        partitions=PARTITION_MAX_MINUTES,
        enforce_part_limits=True,
        accounts=[ACCOUNT],
        node_local_dir=node_local,
    ) as cluster:
        no_account = {key: value for key, value in SITE.items() if key != "SAERAND_SLURM_ACCOUNT"}
        runs = {"without_account": _run(cluster, workdir, _profile(root / "run0"), site=no_account)}
        runs["first"] = _run(cluster, workdir, _profile(root / "run1"), hang=2)
        after_first = _outputs(workdir)
        (workdir / BLOCKED).unlink()
        shutil.rmtree(workdir / TOY_RESULTS)
        runs["second"] = _run(cluster, workdir, _profile(root / "run2", small_memory=True))
        failed_state = {
            "sweep_table": (workdir / HUNG_OUTPUT).exists(),
            "partial_files": [str(p) for p in workdir.rglob(".*partial*")],
        }
        runs["third"] = _run(cluster, workdir, _profile(root / "run3"), requeue=True)
        rebuilt = workdir / REBUILT_SAE
        metrics_before = json.loads((rebuilt.parent / "metrics.json").read_text())["metrics"]
        for path in (rebuilt, *rebuilt.rglob("*")):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)  # finished SAEs are write-protected
        shutil.rmtree(rebuilt)
        (rebuilt.parent / "metrics.json").unlink()
        # The target itself: below a finished aggregate, Snakemake rebuilds no missing intermediate.
        target = str(REBUILT_SAE.parent / "metrics.json")
        runs["fourth"] = _run(cluster, workdir, _profile(root / "run4"), node_local_dir=node_local, targets=(target,))
        yield {
            "workdir": workdir,
            "failed_state": failed_state,
            "after_first": after_first,
            "node_local": {
                "dir": node_local,
                "left": sorted(node_local.iterdir()),
                "shared_shards": sorted(workdir.glob("results/*/*/cache/train/shard-*.zarr")),
                "metrics_before": metrics_before,
                "metrics_after": _metrics(rebuilt.parent / "metrics.json"),
            },
            "logs": {name: log for name, (_, log) in runs.items()},
            **{name: (code, _submitted(log, cluster)) for name, (code, log) in runs.items()},
        }


def test_without_an_account_nothing_is_submitted(slurm_study):
    code, submitted = slurm_study["without_account"]
    assert code != 0 and submitted == []
    assert "No Slurm account" in slurm_study["logs"]["without_account"]
    assert "SAERAND_SLURM_ACCOUNT" in slurm_study["logs"]["without_account"]


def test_every_job_is_charged_to_the_account_within_its_partitions_limits(slurm_study):
    """Every job carried the account (the cluster refuses any other), and every time limit, the
    workflow's estimate or its retry's, stayed within what sinfo says its partition allows."""
    jobs = [record for run in ("first", "second", "third", "fourth") for _, record in slurm_study[run][1]]
    assert jobs and {record.get("Account") for record in jobs} == {ACCOUNT}
    assert all(int(record["TimeLimit"]) <= PARTITION_MAX_MINUTES[record["Partition"]] for record in jobs)


def test_every_job_goes_through_sbatch_on_its_partition(slurm_study):
    assert [slurm_study[run][0] != 0 for run in ("first", "second", "third")] == [True, True, False]
    # Nothing ran outside Slurm but the target rule `all` and the aggregations and plots.
    # (show-failed-logs copies a failed group's own log, whose jobs ran locally inside it, into the
    # run's output: those are the grouped rules.)
    local = re.findall(r"^localrule (\w+):", "".join(slurm_study["logs"].values()), re.MULTILINE)
    assert set(local) - {"cache_train_shard", "train_layer_shard", "finalize_sae", "evaluate_sae"} == {
        "all",
        "aggregate_metrics",
        "claims",
        "training_curves",
        "plot_hyperparameter_sweep",
        "toy_aggregate",
        "toy_figure4",
    } and set(local) - {"all"} <= set(LOCAL_RULES) | set(SHARD_GROUP_RULES) | set(FINISH_GROUP_RULES)
    jobs = [job for run in ("first", "second", "third") for job in slurm_study[run][1]]
    # A group's log folder is named after the group and its rules: group_<group>_<rule>_<rule>.
    named = [(name.split("_")[0] if name.startswith(("shard-", "finish-")) else name, record) for name, record in jobs]
    on_gpu = {name for name, record in named if record["Partition"] == GPU_PARTITION}
    on_cpu = {name for name, record in named if record["Partition"] == CPU_PARTITION}
    # Shard groups, the finishing/evaluation groups (finishing needs no GPU, but shares their
    # cluster job), held-out caching and the embedding sweep on the GPU partition; everything else,
    # the superposition sweep included, on the CPU one.
    assert on_gpu == {f"shard-mini-neox-{v}-{s}" for v in VARIANTS for s in range(3)} | {
        f"finish-mini-neox-{v}" for v in VARIANTS
    } | {"cache_eval", "toy_sweep_gpu"}
    assert on_cpu == {
        "prepare_corpus",
        "train_tokenizer",
        "train_embedded_model",
        "tokenize_text",
        "toy_sweep",
    }


def test_grouped_gpu_jobs_asking_for_fewer_cpus_than_they_see_run_on_one_gpu(slurm_study):
    """Each GPU job asks for 1 CPU and sees 2: the jobs of a group still run one at a time in one
    one-GPU step (with the CPU count deciding, two at once asked for 2 GPUs in a 1-GPU job)."""
    groups = [
        (name, record)
        for run in ("first", "second", "third")
        for name, record in slurm_study[run][1]
        if name.startswith(("shard-", "finish-"))
    ]
    assert groups and all("cpu=1," in record["Tres"] for _, record in groups)
    failed = {name.split("_")[0] for name, record in groups if record["JobState"] != "COMPLETED"}
    assert failed == {"shard-mini-neox-trained-0"}  # the blocked SAE's group, in run 1
    assert "Step requested" not in "".join(slurm_study["logs"].values())


def test_a_time_out_is_retried_with_more_time_up_to_the_partition_cap_and_the_same_memory(slurm_study):
    attempts = [record for name, record in slurm_study["first"][1] if name == HUNG_RULE]
    # 1 minute, doubled after the time-out, then 2 again: 4 would be past the partition's MaxTime
    # and never start.
    assert [(r["JobState"], r["TimeLimit"]) for r in attempts] == [
        ("TIMEOUT", "1"),
        ("TIMEOUT", "2"),
        ("COMPLETED", "2"),
    ]
    assert len({re.search(r"mem=(\d+)M", r["Tres"]).group(1) for r in attempts}) == 1


def test_a_failed_group_keeps_what_its_finished_members_wrote(slurm_study):
    """Run 1's shard group fails on the blocked layer; run 2 does not re-cache that shard, and
    retrains exactly the layers of that shard that had not finished it (whether layer 0 had
    depends on the order the group ran them in)."""
    assert "results/mini-neox/trained/cache/train/shard-0.zarr" in slurm_study["after_first"]
    finished = {
        path.split("/layers.")[1][0]
        for path in slurm_study["after_first"]
        if path.startswith("results/mini-neox/trained/layers.") and path.endswith("checkpoints/shard-0")
    }
    rerun = planned_jobs(slurm_study["logs"]["second"])
    shard_0 = [(rule, w) for rule, w in rerun if w.get("variant") == "trained" and w.get("shard") == "0"]
    assert {rule for rule, _ in shard_0} == {"train_layer_shard"}  # the shard itself was kept
    retrained = {w["layer"] for _, w in shard_0}
    assert "1" in retrained and retrained == {"0", "1"} - finished


def test_an_oom_kill_is_retried_with_more_memory_and_the_same_time(slurm_study):
    sweeps = [record for name, record in slurm_study["second"][1] if name == HUNG_RULE]
    assert len(sweeps) == 3 and {r["JobState"] for r in sweeps} <= {"FAILED", "OUT_OF_MEMORY"}
    assert [re.search(r"mem=(\d+)M", r["Tres"]).group(1) for r in sweeps] == ["100", "150", "225"]
    assert [r["TimeLimit"] for r in sweeps] == ["1", "1", "1"]
    # A failed job leaves no output that looks complete.
    assert slurm_study["failed_state"] == {"sweep_table": False, "partial_files": []}


def test_the_last_run_finishes_and_matches_a_local_run(slurm_study, mini_snapshot):
    third = slurm_study["third"][1]
    assert [(name, r["JobState"]) for name, r in third] == [(HUNG_RULE, "COMPLETED")]
    on_slurm = pd.read_csv(slurm_study["workdir"] / "results" / "metrics.csv")
    local = pd.read_csv(mini_snapshot / "results" / "metrics.csv")
    local = local[local["variant"].isin(VARIANTS)].reset_index(drop=True)[on_slurm.columns]
    pd.testing.assert_frame_equal(on_slurm, local, check_exact=False, rtol=1e-6)
    for figure in ("sae_metrics.png", "hyperparameter_sweep.png"):
        assert (slurm_study["workdir"] / "results" / "figures" / figure).stat().st_size > 10_000


def test_shards_on_node_local_disk_live_and_die_in_their_shard_groups_job(slurm_study):
    """Run 4 retrains the deleted SAE's layer: each shard group caches its shard in the node-local
    folder and trains on it in the same cluster job; the cluster empties that folder after each job,
    the submitting process never asks for the shard, nothing lands under results/, and the SAE is
    rebuilt as it was."""
    code, submitted = slurm_study["fourth"]
    assert code == 0, slurm_study["logs"]["fourth"][-3000:]
    groups = [(name.split("_")[0], record) for name, record in submitted]
    assert [name for name, _ in groups] == [f"shard-mini-neox-trained-{s}" for s in range(3)] + [
        "finish-mini-neox-trained"
    ]
    assert {record["JobState"] for _, record in groups} == {"COMPLETED"}
    node_local = slurm_study["node_local"]
    for name, record in groups[:3]:
        log = Path(record["LogPath"]).read_text()
        shard = name.rsplit("-", 1)[1]
        assert re.search(
            rf"output: {node_local['dir']}/saerand-\w+/mini-neox/trained/cache/train/shard-{shard}\.zarr", log
        )
    assert node_local["left"] == [] and node_local["shared_shards"] == []
    assert node_local["metrics_after"] == pytest.approx(node_local["metrics_before"], rel=1e-6)

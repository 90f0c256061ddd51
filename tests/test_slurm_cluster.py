"""The test Slurm cluster itself: test runs on one machine take turns, and a killed run's leftovers
do not stop the next one; a strict cluster refuses at submission what a production GPU cluster
refuses, and runs what it accepts."""

import fcntl
import subprocess
import time
from pathlib import Path

import pytest

from .slurm_cluster import DEFAULT_CONF, MACHINE_LOCK, MARKER, SlurmCluster

pytestmark = pytest.mark.skipif(
    DEFAULT_CONF.exists() and not DEFAULT_CONF.is_symlink(),
    reason=f"{DEFAULT_CONF} belongs to this machine's own Slurm",
)

ACCOUNT = "saerand-test"
# A capped GPU partition (a production cluster's 24 h, scaled down to 2 minutes) and an uncapped one.
CAPPED, UNCAPPED = "gpu-test", "cpu-test"


@pytest.mark.slow
def test_a_cluster_waits_for_another_runs_cluster_and_takes_over_a_killed_runs_link(tmp_path):
    with open(MACHINE_LOCK, "a") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match="another test run's Slurm cluster held"):
            with SlurmCluster(tmp_path / "waiting", turn_timeout=3):
                pass
    killed = tmp_path / "killed" / "slurm.conf"
    killed.parent.mkdir()
    killed.write_text(f"{MARKER}\nClusterName=testcluster\n")
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.unlink(missing_ok=True)
    DEFAULT_CONF.symlink_to(killed)
    with SlurmCluster(tmp_path / "next") as cluster:
        assert DEFAULT_CONF.resolve() == cluster.conf
        job = cluster.sbatch("--wrap", "true")
        assert cluster.wait_finished([job])[job]["JobState"] == "COMPLETED"
    assert not DEFAULT_CONF.is_symlink() and not DEFAULT_CONF.exists()


def _daemons_of(cluster: SlurmCluster) -> list[str]:
    """Command lines of the running processes started with this cluster's environment."""
    mark = f"SLURM_CONF={cluster.conf}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.slow
def test_a_strict_cluster_that_fails_to_start_leaves_no_daemon_running(tmp_path):
    cluster = SlurmCluster(tmp_path / "slurm", accounts=[""])  # sacctmgr refuses an account without a name
    with pytest.raises(RuntimeError, match="sacctmgr load"):
        with cluster:
            pass
    assert (cluster.logs / "slurmdbd.log").exists(), "the start failed before the accounting daemons ran"
    assert _daemons_of(cluster) == []


# Module scope: the refusals below share one cluster (about 5 s to start and stop). The tests above
# take MACHINE_LOCK while no such cluster holds it, so they come first in this file.
@pytest.fixture(scope="module")
def strict_cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("strict") / "slurm"
    with SlurmCluster(
        workdir, partitions={CAPPED: 2, UNCAPPED: None}, enforce_part_limits=True, accounts=[ACCOUNT]
    ) as cluster:
        yield cluster
    assert _daemons_of(cluster) == [], "stop() left daemons running"


def _refusal(cluster: SlurmCluster, name: str, *args: str) -> str:
    """sbatch's error for a job that must be refused at submission, once squeue shows no such job
    waiting or running (slurmctld may keep a record of it, FAILED)."""
    with pytest.raises(RuntimeError) as refused:
        cluster.sbatch("--job-name", name, *args, "--wrap", "true")
    states = [job["JobState"] for job in cluster.squeue() if job["JobName"] == name]
    assert not {"PENDING", "CONFIGURING", "RUNNING"} & set(states), f"{name} was queued: {states}"
    return str(refused.value)


@pytest.mark.slow
def test_a_job_without_an_account_is_refused(strict_cluster):
    # It would go to root's default account, which may run no jobs.
    assert "Job violates accounting/QOS policy" in _refusal(strict_cluster, "no-account")


@pytest.mark.slow
def test_a_job_with_an_unknown_account_is_refused(strict_cluster):
    refusal = _refusal(strict_cluster, "unknown-account", "-A", "no-such-account")
    assert "Invalid account or account/partition combination specified" in refusal


@pytest.mark.slow
def test_a_job_over_its_partitions_max_time_is_refused_not_left_pending(strict_cluster):
    refusal = _refusal(strict_cluster, "over-time", "-A", ACCOUNT, "-p", CAPPED, "-t", "3")
    assert "Requested time limit is invalid" in refusal
    # The same time where no cap applies: the refusal is the cap's.
    strict_cluster.sbatch("-A", ACCOUNT, "-p", UNCAPPED, "-t", "3", "--wrap", "true")


@pytest.mark.slow
def test_a_job_over_the_nodes_gpus_or_cpus_is_refused(strict_cluster):
    gpus = strict_cluster.gpus + 1
    over_gpus = _refusal(strict_cluster, "over-gpus", "-A", ACCOUNT, f"--gpus={gpus}")
    assert "Requested node configuration is not available" in over_gpus
    over_cpus = _refusal(strict_cluster, "over-cpus", "-A", ACCOUNT, "-c", str(strict_cluster.cpus + 1))
    assert "More processors requested than permitted" in over_cpus


def _sacct(cluster: SlurmCluster, job: str) -> dict[str, str]:
    """The job's record in the accounting database (empty until slurmctld has sent it there)."""
    fields = ("JobID", "Account", "Partition", "State")
    res = subprocess.run(
        ["sacct", "-j", job, "-X", "-n", "-P", "-o", ",".join(fields)],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("|") for line in res.stdout.splitlines()]
    return dict(zip(fields, rows[0])) if rows else {}


@pytest.mark.slow
def test_a_job_with_an_account_within_the_cap_completes_and_sacct_shows_it(strict_cluster):
    job = strict_cluster.sbatch("-A", ACCOUNT, "-p", CAPPED, "-t", "2", "--gpus=1", "--wrap", "true")
    assert strict_cluster.wait_finished([job])[job]["JobState"] == "COMPLETED"
    expected = {"JobID": job, "Account": ACCOUNT, "Partition": CAPPED, "State": "COMPLETED"}
    # slurmctld sends the record in parts (for a moment it is COMPLETED without its partition).
    deadline = time.monotonic() + 30
    while _sacct(strict_cluster, job) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _sacct(strict_cluster, job) == expected

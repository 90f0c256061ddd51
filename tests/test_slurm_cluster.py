"""The test Slurm cluster itself: test runs on one machine take turns, and a killed run's leftovers
do not stop the next one."""

import fcntl

import pytest

from .slurm_cluster import DEFAULT_CONF, MACHINE_LOCK, MARKER, SlurmCluster

pytestmark = pytest.mark.skipif(
    DEFAULT_CONF.exists() and not DEFAULT_CONF.is_symlink(),
    reason=f"{DEFAULT_CONF} belongs to this machine's own Slurm",
)


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

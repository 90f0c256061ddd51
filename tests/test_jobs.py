"""What every job does first: a second writer of the same log stops before touching it, the hub
token is gone, and a job that already timed out at its partition's limit stops at once."""

import fcntl
import os
import subprocess
import sys

START = "import sys{torch}; from saerand.jobs import start_job; start_job(sys.argv[1], 1, {{'time_exhausted': {exhausted}}}); {then}"


def _job(log, exhausted=0, then="print('job body ran')", env=None, torch=""):
    code = START.format(exhausted=exhausted, then=then, torch=torch)
    return subprocess.run(
        [sys.executable, "-c", code, str(log)], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_a_second_writer_of_a_live_jobs_log_stops_before_truncating_it(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("the orphan's progress\n")
    with open(log, "a") as orphan:
        fcntl.flock(orphan, fcntl.LOCK_EX)
        second = _job(log)
    assert second.returncode != 0 and "LogInUse" in second.stderr and "already running elsewhere" in second.stderr
    assert log.read_text() == "the orphan's progress\n"
    # Once the orphan is gone the log is the job's own, started afresh.
    assert _job(log).returncode == 0 and log.read_text() == "job body ran\n"


def test_a_job_runs_without_the_hub_token(tmp_path):
    log = tmp_path / "job.log"
    result = _job(log, then="import os; print(os.environ.get('HF_TOKEN'))", env={"HF_TOKEN": "hf_secret"})
    assert result.returncode == 0 and log.read_text() == "None\n"


def test_a_job_that_timed_out_at_the_cap_stops_at_once_saying_why(tmp_path):
    log = tmp_path / "job.log"
    result = _job(log, exhausted=1440)
    assert result.returncode != 0 and "job body ran" not in log.read_text()
    assert (
        "NoMoreTime" in log.read_text() + result.stderr and "timed out at 1440 min" in log.read_text() + result.stderr
    )


def test_a_job_runs_on_its_threads_whether_it_imported_torch_before_or_after(tmp_path):
    """start_job imports no torch itself (a job that needs none does not pay for it); torch gets the
    job's one thread either way (two cores here: torch's own default is two)."""
    report = "import torch; print(torch.get_num_threads(), 'torch' in sys.modules)"
    before = _job(tmp_path / "before.log", then=report.replace("import torch; ", ""), torch=", torch")
    after = _job(tmp_path / "after.log", then="print('torch' in sys.modules); " + report)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert (tmp_path / "before.log").read_text() == "1 True\n"
    assert (tmp_path / "after.log").read_text() == "False\n1 True\n"

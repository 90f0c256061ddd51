"""What a run on Slurm needs before it submits anything, and how a job knows where it runs.

Snakemake plans a study in its head process (on a login node, or in a long head job of its own on
a CPU partition) and runs each cluster job's jobs again in a Snakemake inside that job, started by
the Slurm executor's job step. The two are told apart by the job step executor, not by
SLURM_JOB_ID, which a head job inside Slurm has too.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JOB_STEP_EXECUTOR = "slurm-jobstep"
# All the CPUs the Snakemake inside a cluster job sees: its group's jobs then run one at a time.
ALL_CPUS = 2**20
ACCOUNT_VARIABLE = "SAERAND_SLURM_ACCOUNT"
NO_ACCOUNT = "none"


class ClusterSetupError(RuntimeError):
    """A run that cannot go to this cluster as it is set up: nothing was submitted."""


def in_job_step(argv: Sequence[str] = sys.argv) -> bool:
    """Whether this Snakemake runs a cluster job's jobs (the Slurm executor's job step)."""
    return any(arg == JOB_STEP_EXECUTOR or arg.endswith(f"={JOB_STEP_EXECUTOR}") for arg in argv)


def gpu_job_threads(argv: Sequence[str] = sys.argv, environ: Mapping[str, str] = os.environ) -> int:
    """Threads of a GPU-partition job (profiles/slurm `set-threads`): the CPUs it asks Slurm for
    (SAERAND_SLURM_CPUS_PER_GPU_JOB, default 2) where the study is planned, all the CPUs it sees
    inside its cluster job, so a group's jobs run one at a time on its one GPU."""
    return ALL_CPUS if in_job_step(argv) else int(environ.get("SAERAND_SLURM_CPUS_PER_GPU_JOB") or 2)


def slurm_account(environ: Mapping[str, str] = os.environ) -> str:
    """The account jobs are charged to (profiles/slurm `default-resources`); "" for "none"."""
    account = environ.get(ACCOUNT_VARIABLE, "").strip()
    return "" if account.lower() == NO_ACCOUNT else account


def _resource(job: Any, name: str) -> Any:
    """A job's resource as it will be submitted; "unknown" where it cannot be evaluated before the
    job's inputs exist (a resource function that reads them): such a job is not submitted now."""
    try:
        return job.resources.get(name)
    except Exception:  # Snakemake wraps an input function's error in its own types
        return "unknown"


def check_account(jobs: Sequence[Any], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse to submit cluster jobs without an account: many clusters reject every sbatch without
    one, and the Slurm executor's guess (from sacct) fails or picks a wrong one. A cluster without
    accounts is named explicitly (SAERAND_SLURM_ACCOUNT=none)."""
    if environ.get(ACCOUNT_VARIABLE, "").strip().lower() == NO_ACCOUNT:
        return
    missing = sorted({job.rule.name for job in jobs if not job.is_local and not _resource(job, "slurm_account")})
    if missing:
        raise ClusterSetupError(
            f"No Slurm account for {len(missing)} rule(s) to submit ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): set {ACCOUNT_VARIABLE} to the account to charge "
            f"(sacctmgr show associations user=$USER lists yours), or to {NO_ACCOUNT!r} on a cluster "
            "without accounts. Nothing was submitted."
        )


def uses_slurm(workflow: Any) -> bool:
    """Whether this Snakemake submits jobs to Slurm (the head process under profiles/slurm)."""
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name.rsplit("-", 1)[-1] == "slurm" and not workflow.remote_exec


SPACE_CHECK_VARIABLE = "SAERAND_SKIP_SPACE_CHECK"


def _bytes_under(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def check_free_space(
    high_water: Mapping[str, float], directory: str | Path = ".", environ: Mapping[str, str] = os.environ
) -> None:
    """Refuse to start a study whose disk high-water mark (saerand.planner: every stage at its
    largest, the temporary training activations included) does not fit in the free space of its
    working directory's filesystem, counting what its results already hold. A filesystem whose
    quota statvfs does not show can be let through with SAERAND_SKIP_SPACE_CHECK=1."""
    if environ.get(SPACE_CHECK_VARIABLE, "") not in ("", "0"):
        return
    directory = Path(directory)
    written = _bytes_under(directory / "results") if (directory / "results").is_dir() else 0
    needed = sum(high_water.values()) - written
    free = shutil.disk_usage(directory).free
    if needed > free:
        stages = ", ".join(f"{stage} {size / 1e9:,.0f} GB" for stage, size in high_water.items())
        raise ClusterSetupError(
            f"{directory.resolve()} has {free / 1e9:,.0f} GB free, and the study needs {needed / 1e9:,.0f} GB more "
            f"at its high-water mark ({stages}; {written / 1e9:,.0f} GB already written). Run it on a scratch "
            "filesystem (snakemake --directory /scratch/...), set scratch_budget in the config to train fewer "
            f"(model, variant) chains at once, or, where a quota is not what statvfs shows, set {SPACE_CHECK_VARIABLE}=1. "
            "Nothing was submitted."
        )

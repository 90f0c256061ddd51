"""Start and stop a real one-node Slurm cluster on localhost, for tests.

Everything (config, munge key and socket, state, spool, logs, pid files, fake GPU
devices) lives under one work directory; clients find the cluster through the
SLURM_CONF variable in ``SlurmCluster.env``. The daemons run as root as plain child
processes (no systemd) and are stopped by PID. Job records come from ``squeue`` while jobs are
known to slurmctld and from jobcomp/filetxt afterwards.

By default the cluster is permissive. Options make it strict, as production GPU clusters are:
``enforce_part_limits`` rejects at submission a job that asks for more than its partition allows
(time over MaxTime, more CPUs than the partition has) instead of leaving it pending forever;
``accounts`` runs accounting (a private MariaDB and slurmdbd, so ``sacct`` works) and rejects a
job without one of those accounts.

    with SlurmCluster(tmp_path / "slurm") as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env, check=True)
        ...
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch")
ACCOUNTING_PROGRAMS = ("mariadb-install-db", "mariadbd", "slurmdbd", "sacctmgr", "sacct")
# srun inside a job finds no SLURM_CONF (the Snakemake jobstep plugin drops SLURM_* variables), so
# the cluster's config is linked at the default location while it runs, when nothing is there.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
# Test clusters share DEFAULT_CONF, so one runs per machine at a time (two test runs side by side
# take turns); a config this module wrote starts with MARKER, so a killed run's link is recognised.
MACHINE_LOCK = Path(tempfile.gettempdir()) / "saerand-test-slurm-cluster.lock"
MARKER = "# saerand test cluster"
CLUSTER_NAME = "testcluster"
# Small InnoDB files and buffers: a test database holds a few hundred rows.
MARIADB_SIZES = ("--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M")
APT_PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")


def ensure_slurm_installed(accounting: bool = False) -> None:
    """Install munge and Slurm (with `accounting`, slurmdbd and MariaDB too) from apt when any
    program they provide is missing from PATH."""
    programs = DAEMONS + ACCOUNTING_PROGRAMS if accounting else DAEMONS
    packages = APT_PACKAGES + ACCOUNTING_PACKAGES if accounting else APT_PACKAGES
    missing = [d for d in programs if shutil.which(d) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"Slurm test cluster needs {', '.join(missing)} on PATH; installing them needs "
            f"root and apt-get (apt-get install {' '.join(packages)})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    res = subprocess.run(install, env=env, capture_output=True, text=True)
    if res.returncode != 0:  # stale or missing package lists: refresh once, retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        res = subprocess.run(install, env=env, capture_output=True, text=True)
    missing = [d for d in programs if shutil.which(d) is None]
    if res.returncode != 0 or missing:
        raise RuntimeError(
            f"could not install Slurm (still missing: {', '.join(missing)}):\n{(res.stdout + res.stderr)[-2000:]}"
        )


def _free_ports(n: int) -> list[int]:
    """n distinct currently-free TCP ports on 127.0.0.1 (all held open until chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<{e}>"


_JOBCOMP_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


class SlurmCluster:
    """One slurmctld + one slurmd (+ a private munged) serving partitions of one node on localhost.

    `partitions` maps each partition's name to its MaxTime in minutes (None: no limit); the first
    is the default one. With `enforce_part_limits`, sbatch fails for a job over its partition's
    limits. With `accounts`, a job must name one of them (``sbatch -A``); they are kept in
    `self.accounts`, and the cluster runs MariaDB and slurmdbd as well (``sacct`` answers). With
    `node_local_dir`, an Epilog empties that folder after every job, as a job's own tmpfs goes with
    it (Slurm's job_container/tmpfs): what a job left there no later job, nor the submitting
    process, ever sees (jobs that use it must then run one at a time).
    """

    def __init__(
        self,
        workdir: Path,
        cpus: int = 2,
        gpus: int = 2,
        real_memory_mb: int | None = None,
        partitions: dict[str, int | None] | None = None,
        start_timeout: float = 60.0,
        turn_timeout: float = 3600.0,
        enforce_part_limits: bool = False,
        accounts: Sequence[str] = (),
        node_local_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.partitions = partitions or {"gpu-test": None}
        self.cpus, self.gpus, self.partition = cpus, gpus, next(iter(self.partitions))
        mem_total = _mem_total_mb()
        # RealMemory above what slurmd measures drains the node ("Low RealMemory").
        self.real_memory_mb = real_memory_mb or min(8192, mem_total // 2)
        if self.real_memory_mb >= mem_total:
            raise ValueError(f"real_memory_mb={self.real_memory_mb} must be below MemTotal={mem_total} MB")
        self.start_timeout, self.turn_timeout = start_timeout, turn_timeout
        self.enforce_part_limits, self.accounts = enforce_part_limits, list(accounts)
        self.node_local_dir = None if node_local_dir is None else Path(node_local_dir).resolve()
        self._turn = None
        self.hostname = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
        self.conf = self.workdir / "slurm.conf"
        self.jobcomp = self.workdir / "jobcomp.txt"
        self.logs = self.workdir / "log"
        # Unix socket paths are limited to 108 bytes and slurmd puts step sockets into its
        # spool dir, so sockets go to a short /tmp dir when the workdir path is long.
        self._short_dir: Path | None = None
        self.run_dir = self.workdir / "run"
        # Without SLURM_* leftovers (e.g. when tests themselves run inside a Slurm job).
        self.env: dict[str, str] = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SALLOC_"))
        }
        self.env["SLURM_CONF"] = str(self.conf)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._linked_conf = False
        self._dbd_port = 0  # chosen when the config is written

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        ensure_slurm_installed(accounting=bool(self.accounts))
        self._take_turn()
        self._write_files()
        if DEFAULT_CONF.is_symlink() and (not DEFAULT_CONF.exists() or DEFAULT_CONF.read_text().startswith(MARKER)):
            DEFAULT_CONF.unlink()  # left by a killed test run: no other test cluster runs while we hold the turn
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise RuntimeError(
                f"{DEFAULT_CONF} exists: this machine has a Slurm of its own, and the test "
                "cluster needs that path for job steps; run the Slurm tests elsewhere"
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self.conf)
        self._linked_conf = True
        sock = self.run_dir / "munge.sock"
        # munged runs fine as root in the foreground with its own key/socket/pid/seed files.
        self._spawn(
            "munged",
            [
                "munged",
                "-F",
                "--force",
                f"--key-file={self.workdir / 'munge.key'}",
                f"--socket={sock}",
                f"--pid-file={self.run_dir / 'munged.pid'}",
                f"--seed-file={self.workdir / 'munged.seed'}",
                f"--log-file={self.logs / 'munged.log'}",
            ],
        )
        self._wait_for(sock.exists, "munged socket")
        if self.accounts:
            self._start_accounting()
        # -c: a reused workdir starts with no old jobs (ids restart at 1, see _write_files).
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._wait_for(lambda: self._cmd_ok(["scontrol", "ping"], "UP"), "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.hostname, "-f", str(self.conf)])
        self._wait_for(
            lambda: self._cmd_ok(["sinfo", "-h", "-N", "-o", "%T", "-n", self.hostname], "idle"), "node to become idle"
        )
        return self

    def _start_accounting(self) -> None:
        """A private MariaDB (a socket in run_dir, no TCP) and slurmdbd on it; then the cluster, the
        accounts and root as their user are added, so slurmctld finds them when it registers."""
        datadir = self.workdir / "mariadb"
        shutil.rmtree(datadir, ignore_errors=True)  # a reused workdir starts with no old job records
        install = ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={datadir}", "--skip-test-db"]
        res = subprocess.run([*install, *MARIADB_SIZES], env=self.env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{(res.stdout + res.stderr)[-2000:]}")
        sock = self.run_dir / "mariadb.sock"
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                f"--socket={sock}",
                "--skip-networking",
                f"--pid-file={self.run_dir / 'mariadbd.pid'}",
                f"--log-error={self.logs / 'mariadbd.log'}",
                *MARIADB_SIZES,
            ],
        )
        self._wait_for(sock.exists, "MariaDB socket")
        # slurmdbd.conf has no socket setting; the MariaDB client library reads this variable.
        self._spawn("slurmdbd", ["slurmdbd", "-D"], MYSQL_UNIX_PORT=str(sock))
        self._wait_for(lambda: _accepts(self._dbd_port), "slurmdbd to listen")
        # One `sacctmgr load` (each request to slurmdbd costs about 0.1 s) adds the cluster, and the
        # accounts with root as their user. A job without -A goes to root's default account, Slurm's
        # own "root" account, which may run no jobs (as an account without an allocation): refused.
        lines = [f"Cluster - '{CLUSTER_NAME}'", "Parent - 'root'", "User - 'root':MaxSubmitJobs=0"]
        lines += [f"Account - '{account}'" for account in self.accounts]
        for account in self.accounts:
            lines += [f"Parent - '{account}'", "User - 'root'"]
        accounts_file = self.workdir / "accounts.cfg"
        accounts_file.write_text("\n".join(lines) + "\n")
        res = subprocess.run(
            ["sacctmgr", "-i", "load", f"file={accounts_file}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise RuntimeError(f"sacctmgr load {accounts_file} failed:\n{res.stdout}{res.stderr}")

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel leftover jobs, then SIGTERM (later SIGKILL) the daemons this object started."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            ids = self._live_job_ids()
            if ids:
                subprocess.run(["scancel", *ids], env=self.env, capture_output=True, timeout=30)
                deadline = time.monotonic() + timeout
                while self._live_job_ids() and time.monotonic() < deadline:
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):  # reverse start order
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self._linked_conf and DEFAULT_CONF.is_symlink() and DEFAULT_CONF.resolve() == self.conf:
            DEFAULT_CONF.unlink()
        self._linked_conf = False
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None
        if self._turn is not None:
            self._turn.close()  # releases the lock
            self._turn = None

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the daemons started (and not yet stopped) by this object."""
        return {name: p.pid for name, p in self._procs.items()}

    # ------------------------------------------------------------------ jobs
    def sbatch(self, *args: str) -> str:
        """Submit with ``sbatch --parsable ARGS`` and return the job id; the job's output goes to the
        work directory (not the caller's current one) unless ARGS say where."""
        output = f"--output={self.workdir / 'slurm-%j.out'}"
        res = subprocess.run(
            ["sbatch", "--parsable", output, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if res.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def squeue(self) -> list[dict[str, str]]:
        """Jobs slurmctld still knows (pending, running and, for MinJobAge s, finished)."""
        res = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%r"], env=self.env, capture_output=True, text=True, timeout=30
        )
        rows = [line.split("|", 3) for line in res.stdout.splitlines() if line.strip()]
        return [dict(zip(("JobId", "JobName", "JobState", "Reason"), r)) for r in rows]

    def finished_jobs(self) -> list[dict[str, str]]:
        """Every finished job from jobcomp/filetxt (one ``Key=Value ...`` line each).

        Keys include JobId, Name (also given as JobName), JobState, Partition, TimeLimit,
        SubmitTime, StartTime, EndTime, NodeList, ExitCode, WorkDir.
        """
        if not self.jobcomp.exists():
            return []
        jobs = []
        for line in self.jobcomp.read_text(errors="replace").splitlines():
            rec = dict(_JOBCOMP_FIELD.findall(line.strip()))
            if "JobId" in rec:
                rec.setdefault("JobName", rec.get("Name", ""))
                jobs.append(rec)
        return jobs

    def jobs_submitted(self) -> list[dict[str, str]]:
        """Finished jobs plus those still queued/running, one dict per job id."""
        jobs = {j["JobId"]: j for j in self.squeue()}
        jobs.update({j["JobId"]: j for j in self.finished_jobs()})
        return list(jobs.values())

    def wait_finished(self, job_ids: list[str], timeout: float = 120.0) -> dict[str, dict[str, str]]:
        """Wait until all job_ids are in the jobcomp record; return their records by id."""
        deadline = time.monotonic() + timeout
        while True:
            done = {j["JobId"]: j for j in self.finished_jobs() if j["JobId"] in job_ids}
            if len(done) == len(set(job_ids)):
                return done
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jobs {sorted(set(job_ids) - set(done))} not finished after {timeout} s; squeue: {self.squeue()}"
                )
            time.sleep(0.5)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} ---\n{_tail(p, lines)}" for p in sorted(self.logs.glob("*")))

    # ------------------------------------------------------------------ internals
    def _live_job_ids(self) -> list[str]:
        res = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True, timeout=30)
        return res.stdout.split() if res.returncode == 0 else []

    def _cmd_ok(self, cmd: list[str], expect: str) -> bool:
        try:
            res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and expect in res.stdout

    def _wait_for(self, ok: object, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ok():  # type: ignore[operator]
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"timed out after {self.start_timeout} s"
                raise RuntimeError(f"Slurm test cluster: waiting for {what}: {why}\n{self.log_tails()}")
            time.sleep(0.2)

    def _spawn(self, name: str, cmd: list[str], **env: str) -> None:
        out = open(self.logs / f"{name}.stdout", "ab")
        # Own session so a Ctrl-C in the test runner does not hit the daemons out of order.
        self._procs[name] = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.env, **env},
            start_new_session=True,
        )
        out.close()

    def _take_turn(self) -> None:
        """Wait until no other test cluster runs on this machine, then hold MACHINE_LOCK until stop()."""
        self._turn = open(MACHINE_LOCK, "a")
        deadline = time.monotonic() + self.turn_timeout
        while True:
            try:
                fcntl.flock(self._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another test run's Slurm cluster held {MACHINE_LOCK} for {self.turn_timeout:.0f} s"
                    ) from None
                time.sleep(2)

    def _write_files(self) -> None:
        w = self.workdir
        for d in (w, self.logs, w / "state", w / "dev"):
            d.mkdir(parents=True, exist_ok=True)
        if len(str(w)) > 60:
            self._short_dir = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
            self.run_dir = self._short_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        spool = self.run_dir / "spool"
        spool.mkdir(exist_ok=True)
        self.jobcomp.unlink(missing_ok=True)
        key = w / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        # gres/gpu rejects plain files; /dev/null-like char devices are accepted as GPUs.
        devs = []
        for i in range(self.gpus):
            dev = w / "dev" / f"nvidia{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
            devs.append(dev)
        (w / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"NodeName={self.hostname} Name=gpu File={d}\n" for d in devs)
        )
        ctld_port, slurmd_port, self._dbd_port = _free_ports(3)
        host = self.hostname
        conf = {
            "ClusterName": CLUSTER_NAME,
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.run_dir / 'munge.sock'}",
            "StateSaveLocation": w / "state",
            "SlurmdSpoolDir": spool,
            "SlurmctldPidFile": self.run_dir / "slurmctld.pid",
            "SlurmdPidFile": self.run_dir / "slurmd.pid",
            "SlurmctldLogFile": self.logs / "slurmctld.log",
            "SlurmdLogFile": self.logs / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "PlugStackConfig": w / "plugstack.conf",  # keep /etc/slurm/plugstack.conf out
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            # Without a default every job would claim all node memory and run alone.
            "DefMemPerCPU": max(1, self.real_memory_mb // self.cpus),
            # Trust the configured CPUs/memory instead of draining on what slurmd detects.
            "SlurmdParameters": "config_overrides",
            "GresTypes": "gpu",
            **(self._accounting_conf() if self.accounts else {"AccountingStorageType": "accounting_storage/none"}),
            # Strict: a request past a partition's limits is refused at submission, and a job is not
            # requeued (after preemption or a node failure) unless it asked to be (sbatch --requeue).
            **({"EnforcePartLimits": "ALL", "JobRequeue": 0} if self.enforce_part_limits else {}),
            **({"Epilog": self._node_local_epilog(w)} if self.node_local_dir else {}),
            # Polls /proc every second and kills a job over its --mem (OUT_OF_MEMORY), as cgroups
            # would on a production cluster: memory-limit retries can then be tested.
            "JobAcctGatherType": "jobacct_gather/linux",
            "JobAcctGatherFrequency": "task=1",
            "JobAcctGatherParams": "OverMemoryKill",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self.jobcomp,
            "MpiDefault": "none",
            "MailProg": "/bin/true",  # default /usr/bin/mail is absent: error in log
            "ReturnToService": 2,
            "MinJobAge": 600,  # finished jobs stay visible to squeue -t all for 10 min
            "InactiveLimit": 0,
            "KillWait": 5,
            "OverTimeLimit": 0,
            "WaitTime": 0,
            "MessageTimeout": 10,
            "SlurmdTimeout": 300,
            "SchedulerType": "sched/backfill",
            "SchedulerParameters": "bf_interval=5,sched_min_interval=0",
        }
        lines = [f"{k}={v}" for k, v in conf.items()]
        lines.append(
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.real_memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN"
        )
        for name, max_minutes in self.partitions.items():
            lines.append(
                f"PartitionName={name} Nodes={host} Default={'YES' if name == self.partition else 'NO'} "
                f"MaxTime={max_minutes or 'INFINITE'} State=UP"
            )
        (w / "plugstack.conf").write_text("")
        self.conf.write_text("\n".join([MARKER, *lines]) + "\n")

    def _node_local_epilog(self, w: Path) -> Path:
        """The Epilog (slurmd runs it as root when a job ends) that empties `node_local_dir`."""
        self.node_local_dir.mkdir(parents=True, exist_ok=True)
        epilog = w / "epilog.sh"
        epilog.write_text(
            f"#!/bin/sh\nfind '{self.node_local_dir}' -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +\nexit 0\n"
        )
        epilog.chmod(0o755)
        return epilog

    def _accounting_conf(self) -> dict[str, object]:
        """slurm.conf's accounting settings; writes slurmdbd.conf, which slurmdbd reads from
        SLURM_CONF's folder."""
        dbd_conf = {
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.run_dir / 'munge.sock'}",
            "DbdHost": "localhost",
            "DbdAddr": "127.0.0.1",
            "DbdPort": self._dbd_port,
            "SlurmUser": "root",
            "PidFile": self.run_dir / "slurmdbd.pid",
            "LogFile": self.logs / "slurmdbd.log",
            "DebugLevel": "info",
            "StorageType": "accounting_storage/mysql",
            "StorageHost": "localhost",
            "StorageUser": "root",
            "StorageLoc": "slurm_acct_db",
        }
        path = self.workdir / "slurmdbd.conf"
        path.write_text("".join(f"{k}={v}\n" for k, v in dbd_conf.items()))
        path.chmod(0o600)  # slurmdbd refuses a config others can read (it may hold a password)
        return {
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "127.0.0.1",
            "AccountingStoragePort": self._dbd_port,
            "AccountingStoragePass": self.run_dir / "munge.sock",  # connections to slurmdbd ignore AuthInfo
            # A job's account must exist and be the user's; limits and QOS are checked at submission.
            "AccountingStorageEnforce": "associations,limits,qos",
        }

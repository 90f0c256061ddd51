"""Start vLLM's OpenAI-compatible server as a Snakemake service job.

Runs in vLLM's own environment (envs/vllm.yaml, or the second venv of scripts/setup.sh), so it
imports nothing but the standard library. It makes a directory only this user can enter on the
node's local disk, starts the server in it (its Unix socket there: no port to collide with other
jobs on the node, no other user can connect; vLLM's own IPC sockets and temporary files there too,
through VLLM_RPC_BASE_PATH and TMPDIR), and writes how to reach it atomically to the service file
*before* the model loads. The server runs as a child in its own process group: Snakemake's SIGTERM
at the end of the group (or a SIGINT) is passed on to that group, vLLM's engine processes included;
when the server has exited the directory is removed and the launcher exits with the server's
status. Readiness, death and a stuck server are the consumers' to detect
(`saerand.autointerp.llm.wait_until_ready`).

    python -m saerand.autointerp.serve SERVICE_FILE SETTINGS_JSON [LOG] [FETCH_RECORD]

With FETCH_RECORD (a hub model fetched by saerand.fetch) vLLM loads the recorded commit's copy in
the download cache (HF_HUB_CACHE): the server never reaches for the network.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SERVED_MODEL = "explainer"  # the name consumers ask for, whatever weights are served


def server_command(settings: dict[str, Any], socket_path: str, weights: str | None = None) -> list[str]:
    """The vLLM server's command line for the validated `autointerp.llm` settings (this
    interpreter's vLLM), serving `weights` (a local copy) where given. (Plain dicts: this runs in
    vLLM's environment, without saerand.settings' dependencies.)"""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        weights or settings["model"],
        "--served-model-name",
        SERVED_MODEL,
        "--uds",
        socket_path,
        "--tensor-parallel-size",
        str(settings["gpus"]),
        "--max-model-len",
        str(settings["max_model_len"]),
        "--gpu-memory-utilization",
        str(settings["gpu_memory_utilization"]),
        "--dtype",
        settings["dtype"],
        "--seed",
        str(settings["seed"]),
        # Explicit, whatever vLLM's default: the planner's LLM time assumes it (saerand.costs).
        "--enable-prefix-caching" if settings["prefix_caching"] else "--no-enable-prefix-caching",
    ]
    if settings["revision"] and not weights:
        command += ["--revision", settings["revision"]]
    return command + [str(arg) for arg in settings["server_args"]]


def fetched_weights(record: str | Path) -> str:
    """The directory of a fetched model's recorded commit in the hub cache (its documented layout)."""
    fetched = json.loads(Path(record).read_text())
    repository = f"models--{fetched['repo_id'].replace('/', '--')}"
    return str(Path(os.environ["HF_HUB_CACHE"]) / repository / "snapshots" / fetched["commit"])


def write_service_file(path: str | Path, address: dict[str, Any]) -> None:
    """Write the address atomically: a consumer never reads half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(address, indent=1))
    os.replace(staging, path)


def server_environment(settings: dict[str, Any], private: str) -> dict[str, str]:
    """This job's environment, the configured variables, and vLLM's IPC sockets and temporary
    files in the private directory (they would otherwise go to /tmp, where others can reach them).
    No hub token: the server loads fetched weights offline (saerand.jobs.HUB_TOKENS; this module
    imports only the standard library)."""
    return {
        **{key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")},
        **{key: str(value) for key, value in settings["environment"].items()},
        "VLLM_RPC_BASE_PATH": private,
        "TMPDIR": private,
    }


def run_server(command: list[str], environment: dict[str, str]) -> subprocess.Popen:
    """Start the server in its own process group and pass SIGTERM and SIGINT on to that group (also
    one that arrives while it starts); the caller waits for it."""
    pending: list[int] = []
    server: subprocess.Popen | None = None

    def forward(signum: int, frame) -> None:
        if server is None:
            pending.append(signum)
        else:
            signal_group(server, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    server = subprocess.Popen(command, env=environment, process_group=0)
    for signum in pending:
        signal_group(server, signum)
    return server


def signal_group(server: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(server.pid, signum)
    except ProcessLookupError:
        pass  # the group has exited already


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + the signal that ended it."""
    return returncode if returncode >= 0 else 128 - returncode


def main(service_file: str, settings_json: str, log: str = "", record: str = "") -> None:
    settings = json.loads(settings_json)
    # mkdtemp makes the directory with mode 0700; the node-local TMPDIR keeps the path short
    # (a Unix socket path has at most 107 bytes).
    private = tempfile.mkdtemp(prefix="saerand-llm-")
    try:
        socket_path = os.path.join(private, "vllm.sock")
        command = server_command(settings, socket_path, fetched_weights(record) if record else None)
        # This launcher's pid: it runs exactly as long as the server, which consumers watch through it.
        write_service_file(
            service_file,
            {
                "socket": socket_path,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "model": SERVED_MODEL,
                "log": log,
            },
        )
        returncode = run_server(command, server_environment(settings, private)).wait()
    finally:
        shutil.rmtree(private, ignore_errors=True)
    sys.exit(exit_status(returncode))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Start vLLM's OpenAI-compatible server as a Snakemake service job.

Runs in vLLM's own environment (envs/vllm.yaml, or the second venv of scripts/setup.sh), so it
imports nothing but the standard library. It makes a directory only this user can enter on the
node's local disk, writes how to reach the server (a Unix socket in that directory: no port to
collide with other jobs on the node, no other user can connect) atomically to the service file
*before* the model loads, then replaces itself with the server (`exec`): Snakemake's SIGTERM at the
end of the group reaches vLLM itself, which stops its engine and workers. Readiness, death and a
stuck server are the consumers' to detect (`saerand.autointerp.llm.wait_until_ready`).

    python -m saerand.autointerp.serve SERVICE_FILE SETTINGS_JSON [LOG] [FETCH_RECORD]

With FETCH_RECORD (a hub model fetched by saerand.fetch) vLLM loads the recorded commit's copy in
the download cache (HF_HUB_CACHE): the server never reaches for the network.
"""

from __future__ import annotations

import json
import os
import socket
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


def main(service_file: str, settings_json: str, log: str = "", record: str = "") -> None:
    settings = json.loads(settings_json)
    # mkdtemp makes the directory with mode 0700; the node-local TMPDIR keeps the path short
    # (a Unix socket path has at most 107 bytes).
    private = tempfile.mkdtemp(prefix="saerand-llm-")
    socket_path = os.path.join(private, "vllm.sock")
    command = server_command(settings, socket_path, fetched_weights(record) if record else None)
    write_service_file(
        service_file,
        {"socket": socket_path, "host": socket.gethostname(), "pid": os.getpid(), "model": SERVED_MODEL, "log": log},
    )
    os.environ.update({key: str(value) for key, value in settings["environment"].items()})
    sys.stdout.flush()
    os.execvp(command[0], command)  # same pid: the address file names the server's own process


if __name__ == "__main__":
    main(*sys.argv[1:])

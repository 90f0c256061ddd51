"""The LLM server's launcher (saerand.autointerp.serve) with a test double in place of vLLM
(tests/vllm_double): the server's private folder, signals passed on, the folder removed when the
server exits, and the server's exit status passed on. The real server: tests/test_autointerp_llm.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saerand.autointerp.serve import server_command
from saerand.config import validate_section
from tests.conftest import REPO

VLLM_DOUBLE = Path(__file__).parent / "vllm_double"


def launch(tmp_path: Path, status: int, exit_at_once: bool = False) -> subprocess.Popen:
    """The launcher as the service rule runs it, with a node-local TMPDIR of its own."""
    settings = validate_section("autointerp", {"llm": {"model": "owner/llm", "environment": {"VLLM_SETTING": 1}}})
    (tmp_path / "node").mkdir()
    environment = {
        **os.environ,
        "PYTHONPATH": f"{VLLM_DOUBLE}{os.pathsep}{REPO / 'src'}",
        "TMPDIR": str(tmp_path / "node"),
        "VLLM_DOUBLE_RECORD": str(tmp_path / "double.json"),
        "VLLM_DOUBLE_STATUS": str(status),
        **({"VLLM_DOUBLE_EXIT_AT_ONCE": "1"} if exit_at_once else {}),
    }
    command = [
        sys.executable,
        "-m",
        "saerand.autointerp.serve",
        str(tmp_path / "server.json"),
        json.dumps(settings["llm"]),
    ]
    return subprocess.Popen(command, env=environment)


def double_record(tmp_path: Path, launcher: subprocess.Popen) -> dict:
    record = tmp_path / "double.json"
    for _ in range(300):
        if record.exists():
            return json.loads(record.read_text())
        assert launcher.poll() is None, f"the launcher exited with {launcher.returncode}"
        time.sleep(0.1)
    raise TimeoutError("the server double never started")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda signum: signum.name)
def test_the_server_runs_in_its_private_folder_which_goes_when_it_is_stopped(tmp_path, signum):
    launcher = launch(tmp_path, status=3)
    server = double_record(tmp_path, launcher)
    address = json.loads((tmp_path / "server.json").read_text())
    private = Path(address["socket"]).parent
    assert server["environment"]["VLLM_RPC_BASE_PATH"] == server["environment"]["TMPDIR"] == str(private)
    assert private.parent == tmp_path / "node" and private.stat().st_mode & 0o077 == 0
    assert server["environment"]["VLLM_SETTING"] == "1" and address["socket"] in server["argv"]
    # The launcher is what consumers watch; the server has a process group of its own.
    assert address["pid"] == launcher.pid and server["group"] == server["pid"] != os.getpgid(launcher.pid)
    launcher.send_signal(signum)
    assert launcher.wait(timeout=30) == 3
    assert not private.exists() and not any((tmp_path / "node").iterdir())


def test_a_server_that_exits_by_itself_passes_its_status_on_and_leaves_no_folder(tmp_path):
    launcher = launch(tmp_path, status=7, exit_at_once=True)
    assert launcher.wait(timeout=30) == 7
    assert double_record(tmp_path, launcher)["environment"]["VLLM_RPC_BASE_PATH"]
    assert not any((tmp_path / "node").iterdir())


@pytest.mark.parametrize(
    "prefix_caching, flag", [(True, "--enable-prefix-caching"), (False, "--no-enable-prefix-caching")]
)
def test_the_prefix_cache_is_set_explicitly_on_the_servers_command_line(prefix_caching, flag):
    settings = validate_section("autointerp", {"llm": {"model": "owner/llm", "prefix_caching": prefix_caching}})
    command = server_command(settings["llm"], "/node/llm.sock")
    assert flag in command and sum(arg.endswith("prefix-caching") for arg in command) == 1

"""The LLM explainer/scorer path against a real vLLM server (a tiny random Llama on this CPU,
tests/llm_double.py) and, for a server that hangs, a stand-in HTTP server on a Unix socket."""

import dataclasses
import http.server
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saerand.autointerp import run
from saerand.autointerp.llm import Server, ServerUnavailable, answer_formats, token_logprobs
from saerand.autointerp.scoring import LatentLog
from saerand.fetch.artefacts import HubArtefact
from saerand.fetch.download import fetch_hub
from saerand.fetch.offline import job_environment, record_path
from saerand.settings import AutointerpSettings, LlmSettings, from_config, section_settings
from tests.conftest import RANDOM_LATENT, REPO, TOKEN_LATENT
from tests.hub_double import HubDouble
from tests.llm_double import VLLM_PYTHON, llm_settings
from tests.test_autointerp_scoring import SETTINGS


def start_server(service_file, settings, log, record="", env=None):
    """As the service rule does: the launcher in vLLM's venv, which execs the server."""
    with open(log, "w") as handle:
        return subprocess.Popen(
            [
                str(VLLM_PYTHON),
                "-m",
                "saerand.autointerp.serve",
                str(service_file),
                json.dumps(settings),
                str(log),
                str(record),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO / "src")},
        )


@pytest.fixture(scope="module")
def served_llm(tmp_path_factory, tiny_llama):
    """The double published on a hub (tests/hub_double.py), fetched as the prefetch rule does, then
    served with the hub gone: the server reads the recorded commit's copy, offline."""
    assert VLLM_PYTHON.exists(), f"{VLLM_PYTHON} is missing: run scripts/setup.sh --vllm"
    directory = tmp_path_factory.mktemp("server")
    with HubDouble(directory / "hub") as hub:
        hub.add_repo("model", "owner/tiny-llama", "main", tiny_llama)
        artefact = HubArtefact("owner/tiny-llama", "main")
        fetch_hub(artefact, directory / "hf", endpoint=hub.url)
    settings = llm_settings("owner/tiny-llama")
    process = start_server(
        directory / "server.json",
        settings,
        directory / "server.log",
        record_path(directory / "hf", artefact.name),
        job_environment(directory / "hf"),
    )
    for _ in range(100):  # the launcher writes the service file before the model loads
        if (directory / "server.json").exists():
            break
        time.sleep(0.1)
    yield directory / "server.json", settings, process
    process.send_signal(signal.SIGTERM)  # what Snakemake does when the group's consumers are done
    process.wait(timeout=60)
    # vLLM's own IPC sockets were in the private folder, which goes with the server.
    assert not Path(json.loads((directory / "server.json").read_text())["socket"]).parent.exists()


def _llm(**keys) -> LlmSettings:
    return section_settings(AutointerpSettings, "autointerp", llm=keys).llm


def _settings(llm):
    typed = from_config(LlmSettings, llm, "autointerp.llm")
    return dataclasses.replace(SETTINGS, highlight_threshold=0.3, show_activations=True, llm=typed)


def test_a_served_llm_explains_and_scores_every_latent_with_probabilities(served_llm, raw_dir, model_dir, tmp_path):
    service_file, llm, process = served_llm
    address = json.loads(service_file.read_text())
    private = os.path.dirname(address["socket"])
    assert address["pid"] == process.pid and os.stat(private).st_mode & 0o077 == 0
    output = tmp_path / "llm"
    summary = run.score_sae(
        raw_dir, "layers.0", model_dir, _settings(llm), output, explainer="llm", server_file=service_file
    )
    assert summary["scored"] == 2 and summary["failed"] == 0
    assert len(os.listdir(private)) > 1, os.listdir(private)  # vLLM's own IPC sockets beside its API socket
    # Structured outputs force delphi's formats: every answer parses, every sample has P(1).
    assert summary["fuzz_unparsed"] == summary["detection_unparsed"] == summary["explanations_unparsed"] == 0
    entries = {e["latent"]: e for e in map(json.loads, (output / "latents.jsonl").read_text().splitlines())}
    assert set(entries) == {TOKEN_LATENT, RANDOM_LATENT}
    assert all(e["explanation_parsed"] and e["explanation"] for e in entries.values())
    samples = pd.read_csv(output / "samples.csv")
    per_latent = SETTINGS.test_examples + SETTINGS.non_activating
    assert (samples.groupby(["latent", "scorer"]).size() == per_latent).all()
    assert samples["probability"].between(0, 1).all() and samples["probability"].nunique() > 2
    assert all(0 <= e["fuzz_auroc"] <= 1 for e in entries.values())


def test_answers_that_do_not_parse_are_counted_not_fatal(served_llm, raw_dir, model_dir, tmp_path):
    service_file, llm, _ = served_llm
    # Unconstrained, a random tiny model answers noise.
    summary = run.score_sae(
        raw_dir,
        "layers.0",
        model_dir,
        _settings({**llm, "structured_outputs": False}),
        tmp_path / "llm",
        explainer="llm",
        server_file=service_file,
    )
    per_latent = SETTINGS.test_examples + SETTINGS.non_activating
    assert summary["scored"] == 2 and summary["explanations_unparsed"] == 2
    assert summary["fuzz_unparsed"] == summary["detection_unparsed"] == 2 * per_latent
    assert np.isnan(summary["fuzz_auroc"])


def test_a_server_that_exits_before_it_is_ready_is_reported(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    server = Server(
        socket=str(tmp_path / "none.sock"), host=os.uname().nodename, pid=gone.pid, model="x", log="server.log"
    )
    with pytest.raises(ServerUnavailable, match=rf"pid {gone.pid} .*server.log.*exited before it was ready"):
        server.wait_until_ready(timeout=30, poll=0.05)


class _Hanging(http.server.BaseHTTPRequestHandler):
    """Healthy, but never answers a completion in time: a stuck engine."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        time.sleep(3)

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"


def test_a_stuck_server_stops_the_job_and_keeps_its_progress(raw_dir, model_dir, tmp_path):
    socket_path = str(tmp_path / "stuck.sock")
    server = socketserver.ThreadingUnixStreamServer(socket_path, _Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service_file = tmp_path / "server.json"
    service_file.write_text(
        json.dumps({"socket": socket_path, "host": os.uname().nodename, "pid": os.getpid(), "model": "explainer"})
    )
    llm = llm_settings("unused", request_timeout=0.5, stuck_after=2, concurrency=1)
    output = tmp_path / "llm"
    with pytest.raises(ServerUnavailable, match="is stuck: 2 requests in a row got no answer"):
        run.score_sae(raw_dir, "layers.0", model_dir, _settings(llm), output, explainer="llm", server_file=service_file)
    server.shutdown()
    # Nothing published, and no latent counts as done: a rerun scores them all.
    assert not output.exists()
    log = LatentLog(tmp_path / ".llm.progress" / "latents.jsonl")
    assert log.done == {} and all("no answer" in line for line in log.path.read_text().splitlines())


def test_a_service_file_from_another_node_is_named_stale_at_once(tmp_path):
    server = Server(socket=str(tmp_path / "none.sock"), host="elsewhere", pid=1, model="x")
    with pytest.raises(ServerUnavailable, match="on node elsewhere, not on .*left by an earlier run"):
        server.wait_until_ready(timeout=30, poll=0.05)


def test_answer_formats_are_delphis_and_only_with_structured_outputs():
    explain, score = answer_formats(_llm(structured_outputs=True, examples_per_prompt=5))
    assert re.fullmatch(score["regex"], "[1,0,0,1,1]") and not re.fullmatch(score["regex"], "[1,0,0,1]")
    assert re.fullmatch(explain["regex"], "[EXPLANATION]: the token er")
    assert answer_formats(_llm(structured_outputs=False, examples_per_prompt=5)) == ({}, {})


def test_openai_logprobs_are_read_as_delphi_parses_them():
    content = [
        {
            "token": "1",
            "logprob": -0.1,
            "top_logprobs": [{"token": "1", "logprob": -0.1}, {"token": "0", "logprob": -2.4}],
        }
    ]
    (entry,) = token_logprobs({"content": content})
    assert entry.token == "1" and [t.logprob for t in entry.top_logprobs] == [-0.1, -2.4]
    assert token_logprobs(None) is None

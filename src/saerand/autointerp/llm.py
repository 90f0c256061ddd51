"""Explaining and scoring latents with an LLM served by vLLM (Section 3.3: the paper's explainer).

The server is a Snakemake service job (`saerand.autointerp.serve`); its service file says where its
Unix socket is. The consumers here wait for it to be ready, talk to it through a delphi `Client`
that returns the token logprobs delphi's scorers need for AUROC (delphi's own OpenRouter client
returns none), and tell a bad latent (an answer that does not parse, a prompt the server refuses)
from a server that is gone or stuck: the first is recorded and the job goes on, the second stops
the job with an error that says which, its finished latents kept for the rerun.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from ..settings import AutointerpSettings, LlmSettings
from .delphi_compat import import_delphi
from .scoring import SCORERS, LatentLog, latent_entry, score_latents, scorer_options

import_delphi()
from delphi.clients.client import Client, Response  # noqa: E402
from delphi.explainers import DefaultExplainer  # noqa: E402

UNPARSED_EXPLANATION = "Explanation could not be parsed."  # what delphi's explainer returns then


class ServerUnavailable(RuntimeError):
    """The LLM server is dead, never became ready, or answers nothing: no latent can be scored."""


class NoAnswer(RuntimeError):
    """A latent some of whose requests got no answer: failed now, scored again on a rerun."""

    retry = True  # saerand.autointerp.scoring.score_latents


@dataclass(frozen=True)
class Server:
    """Where a running server listens, as its service file says."""

    socket: str
    host: str
    pid: int  # its launcher's, which runs as long as the server does
    model: str
    log: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Server:
        return cls(**json.loads(Path(path).read_text()))

    def describe(self) -> str:
        return f"the LLM server (pid {self.pid} on {self.host}, log {self.log or 'not given'})"

    def alive(self) -> bool:
        """Whether its process runs (a service runs on its consumers' node)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def healthy(self, timeout: float = 5.0) -> bool:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), timeout=timeout) as http:
                return http.get("http://llm/health").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_until_ready(self, timeout: float, poll: float = 2.0) -> float:
        """Block until /health answers 200; returns the seconds waited. A server that exits or is
        not ready within `timeout` seconds raises ServerUnavailable."""
        if self.host != socket.gethostname():
            # A service job runs on its consumers' node: this file is stale (its run was killed).
            raise ServerUnavailable(
                f"{self.describe()} is on node {self.host}, not on {socket.gethostname()}: "
                "its service file was left by an earlier run; remove it and rerun"
            )
        start = time.monotonic()
        while not self.healthy():
            if not self.alive():
                raise ServerUnavailable(f"{self.describe()} exited before it was ready")
            if time.monotonic() - start > timeout:
                raise ServerUnavailable(
                    f"{self.describe()} was not ready after {timeout:.0f} s (config key autointerp.llm.start_timeout)"
                )
            time.sleep(poll)
        return time.monotonic() - start


class ServerWatch:
    """Counts requests in a row that got no answer; decides when the server is gone or stuck."""

    def __init__(self, server: Server, stuck_after: int):
        self.server, self.stuck_after = server, stuck_after
        self.in_a_row = 0
        self.error: ServerUnavailable | None = None

    def answered(self) -> None:
        self.in_a_row = 0

    def unanswered(self, error: Exception) -> None:
        self.in_a_row += 1
        if not self.server.alive():
            self.error = ServerUnavailable(f"{self.server.describe()} exited: {type(error).__name__}: {error}")
        elif self.in_a_row >= self.stuck_after:
            self.error = ServerUnavailable(
                f"{self.server.describe()} is stuck: {self.in_a_row} requests in a row got no answer "
                f"(last: {type(error).__name__}: {error}; config keys autointerp.llm.request_timeout, stuck_after)"
            )

    def raise_if_unavailable(self) -> None:
        if self.error is not None:
            raise self.error


class VllmClient(Client):
    """delphi's Client for one latent: chat completions with logprobs from vLLM's OpenAI server.
    `unanswered` lists requests that got no answer, so the latent can be told apart from one
    whose answers merely did not parse."""

    def __init__(self, http: httpx.AsyncClient, watch: ServerWatch, max_tokens: int):
        super().__init__(watch.server.model)
        self.http, self.watch, self.max_tokens = http, watch, max_tokens
        self.unanswered: list[str] = []

    async def generate(self, prompt, **kwargs: Any) -> Response:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt,
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "temperature": kwargs.get("temperature", 0.0),
        }
        if kwargs.get("logprobs"):
            body.update(logprobs=True, top_logprobs=kwargs.get("top_logprobs", 5))
        if kwargs.get("regex"):
            body["structured_outputs"] = {"regex": kwargs["regex"]}
        try:
            response = await self.http.post("/v1/chat/completions", json=body)
        except httpx.TransportError as error:
            self.unanswered.append(f"{type(error).__name__}: {error}")
            self.watch.unanswered(error)
            raise
        self.watch.answered()
        if response.status_code != 200:
            raise RuntimeError(f"the LLM server refused the request ({response.status_code}): {response.text[:300]}")
        choice = response.json()["choices"][0]
        return Response(text=choice["message"]["content"], logprobs=token_logprobs(choice.get("logprobs")))


def token_logprobs(logprobs: dict | None) -> list[SimpleNamespace] | None:
    """OpenAI-style logprobs as delphi reads them: `.token` and `.top_logprobs` (`.token`, `.logprob`)."""
    if not logprobs or logprobs.get("content") is None:
        return None
    return [
        SimpleNamespace(
            token=entry["token"],
            logprob=entry["logprob"],
            top_logprobs=[
                SimpleNamespace(token=top["token"], logprob=top["logprob"]) for top in entry.get("top_logprobs", [])
            ],
        )
        for entry in logprobs["content"]
    ]


def answer_formats(settings: LlmSettings) -> tuple[dict, dict]:
    """Generation arguments of the explainer and of the scorers; with structured outputs the server
    may only answer in the format delphi parses (a small model needs it; the paper did without)."""
    if not settings.structured_outputs:
        return {}, {}
    n = settings.examples_per_prompt
    return ({"regex": r"\[EXPLANATION\]: [A-Za-z ,\"']{1,80}"}, {"regex": r"\[[01](,[01]){" + str(n - 1) + r"}\]"})


async def score_with_llm(
    record, http: httpx.AsyncClient, watch: ServerWatch, settings: AutointerpSettings
) -> dict[str, Any]:
    """One latent explained by delphi's DefaultExplainer and scored by its fuzzing and detection
    scorers (log_prob=True), all through the served LLM."""
    llm = settings.llm
    client = VllmClient(http, watch, llm.max_tokens)
    explain_format, score_format = answer_formats(llm)
    explainer = DefaultExplainer(
        client,
        threshold=settings.highlight_threshold,
        activations=settings.show_activations,
        temperature=0.0,
        generation_kwargs=explain_format,
    )
    try:
        record.explanation = (await explainer(record)).explanation
    except httpx.TransportError as error:
        raise NoAnswer(f"the explanation request got no answer: {type(error).__name__}: {error}") from error
    rows = {}
    for name, scorer in SCORERS.items():
        result = await scorer(
            client,
            n_examples_shown=llm.examples_per_prompt,
            log_prob=True,
            temperature=0.0,
            **scorer_options(name, settings),
            **score_format,
        )(record)
        rows[name] = [(output.activating, output.probability, output.distance) for output in result.score]
    if client.unanswered:
        raise NoAnswer(f"{len(client.unanswered)} scoring requests got no answer: {client.unanswered[-1]}")
    entry = latent_entry(record, record.explanation, rows)
    entry["explanation_parsed"] = record.explanation != UNPARSED_EXPLANATION
    return entry


async def explain_and_score(
    records: list, log: LatentLog, tokenizer, settings: AutointerpSettings, server_file: str | Path | None
) -> None:
    """Every record not yet in `log`, through the server that `server_file` names, `concurrency`
    latents at a time (explainer `llm`)."""
    llm = settings.llm
    server = Server.from_file(server_file)
    waited = server.wait_until_ready(llm.start_timeout)
    print(f"{server.describe()} ready after {waited:.0f} s")
    watch = ServerWatch(server, llm.stuck_after)
    transport = httpx.AsyncHTTPTransport(uds=server.socket)
    async with httpx.AsyncClient(transport=transport, base_url="http://llm", timeout=llm.request_timeout) as http:
        await score_latents(
            records,
            lambda record: score_with_llm(record, http, watch, settings),
            log,
            concurrency=llm.concurrency,
            check=watch.raise_if_unavailable,
        )

import json

import numpy as np
import pandas as pd
import pytest

from saerand.autointerp import run
from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.autointerp.scoring import LatentLog, highlighted, score_with_null

from .conftest import RANDOM_LATENT, TOKEN_LATENT

SETTINGS = {
    "explanation_examples": 20,
    "test_examples": 20,
    "quantiles": 5,
    "explanation_sampling": "random",
    "example_context": 8,
    "min_examples": 20,
    "non_activating": 20,
    "bootstrap_resamples": 200,
    "seed": 0,
    "highlight_threshold": 0.3,
}


def _records(raw_dir, tokenizer):
    dataset, _ = run.latent_dataset(raw_dir, "layers.0", tokenizer, SETTINGS)
    return {record.latent.latent_index: record for record in dataset}


def test_the_null_explainer_scores_a_token_latent_high_and_a_random_one_at_chance(raw_dir, small_tokenizer):
    tokenizer = DelphiTokenizer(small_tokenizer)
    records = _records(raw_dir, tokenizer)
    token, random = (score_with_null(records[latent], tokenizer, SETTINGS) for latent in (TOKEN_LATENT, RANDOM_LATENT))
    assert token["fuzz_auroc"] > 0.95 and token["detection_auroc"] > 0.95
    assert 0.25 < random["fuzz_auroc"] < 0.75 and 0.25 < random["detection_auroc"] < 0.8
    assert token["fuzz_unparsed"] == token["detection_unparsed"] == 0
    # Two token ids, activations 2 and 1: entropy below log 2; at random positions, far more spread.
    assert token["distinct_tokens"] <= 2 and 0 < token["entropy_nats"] < np.log(2)
    assert random["entropy_normalised"] > 0.8 > 0.3 > token["entropy_normalised"]
    assert repr(small_tokenizer.decode([300])) in token["explanation"]
    assert len(token["shown"]) == SETTINGS["explanation_examples"]
    scorers = {sample["scorer"] for sample in token["samples"]}
    assert scorers == {"fuzz", "detection"}


def test_highlighted_tokens_are_read_back_from_delphis_marks():
    assert highlighted("a<<bc>>d<<e>>", ["a", "b", "c", "d", "e"]) == [1, 2, 4]
    assert highlighted("abcde", ["a", "b", "c", "d", "e"]) == []
    assert highlighted("<<NNsight>> is great", ["x", "y"]) is None


def test_a_latent_log_ignores_the_line_a_killed_job_was_writing(tmp_path):
    log = LatentLog(tmp_path / "progress" / "latents.jsonl")
    log.add({"latent": 1, "fuzz_auroc": 0.5})
    log.add({"latent": 2, "failed": "ValueError: unparseable"})
    with open(log.path, "a") as handle:
        handle.write('{"latent": 3, "fuz')
    assert sorted(LatentLog(log.path).done) == [1, 2]


def test_a_killed_run_resumes_without_redoing_finished_latents(raw_dir, model_dir, tmp_path, monkeypatch):
    calls = []

    def first_latent_then_killed(record, tokenizer, settings):
        if calls:
            raise KeyboardInterrupt  # the job is killed while scoring its second latent
        calls.append(record.latent.latent_index)
        return score_with_null(record, tokenizer, settings)

    output = tmp_path / "sae" / "autointerp" / "tokens"
    monkeypatch.setattr(run, "score_with_null", first_latent_then_killed)
    with pytest.raises(KeyboardInterrupt):
        run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert not output.exists() and len(calls) == 1

    resumed = []
    monkeypatch.setattr(
        run,
        "score_with_null",
        lambda record, tok, settings: (
            resumed.append(record.latent.latent_index) or score_with_null(record, tok, settings)
        ),
    )
    summary = run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert resumed == [latent for latent in (TOKEN_LATENT, RANDOM_LATENT) if latent not in calls]
    assert summary["scored"] == 2 and summary["failed"] == 0
    assert summary["fuzz_auroc_low"] <= summary["fuzz_auroc"] <= summary["fuzz_auroc_high"]
    entries = [json.loads(line) for line in (output / "latents.jsonl").read_text().splitlines()]
    assert sorted(entry["latent"] for entry in entries) == [TOKEN_LATENT, RANDOM_LATENT]
    samples = pd.read_csv(output / "samples.csv")
    assert set(samples["latent"]) == {TOKEN_LATENT, RANDOM_LATENT} and samples["probability"].between(0, 1).all()
    assert not output.with_name(".tokens.progress").exists()


def test_a_failing_latent_is_recorded_and_the_others_are_scored(raw_dir, model_dir, tmp_path, monkeypatch):
    def fail_on_token_latent(record, tokenizer, settings):
        if record.latent.latent_index == TOKEN_LATENT:
            raise ValueError("the scorer's answer did not parse")
        return score_with_null(record, tokenizer, settings)

    monkeypatch.setattr(run, "score_with_null", fail_on_token_latent)
    output = tmp_path / "tokens"
    summary = run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert summary["scored"] == 1 and summary["failed"] == 1
    failed = [json.loads(line) for line in (output / "latents.jsonl").read_text().splitlines() if "failed" in line]
    assert failed == [{"latent": TOKEN_LATENT, "failed": "ValueError: the scorer's answer did not parse"}]

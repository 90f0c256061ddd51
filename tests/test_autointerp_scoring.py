import contextlib
import dataclasses
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from saerand.autointerp import null_explainer, run
from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.autointerp.null_explainer import highlighted, score_with_null
from saerand.autointerp.scoring import LatentLog
from saerand.provenance import without_secrets
from saerand.settings import AutointerpSettings, section_settings

from .conftest import RANDOM_LATENT, TOKEN_LATENT

SETTINGS = section_settings(
    AutointerpSettings,
    "autointerp",
    explanation_examples=20,
    test_examples=20,
    quantiles=5,
    explanation_sampling="random",
    example_context=8,
    min_examples=20,
    non_activating=20,
    bootstrap_resamples=200,
    seed=0,
    highlight_threshold=0.3,
    max_examples=None,
)


def _records(raw_dir, tokenizer, **settings):
    dataset, _ = run.latent_dataset(raw_dir, "layers.0", tokenizer, dataclasses.replace(SETTINGS, **settings))
    return {record.latent.latent_index: record for record in dataset}


def test_max_examples_keeps_each_latents_top_windows_and_draws_from_them(raw_dir, small_tokenizer):
    """The random latent fires in about 260 of the 1,200 windows, at 0.5-2: capped at 40, its
    examples are its 40 strongest windows, and the explanation and test examples come from those;
    its non-activating windows stay those where it never fires."""
    tokenizer = DelphiTokenizer(small_tokenizer)
    every = _records(raw_dir, tokenizer)[RANDOM_LATENT]
    capped = _records(raw_dir, tokenizer, max_examples=40)[RANDOM_LATENT]
    peaks = sorted((float(example.activations.max()) for example in every.examples), reverse=True)
    assert len(every.examples) > 200 and len(capped.examples) == 40
    assert [float(example.activations.max()) for example in capped.examples] == pytest.approx(peaks[:40])
    floor = peaks[39]
    for example in capped.train + capped.test:
        assert float(example.activations.max()) >= floor
    assert min(float(example.activations.max()) for example in every.test) < floor  # uncapped: lower quantiles
    assert all(float(example.activations.max()) == 0 for example in capped.not_active)
    assert len(capped.not_active) == len(every.not_active) == SETTINGS.non_activating


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
    assert len(token["shown"]) == SETTINGS.explanation_examples
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


def test_a_torn_line_is_skipped_and_the_entries_after_it_still_count(tmp_path):
    log = LatentLog(tmp_path / "progress" / "latents.jsonl")
    log.add({"latent": 1, "fuzz_auroc": 0.5})
    with open(log.path, "a") as handle:
        handle.write('{"latent": 2, "fuz\n')
    log.add({"latent": 3, "fuzz_auroc": 0.7})
    assert sorted(LatentLog(log.path).done) == [1, 3]


def test_the_entry_after_a_torn_last_line_starts_on_its_own_line(tmp_path):
    path = tmp_path / "progress" / "latents.jsonl"
    LatentLog(path).add({"latent": 1, "fuzz_auroc": 0.5})
    with open(path, "a") as handle:
        handle.write('{"latent": 2, "fuz')  # a killed writer's last line, without its newline
    LatentLog(path).add({"latent": 3, "fuzz_auroc": 0.7})
    assert sorted(LatentLog(path).done) == [1, 3]


def _killed_after_first_latent(raw_dir, model_dir, output, monkeypatch) -> int:
    """Run a job that is killed while scoring its second latent; the first latent it scored."""
    calls = []

    def first_latent_then_killed(record, tokenizer, settings):
        if calls:
            raise KeyboardInterrupt
        calls.append(record.latent.latent_index)
        return score_with_null(record, tokenizer, settings)

    with monkeypatch.context() as patch:
        patch.setattr(null_explainer, "score_with_null", first_latent_then_killed)
        with pytest.raises(KeyboardInterrupt):
            run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    return calls[0]


def _scored_latents(monkeypatch) -> list[int]:
    """From now on, every latent the null explainer scores."""
    scored = []
    monkeypatch.setattr(
        null_explainer,
        "score_with_null",
        lambda record, tok, settings: (
            scored.append(record.latent.latent_index) or score_with_null(record, tok, settings)
        ),
    )
    return scored


def test_a_rerun_killed_while_recording_its_settings_keeps_the_progress(raw_dir, model_dir, tmp_path, monkeypatch):
    output = tmp_path / "tokens"
    first = _killed_after_first_latent(raw_dir, model_dir, output, monkeypatch)
    write_text = pathlib.Path.write_text

    def torn_settings(path, text, *args, **kwargs):
        if "settings.json" in path.name:
            write_text(path, text[: len(text) // 2])
            raise KeyboardInterrupt  # the job is killed while writing its settings
        return write_text(path, text, *args, **kwargs)

    scored = _scored_latents(monkeypatch)
    with monkeypatch.context() as patch, contextlib.suppress(KeyboardInterrupt):
        patch.setattr(pathlib.Path, "write_text", torn_settings)
        run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    if not output.exists():  # the rerun after that kill
        run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert first not in scored and len(output.joinpath("latents.jsonl").read_text().splitlines()) == 2


def test_progress_without_its_settings_is_started_afresh(raw_dir, model_dir, tmp_path):
    output = tmp_path / "tokens"
    progress = output.with_name(".tokens.progress")
    progress.mkdir()  # a job killed before it recorded its settings
    progress.joinpath("latents.jsonl").write_text(json.dumps({"latent": 999, "failed": "not this run's"}) + "\n")
    summary = run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert summary["scored"] == 2 and summary["failed"] == 0


def test_a_killed_run_resumes_without_redoing_finished_latents(raw_dir, model_dir, tmp_path, monkeypatch):
    output = tmp_path / "sae" / "autointerp" / "tokens"
    first = _killed_after_first_latent(raw_dir, model_dir, output, monkeypatch)
    assert not output.exists()

    resumed = _scored_latents(monkeypatch)
    # Resumed on another device with another batch size: operational settings, not the result's.
    moved = dataclasses.replace(SETTINGS, device="cpu", batch_sequences=3)
    summary = run.score_sae(raw_dir, "layers.0", model_dir, moved, output, explainer="tokens")
    assert resumed == [latent for latent in (TOKEN_LATENT, RANDOM_LATENT) if latent != first]
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

    monkeypatch.setattr(null_explainer, "score_with_null", fail_on_token_latent)
    output = tmp_path / "tokens"
    summary = run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, output, explainer="tokens")
    assert summary["scored"] == 1 and summary["failed"] == 1
    failed = [json.loads(line) for line in (output / "latents.jsonl").read_text().splitlines() if "failed" in line]
    assert failed == [{"latent": TOKEN_LATENT, "failed": "ValueError: the scorer's answer did not parse"}]


def test_the_summary_records_the_settings_without_the_llm_servers_environment_and_flags(raw_dir, model_dir, tmp_path):
    llm = {"model": "owner/llm", "environment": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "server_args": ["--enforce-eager"]}
    output = tmp_path / "tokens"
    settings = dataclasses.replace(SETTINGS, llm=section_settings(AutointerpSettings, "autointerp", llm=llm).llm)
    run.score_sae(raw_dir, "layers.0", model_dir, settings, output, explainer="tokens")
    recorded = json.loads((output / "summary.json").read_text())["autointerp"]
    assert recorded["llm"]["model"] == "owner/llm" and recorded["seed"] == SETTINGS.seed
    assert not {"environment", "server_args"} & set(recorded["llm"])
    assert recorded == json.loads(json.dumps(without_secrets(dataclasses.asdict(settings))))


def test_the_pooled_auroc_is_one_roc_over_every_latents_samples(raw_dir, model_dir, tmp_path):
    """Beside the mean of per-latent AUROCs (what Figure 3 draws), one AUROC over the pooled samples,
    with latents resampled for its interval."""
    summary = run.score_sae(raw_dir, "layers.0", model_dir, SETTINGS, tmp_path / "tokens", explainer="tokens")
    samples = pd.read_csv(tmp_path / "tokens" / "samples.csv")
    for scorer in ("fuzz", "detection"):
        rows = samples[samples["scorer"] == scorer]
        pooled = summary[f"{scorer}_auroc_pooled"]
        assert pooled == pytest.approx(roc_auc_score(rows["activating"], rows["probability"]))
        assert summary[f"{scorer}_auroc_pooled_low"] <= pooled <= summary[f"{scorer}_auroc_pooled_high"]
    written = json.loads((tmp_path / "tokens" / "summary.json").read_text())
    assert written["fuzz_auroc_pooled"] == summary["fuzz_auroc_pooled"]

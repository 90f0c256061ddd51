"""The benchmark scripts run at toy size, so they cannot rot."""

import importlib.util
import json

import pytest

from .conftest import REPO


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fidelity_benchmark_meets_its_goal(tmp_path, tiny_neox, small_tokenizer, pydoc_text_file, capsys):
    for revision in ("main",):
        tiny_neox.save_pretrained(tmp_path / "model" / revision)
        small_tokenizer.save_pretrained(tmp_path / "model" / revision)
    paragraphs = pydoc_text_file.read_text().split("\n\n")
    (tmp_path / "train.txt").write_text("\n\n".join(paragraphs[:-40]))
    (tmp_path / "eval.txt").write_text("\n\n".join(paragraphs[-40:]))
    status = _load("fidelity").main(
        [
            "--model",
            str(tmp_path / "model"),
            "--text",
            str(tmp_path),
            "--context",
            "32",
            "--train-tokens",
            "4096",
            "--eval-tokens",
            "1024",
            "--expansion",
            "2",
            "--k",
            "4",
            "--batch-size",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "largest |EV difference| = 0.00e+00" in out  # bit for bit at this size


def test_throughput_benchmark_runs_at_toy_size(capsys, tmp_path):
    results = _load("throughput").main(
        [
            "--json",
            str(tmp_path / "figures.json"),
            "--size",
            "toy",
            "--tokens",
            "4096",
            "--context",
            "64",
            "--batch-sequences",
            "8",
            "--expansion",
            "4",
            "--k",
            "8",
            "--device",
            "cpu",
        ]
    )
    for key in ("a_cache_over_bound", "a_cache_over_forward", "b_ours_over_sparsify", "c_read_over_consumption"):
        assert results[key] > 0, key
    assert 0 <= results["e_read_overlap"] <= 1 and results["reader_busy_s"] > 0
    out = capsys.readouterr().out
    assert "(d) SAE step d=128 latents=512: ran" in out and "(e) reading hidden by training" in out
    record = json.loads((tmp_path / "figures.json").read_text())
    assert record["device"].startswith("cpu") and "torch" in record["versions"] and record["created_utc"]
    assert record["results"] == pytest.approx(results)


def test_buffer_read_benchmark_compares_read_orders(capsys):
    results = _load("buffer_read").main(
        [
            "--tokens",
            "4096",
            "--d-model",
            "16",
            "--chunk-rows",
            "512",
            "--batch-rows",
            "256",
            "--windows",
            "1",
            "4",
            "--blocks",
            "1",
            "8",
        ]
    )
    assert set(results) == {
        "stored",
        "mixed_window_1_block_1",
        "mixed_window_1_block_8",
        "mixed_window_4_block_1",
        "mixed_window_4_block_8",
    }
    assert all(rate > 0 for rate in results.values())
    assert "x stored" in capsys.readouterr().out


def test_layer_training_benchmark_compares_one_read_with_separate_jobs(capsys):
    results = _load("layer_training").main(
        [
            "--tokens",
            "2048",
            "--d-model",
            "16",
            "--context",
            "32",
            "--batch-size",
            "4",
            "--chunk-rows",
            "512",
            "--points",
            "2:4",
            "4:4",
        ]
    )
    assert set(results) == {"separate_jobs", "one_process", "one_read"}
    assert all(rate > 0 for rate in results.values())
    assert "x separate jobs" in capsys.readouterr().out

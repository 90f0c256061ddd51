"""The benchmark scripts run at toy size, so they cannot rot."""

import importlib.util
import json
import os
import subprocess
import sys

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


def test_the_device_check_runs_every_step_and_writes_one_table(tmp_path):
    """bench/device_check.sh at toy size on the CPU (what a lent GPU runs at Pythia shapes)."""
    environment = {**os.environ, "CHECK_SIZE": "toy", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    subprocess.run(["bash", str(REPO / "bench" / "device_check.sh")], env=environment, check=True, capture_output=True)
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert summary["device"].startswith("cpu") and summary["versions"]["eai-sparsify"] == "1.3.3"
    toy = summary["runs"]["throughput-toy"]
    for flag in ("fused_adam", "topk_before_relu"):
        assert toy[f"{flag}_training_tokens_per_s"] > 0 and abs(toy[f"{flag}_final_fvu_difference"]) < 0.05
    table = (tmp_path / "device_check.md").read_text()
    assert "| our SAE training / sparsify's Trainer | >= 1.0 |" in table
    # The cost model's constants measured, and its caching and training set beside the measured ones.
    assert set(summary["rates"]) == {
        "fp32_flops_per_second",
        "half_flops_per_second",
        "memory_bytes_per_second",
        "disk_bytes_per_second",
        "step_seconds",
        "topk_elements_per_second",
    }
    assert all(value > 0 for value in summary["rates"].values())
    ratios = summary["model_over_measured"]["throughput-toy"]
    assert set(ratios) == {"cache_tokens_per_s", "our_training_tokens_per_s"} and all(r > 0 for r in ratios.values())
    assert "| cost model / measured (goal: 0.67 to 1.5) | throughput-toy |" in table
    assert "aten::" in (tmp_path / "profile" / "table.md").read_text()
    assert (tmp_path / "profile" / "trace.json").stat().st_size > 0


def test_compare_runs_reports_per_variant_means_and_changed_verdicts(tmp_path, capsys):
    import pandas as pd

    compare_runs = _load("compare_runs")
    keys = {"model": "m", "layer": 0, "expansion_factor": 4, "k": 2}
    claim = {"model": "m", "layer": "0", "claim": "c", "metric": "l1", "comparison": "x"}
    for name, l1, holds in (("a", [1.0, 2.0], True), ("b", [1.5, 2.0], False)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [keys | {"variant": variant, "l1": value} for variant, value in zip(("trained", "control"), l1)]
        pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
        pd.DataFrame([claim | {"estimate": l1[0], "holds": holds}]).to_csv(folder / "claims.csv", index=False)
    result = compare_runs.compare(tmp_path / "a", tmp_path / "b", ("a", "b"))
    assert result["saes"] == 2
    assert result["per_variant"]["trained"]["l1"] == {"a": 1.0, "b": 1.5, "largest |difference| of one SAE": 0.5}
    assert result["per_variant"]["control"]["l1"]["largest |difference| of one SAE"] == 0.0
    assert result["claims_holding"] == {"a": 1, "b": 0} and len(result["verdicts_changed"]) == 1

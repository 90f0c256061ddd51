import json

import pytest

from saerand.device_rates import ASSUMED_GPU, DeviceRates, newest_gpu_rates

RATES = DeviceRates("test GPU", 10e12, 100e12, 1e12, 1e9, 1e-3, 1e11, source="test")


def test_a_jobs_time_is_its_steps_flops_and_bytes_or_its_writes():
    # 1000 steps of 1 ms, 10 TFLOP at 10 TFLOP/s, 2 TB at 1 TB/s, a top-k over 1e11 elements: 1 + 1 + 2 + 1 s.
    assert RATES.seconds(10e12, memory_bytes=2e12, steps=1000, topk_elements=1e11) == pytest.approx(5.0)
    assert RATES.seconds(10e12, half_precision=True) == pytest.approx(0.1)
    # Writing 5 GB at 1 GB/s hides the 0.1 s of a forward pass; the two overlap.
    assert RATES.seconds(10e12, written_bytes=5e9, half_precision=True) == pytest.approx(5.0)


def test_rates_round_trip_through_their_file(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({**RATES.record(), "versions": {}}))
    assert DeviceRates.load(path) == DeviceRates(**{**RATES.__dict__, "source": str(path)})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "unreadable"),
        (json.dumps({"device": "x", "rates": {"fp32_flops_per_second": 1}}), "no positive half_flops_per_second"),
        (
            json.dumps({"device": "x", "rates": {**RATES.record()["rates"], "step_seconds": 0}}),
            "no positive step_seconds",
        ),
    ],
)
def test_a_bad_rates_file_is_named_with_what_it_lacks(tmp_path, content, message):
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"device rates {path}: {message}.*bench/device_rates.py"):
        DeviceRates.load(path)


def test_the_newest_gpu_file_is_used_and_a_cpu_one_never(tmp_path):
    assert newest_gpu_rates(tmp_path) == ASSUMED_GPU and ASSUMED_GPU.source == "assumed"
    for folder, flops in (("cpu-2026-12-06", 1.0), ("H100-2026-11-01", 2.0), ("H100-2026-12-01", 3.0)):
        (tmp_path / folder).mkdir()
        record = {"device": folder, "rates": {**RATES.record()["rates"], "fp32_flops_per_second": flops}}
        (tmp_path / folder / "rates.json").write_text(json.dumps(record))
    assert newest_gpu_rates(tmp_path).fp32_flops_per_second == 3.0

"""What one device does per second: the constants of the cost model's job times (saerand.costs).

A GPU job's time is a fixed cost per optimizer step, plus its dense FLOPs at the device's matmul
rate, plus the bytes it moves through device memory at the memory's bandwidth, plus the
pre-activations its top-k selections go through at the device's top-k rate; a job that writes a
store takes at least its bytes at the scratch disk's fsync'd write rate (the two overlap). The rates
are measured by bench/device_rates.py into bench/results/<device>-<date>/rates.json; the planner
uses the newest such file of a GPU, and assumed H100 figures, said so, where none exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
RATES_FILE = "rates.json"


@dataclass(frozen=True)
class DeviceRates:
    device: str
    fp32_flops_per_second: float  # dense float32 matmul (SAEs train in float32)
    half_flops_per_second: float  # dense matmul in the subject model's 16-bit dtype on a GPU
    memory_bytes_per_second: float  # device memory, a copy's reads and writes together
    disk_bytes_per_second: float  # scratch writes, fsync'd
    step_seconds: float  # one SAE optimizer step whose FLOPs and bytes are negligible
    topk_elements_per_second: float  # pre-activations a top-k selection goes through
    source: str = "assumed"

    def seconds(
        self,
        flops: float,
        memory_bytes: float = 0.0,
        steps: float = 0.0,
        written_bytes: float = 0.0,
        half_precision: bool = False,
        topk_elements: float = 0.0,
    ) -> float:
        matmul = self.half_flops_per_second if half_precision else self.fp32_flops_per_second
        compute = (
            steps * self.step_seconds
            + flops / matmul
            + memory_bytes / self.memory_bytes_per_second
            + topk_elements / self.topk_elements_per_second
        )
        return max(compute, written_bytes / self.disk_bytes_per_second)

    @classmethod
    def load(cls, path: Path) -> DeviceRates:
        """The rates in a bench/device_rates.py file; an error naming the file and what it lacks."""
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(
                f"device rates {path}: unreadable ({error}); write it with bench/device_rates.py"
            ) from error
        rates = record.get("rates", {})
        names = [f.name for f in fields(cls) if f.name not in ("device", "source")]
        missing = [name for name in names if not isinstance(rates.get(name), int | float) or rates[name] <= 0]
        if missing or "device" not in record:
            raise ValueError(
                f"device rates {path}: no positive {', '.join(missing) or 'device'}; "
                "write it with bench/device_rates.py"
            )
        return cls(device=record["device"], source=str(path), **{name: float(rates[name]) for name in names})

    def record(self) -> dict:
        return {
            "device": self.device,
            "rates": {k: v for k, v in asdict(self).items() if k not in ("device", "source")},
        }


# Where no bench file of a GPU exists: an H100's sustained fp32 matmul (75% of its 67 TFLOP/s peak)
# and 16-bit (about 40% of 990), most of its 3.35 TB/s HBM3, a parallel filesystem's 1 GB/s per
# writer, a step's kernel launches, and a top-k pass at about a tenth of the bandwidth's elements.
# Not measured: the planner says "assumed".
ASSUMED_GPU = DeviceRates(
    device="NVIDIA H100 (assumed)",
    fp32_flops_per_second=50e12,
    half_flops_per_second=400e12,
    memory_bytes_per_second=2.5e12,
    disk_bytes_per_second=1e9,
    step_seconds=1e-3,
    topk_elements_per_second=1e11,
)


def newest_gpu_rates(results: Path = BENCH_RESULTS) -> DeviceRates:
    """The newest committed rates of a GPU (folders are named <device>-<date>), else ASSUMED_GPU."""
    found = [path for path in results.glob(f"*/{RATES_FILE}") if not path.parent.name.startswith("cpu")]
    newest = max(found, key=lambda path: (path.parent.name[-10:], path.parent.name), default=None)
    return ASSUMED_GPU if newest is None else DeviceRates.load(newest)

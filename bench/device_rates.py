"""A device's rates for the cost model (saerand.device_rates): dense float32 and 16-bit matmul FLOP/s,
device-memory bandwidth (a copy), the scratch disk's fsync'd write rate, the fixed cost of one SAE
optimizer step (our trainer at a shape whose FLOPs and bytes are negligible), and the top-k rate
(k 32 of a batch's float32 pre-activations). Writes rates.json with
the device, the versions and the date; bench/device_report.py then sets the model's predictions
beside bench/throughput.py's measurements.

    python bench/device_rates.py --json bench/results/NVIDIA-H100-80GB-HBM3-2026-12-05/rates.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from throughput import storage_write_bytes_per_s, timed

from saerand.device_rates import DeviceRates
from saerand.devices import resolve_device
from saerand.provenance import provenance
from saerand.sae_training import SaeTrainer
from saerand.settings import SaeSettings, section_settings


def matmul_flops_per_second(device: str, dtype: torch.dtype, size: int, repeats: int) -> float:
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b  # warm-up (kernels, allocator)
    return 2 * size**3 * repeats / timed(lambda: [a @ b for _ in range(repeats)], device)


def copy_bytes_per_second(device: str, mib: int, repeats: int) -> float:
    source = torch.ones(mib * 2**18, device=device)  # float32
    target = torch.empty_like(source)
    target.copy_(source)
    return 2 * source.nbytes * repeats / timed(lambda: [target.copy_(source) for _ in range(repeats)], device)


def topk_elements_per_second(device: str, rows: int, latents: int, k: int, repeats: int) -> float:
    """Pre-activations a top-k selection goes through per second (float32, as SAEs train)."""
    values = torch.randn(rows, latents, device=device)
    values.topk(k, sorted=False)
    return rows * latents * repeats / timed(lambda: [values.topk(k, sorted=False) for _ in range(repeats)], device)


def sae_step_seconds(device: str, steps: int) -> float:
    """One step of our trainer on a 32-dimensional SAE of 64 latents and a 64-token batch: its
    kernel launches, synchronisations and Python, with next to no FLOPs or bytes."""
    settings = section_settings(
        SaeSettings,
        "sae",
        expansion_factor=2,
        k=4,
        batch_size=1,
        optimizer="adam",
        device=device,
        lr_warmup_steps=1,
    )
    batches = [torch.randn(64, 32) for _ in range(steps)]
    SaeTrainer(32, settings, num_steps=steps).train_on(batches[:3])  # warm-up
    trainer = SaeTrainer(32, settings, num_steps=steps)
    return timed(lambda: trainer.train_on(batches), device) / steps


def main(argv=None) -> DeviceRates:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scratch", default=None, help="folder of the write test (default: the system's temp folder)")
    parser.add_argument("--json", type=Path, required=True, help="the rates.json to write")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    # On a GPU the subject models run in 16 bits; on a CPU in float32, so its "half" rate is float32's.
    half = torch.float16 if gpu else torch.float32
    size, repeats = (8192, 20) if gpu else (1024, 8)
    fp32 = matmul_flops_per_second(device, torch.float32, size, repeats)
    rates = DeviceRates(
        device=torch.cuda.get_device_name() if gpu else f"cpu ({os.cpu_count()} cores)",
        fp32_flops_per_second=fp32,
        half_flops_per_second=matmul_flops_per_second(device, half, size, repeats) if gpu else fp32,
        memory_bytes_per_second=copy_bytes_per_second(device, 1024 if gpu else 256, 20 if gpu else 5),
        disk_bytes_per_second=storage_write_bytes_per_s(args.scratch or tempfile.gettempdir(), 2**30 if gpu else 2**28),
        step_seconds=sae_step_seconds(device, 200 if gpu else 50),
        topk_elements_per_second=topk_elements_per_second(device, 4096, 16384 if gpu else 8192, 32, 20 if gpu else 3),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(provenance(bench="device_rates", **rates.record()), indent=2) + "\n")
    print(f"device {rates.device}")
    for key, value in rates.record()["rates"].items():
        print(f"  {key:28s} {value:12.4g}")
    return rates


if __name__ == "__main__":
    main()
    sys.exit(0)

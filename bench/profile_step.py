"""Where an SAE training step's time goes: torch.profiler over `--steps` steps of one SaeTrainer
(after warm-up steps), as a table of the operators by device time and a Chrome trace.

    python3 bench/profile_step.py --d-model 2048 --steps 20 --out bench/results/profile-d2048
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from saerand.devices import resolve_device
from saerand.sae_training import SaeTrainer
from saerand.settings import SaeSettings, section_settings


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--expansion", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--optimizer", choices=["adam", "signum"], default="adam")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True, help="folder for table.md and trace.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    settings = section_settings(
        SaeSettings,
        "sae",
        expansion_factor=args.expansion,
        k=args.k,
        batch_size=1,
        optimizer=args.optimizer,
        device=device,
        lr_warmup_steps=10,
    )
    trainer = SaeTrainer(args.d_model, settings, num_steps=args.warmup + args.steps)
    batches = [torch.randn(args.batch_tokens, args.d_model, device=device) for _ in range(4)]
    on_gpu = device.startswith("cuda")
    for step in range(args.warmup):
        trainer.step_on(batches[step % len(batches)])
    if on_gpu:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as profiled:
        for step in range(args.steps):
            trainer.step_on(batches[step % len(batches)])
        if on_gpu:
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    table = profiled.key_averages().table(sort_by=sort, row_limit=25)
    args.out.mkdir(parents=True, exist_ok=True)
    heading = (
        f"{args.steps} steps, d {args.d_model}, {args.d_model * args.expansion} latents, k {args.k}, "
        f"{args.batch_tokens} tokens per step, {args.optimizer}, {device}"
    )
    (args.out / "table.md").write_text(f"# SAE step profile: {heading}\n\n```\n{table}\n```\n")
    profiled.export_chrome_trace(str(args.out / "trace.json"))
    print(heading)
    print(table)
    return table


if __name__ == "__main__":
    main()
    sys.exit(0)

"""Live training curves in TensorBoard's event format, when a study turns `tracking.tensorboard` on.

The curve (SaeTrainer.curve) is saved beside each SAE either way; this writes the same points while
the SAE trains, so a multi-hour job can be watched (`tensorboard --logdir results/tensorboard`) and,
for Weights & Biases users, synced later (`wandb sync --sync-tensorboard`): event files on disk, no
server, no account and no network, so it is safe on an offline compute node. One run per SAE, laid
out as the results are: <directory>/<model>/<variant>/<xE-kK>/layers.<L>.
"""

from __future__ import annotations

from pathlib import Path

from .study import SaeHyperparameters

# The curve's measures, as TensorBoard tags.
CURVE_TAGS = {"fvu": "train/fvu", "fired_fraction": "train/fired_fraction", "dead_fraction": "train/dead_fraction"}


def run_directory(directory: str | Path, model: str, variant: str, point: SaeHyperparameters, layer: int) -> Path:
    return Path(directory) / model / variant / point.label / f"layers.{layer}"


class CurveWriter:
    """One SAE's curve points after `start_batches` (those the previous shard's job wrote), as they
    come. A job that restarts a shard (a requeue, a retry) purges what its dead attempt wrote past
    that point, so every step is shown once."""

    def __init__(self, directory: str | Path, start_batches: int):
        # Imported here: tensorboard is needed only where tracking is on.
        from torch.utils.tensorboard import SummaryWriter

        self.written = start_batches
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=start_batches + 1)

    def write(self, curve: list[dict[str, float]]) -> None:
        for point in curve:
            if point["batches"] <= self.written:
                continue
            for measure, tag in CURVE_TAGS.items():
                self.writer.add_scalar(tag, point[measure], global_step=point["batches"])
            self.writer.add_scalar("train/tokens", point["tokens"], global_step=point["batches"])
            self.written = point["batches"]
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

"""Publishing a trained SAE: its last checkpoint already holds it finished in sparsify's format
(sae_training.save_layer_checkpoint), so this copies files and adds provenance, with no torch or
sparsify to import: finalize_sae is a start-up's worth of work per SAE, not an import of both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_directory, write_json
from .provenance import provenance

FINISHED = "finished"  # in an SAE's last checkpoint: it finished, as saved by sae_training.save_sae


def finished_summary(checkpoint: str | Path) -> dict[str, Any] | None:
    """The training summary of the SAE finished in `checkpoint`; None where the checkpoint holds no
    finished SAE (one written before checkpoints held it: sae_training finishes it from the state)."""
    record = Path(checkpoint) / FINISHED / "provenance.json"
    return json.loads(record.read_text())["training"] if record.is_file() else None


def publish_finished_sae(checkpoint: str | Path, directory: str | Path, provenance: dict[str, Any]) -> None:
    """The SAE finished in `checkpoint` as `directory`, with `provenance`, published at once."""
    finished = Path(checkpoint) / FINISHED
    with atomic_directory(directory) as staging:
        for path in finished.iterdir():
            if path.name != "provenance.json":
                shutil.copy2(path, staging / path.name)
        write_json(staging / "provenance.json", provenance)


def finalize_sae(checkpoint: str | Path, directory: str | Path, fields: dict[str, Any], sae_settings: dict) -> dict:
    """The SAE of its last `checkpoint` as `directory` (sparsify's format, its curve, provenance of
    `fields` and the training summary); returns the summary. A checkpoint from before they held the
    finished SAE is finished from its training state (torch and sparsify imported only then)."""
    summary = finished_summary(checkpoint)
    if summary is not None:
        publish_finished_sae(checkpoint, directory, provenance(**fields, training=summary))
        return summary
    from .sae_training import SaeTrainer, job_settings, save_sae

    trainer = SaeTrainer.from_checkpoint(checkpoint, job_settings(sae_settings))
    sae, summary = trainer.finish()
    save_sae(sae.cpu(), directory, provenance(**fields, training=summary), curve=trainer.curve)
    return summary

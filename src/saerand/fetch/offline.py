"""What jobs read: the download cache's records and cached copies, with the hub offline
(saerand.fetch). Never touches the network."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .artefacts import HubArtefact, hub_dataset

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
RECORDS = "saerand-fetched"  # under HF_HOME: one completion record per artefact


class MissingDownload(FileNotFoundError):
    """A job needs something from the network that is not in the download cache."""


def record_path(hf_home: str | Path, name: str) -> Path:
    return Path(hf_home) / RECORDS / f"{name}.json"


def job_environment(hf_home: str | Path, online: bool = False) -> dict[str, str]:
    """The hub's settings for a job: the shared cache, and the network off unless it fetches."""
    home = Path(hf_home).absolute()
    # HF_HUB_CACHE too: a user's own setting of it would otherwise send jobs to another cache.
    return {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        **{name: "0" if online else "1" for name in OFFLINE_VARIABLES},
    }


def _hf_home() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME)


def cached_snapshot(artefact: HubArtefact, hf_home: str | Path | None = None) -> Path:
    """The cached copy of a fetched artefact: the commit and files its record names, all present;
    MissingDownload naming the fetch rule's output otherwise. Never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hf_home = Path(hf_home) if hf_home is not None else _hf_home()
    record = record_path(hf_home, artefact.name)
    hint = f"jobs read the hub offline; fetch it where the network is: snakemake --forcerun {record} (rule fetch_hub)"
    if not record.is_file():
        raise MissingDownload(f"{artefact.describe()} is not in the download cache {hf_home} (no {record}): {hint}")
    fetched = json.loads(record.read_text())
    try:
        # The commit that was fetched and verified, whatever the revision's name points to since.
        snapshot = Path(
            snapshot_download(
                artefact.repo_id,
                repo_type=artefact.repo_type,
                revision=fetched["commit"],
                allow_patterns=fetched["patterns"],
                cache_dir=hf_home / "hub",
                local_files_only=True,
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError) as err:
        raise MissingDownload(f"{artefact.describe()} is incomplete in the download cache: {err} {hint}") from err
    missing = [name for name in fetched["files"] if not (snapshot / name).is_file()]
    if missing:
        raise MissingDownload(
            f"{artefact.describe()}: {len(missing)} of its files are gone from {snapshot} (e.g. {missing[0]}): {hint}"
        )
    return snapshot


def local_dataset_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A `datasets` spec reading the cached copy of its hub data instead of the hub."""
    artefact = hub_dataset(spec)
    if artefact is None:
        return spec
    snapshot = cached_snapshot(artefact)
    if artefact.pattern is not None:
        return {**spec, "data_files": str(snapshot / artefact.pattern)}
    return {**spec, "path": str(snapshot), "revision": None}

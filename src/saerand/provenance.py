"""What every artefact records about how it was made."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from typing import Any

_PACKAGES = (
    "saerand",
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "eai-sparsify",
    "zarr",
    "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(**fields: Any) -> dict[str, Any]:
    """Fields of the artefact (config section, seed, ...) plus versions and a timestamp."""
    return {
        **fields,
        "versions": package_versions(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }

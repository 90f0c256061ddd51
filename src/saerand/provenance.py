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


# The LLM server's settings that could hold a secret (an API key among its flags, a token in its
# environment): config validation rejects names that look like one, and no artefact records them.
SECRET_PRONE_LLM_SETTINGS = ("environment", "server_args")


def without_secrets(autointerp: dict[str, Any]) -> dict[str, Any]:
    """The `autointerp` settings as an artefact records them: the LLM's without its server's
    environment and extra flags."""
    if "llm" not in autointerp:
        return autointerp
    llm = {key: value for key, value in autointerp["llm"].items() if key not in SECRET_PRONE_LLM_SETTINGS}
    return {**autointerp, "llm": llm}

"""What the study fetches, from its config: each hub model at each revision its variants read, the
hub datasets, and the auto-interp LLM's weights (saerand.fetch)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..autointerp.explainers import SERVED
from ..study import revision_for

# A hub repository id (owner/name); hf:// data files of a hub dataset, optionally at a revision.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_DATA_FILES = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<pattern>.+)$")
# `datasets`' packaged builders: a dataset path that names one reads data_files, not a repository.
PACKAGED_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas", "xml", "sql", "webdataset"})


@dataclass(frozen=True)
class HubArtefact:
    repo_id: str
    revision: str
    repo_type: str = "model"  # or "dataset"
    pattern: str | None = None  # a dataset's data files; None: the repository's (a model's: MODEL_FILES)

    @property
    def name(self) -> str:
        """Its record's file name: models--EleutherAI--pythia-70m@step0."""
        revision = urllib.parse.quote(self.revision, safe="")
        return f"{self.repo_type}s--{self.repo_id.replace('/', '--')}@{revision}"

    def describe(self) -> str:
        return f"{self.repo_type} {self.repo_id}@{self.revision}" + (f" ({self.pattern})" if self.pattern else "")


def is_hub_id(location: str) -> bool:
    """A hub repository id rather than a directory on disk."""
    return not Path(location).exists() and bool(REPO_ID.match(location))


def hub_dataset(spec: dict[str, Any]) -> HubArtefact | None:
    """The hub repository a `datasets` spec reads (hf:// data files, or a repository id as its
    path), or None for local data."""
    files = spec.get("data_files")
    match = HUB_DATA_FILES.match(files) if isinstance(files, str) else None
    if match:
        return HubArtefact(match["repo"], match["revision"] or "main", "dataset", match["pattern"])
    path = spec["path"]
    if path not in PACKAGED_BUILDERS and is_hub_id(path):
        return HubArtefact(path, spec.get("revision") or "main", "dataset")
    return None


def model_artefacts(config: dict[str, Any], name: str, variant: str | None = None) -> list[HubArtefact]:
    """The hub revisions a job of this model reads: its tokenizer's (the model's revision) and, for
    a variant, that variant's weights (step0's own revision). None for local and embedded models."""
    model = config["models"][name]
    if model.get("embedded") or "hub_id" not in model:
        return []
    revisions = dict.fromkeys([model["revision"], *([revision_for(model, variant)] if variant else [])])
    return [HubArtefact(model["hub_id"], revision) for revision in revisions]


def llm_artefact(config: dict[str, Any]) -> HubArtefact | None:
    """The auto-interp LLM's weights, when it is served from a hub id rather than a directory."""
    settings = config.get("autointerp") or {}
    llm = settings.get("llm")
    if not llm or not set(SERVED) & set(settings["explainers"]) or not is_hub_id(llm["model"]):
        return None
    return HubArtefact(llm["model"], llm["revision"] or "main")


def study_artefacts(config: dict[str, Any]) -> dict[str, HubArtefact]:
    """Every hub artefact of the study by record name: models at each revision, datasets, the LLM."""
    artefacts = [
        artefact
        for name in config["models"]
        for variant in config["variants"]
        for artefact in model_artefacts(config, name, variant)
    ]
    artefacts += [hub_dataset(spec) for spec in config["datasets"].values() if isinstance(spec, dict)]
    artefacts.append(llm_artefact(config))
    return {artefact.name: artefact for artefact in artefacts if artefact is not None}

"""Publishing the study's SAEs to a Hugging Face Hub repository: every file in one commit, with a
model card made from their provenance.

The repository mirrors results/: each SAE's sparsify files (cfg.json, sae.safetensors and its
provenance.json) under `{model}/{variant}/x{expansion}-k{k}/layers.{layer}/`, which sparsify loads
with `SparseCoder.load_from_hub(repo, hookpoint=that path)`; its SAELens export, when asked, under
`saelens/` + the same path; the metrics table as metrics.csv; the card as README.md.

The write token comes from an environment variable and goes to huggingface_hub alone: no
artefact, log line or error message of saerand holds it. A missing token or repository name stops
publishing before any request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .autointerp.explainers import EXPLAINERS
from .plots import READING_NOTES, READINGS
from .study import SaeTarget
from .variant_registry import label

SPARSIFY_FILES = ("cfg.json", "sae.safetensors", "provenance.json")
SAELENS_DIR = "saelens"  # an SAE's SAELens export, beside its sae/ (and its folder in the repository)
METRICS_TABLE = "metrics.csv"
CARD = "README.md"
# A repository id as the hub takes it: owner/name.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TAGS = ("sparse-autoencoder", "sparsify", "saerand")


class PublishError(RuntimeError):
    """Publishing cannot start, or the hub refused it."""


class PublishedSae(NamedTuple):
    """One SAE to publish, and the explainers whose auto-interp summaries it has."""

    target: SaeTarget
    explainers: tuple[str, ...] = ()

    @property
    def repo_path(self) -> str:
        """Its folder in the repository: its folder under results/."""
        return self.target.directory.removeprefix("results/")


def hub_token(variable: str) -> str:
    """The write token in environment variable `variable`."""
    token = os.environ.get(variable, "").strip()
    if not token:
        raise PublishError(
            f"no hub token: the environment variable {variable} (config publish.token_env) is unset or empty. "
            "Export a token with write access to the repository there (https://huggingface.co/settings/tokens); "
            "saerand never writes it anywhere."
        )
    return token


def checked_repo_id(repo_id: str | None) -> str:
    if not repo_id or not REPO_ID.match(repo_id):
        raise PublishError(
            f"no hub repository to publish to (config publish.repo is {repo_id!r}): name one as owner/name, "
            "e.g. snakemake publish --config 'publish={repo: me/sae-random-transformers}'"
        )
    return repo_id


def repo_files(saes: Sequence[PublishedSae], metrics_table: str | Path, saelens: bool) -> dict[str, Path]:
    """Repository path -> local file of everything published but the card."""
    files = {}
    for sae in saes:
        directory = Path(sae.target.directory)
        for name in SPARSIFY_FILES:
            files[f"{sae.repo_path}/{name}"] = directory / "sae" / name
        if saelens:
            export = directory / SAELENS_DIR
            exported = sorted(path for path in export.rglob("*") if path.is_file())
            if not exported:
                raise FileNotFoundError(f"{export} holds no SAELens export of {sae.target}")
            for path in exported:
                files[f"{SAELENS_DIR}/{sae.repo_path}/{path.relative_to(export).as_posix()}"] = path
    files[METRICS_TABLE] = Path(metrics_table)
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"files to publish are missing: {missing}")
    return files


class Citation(NamedTuple):
    title: str
    bibtex: str
    arxiv: str | None


def citation(cff: str | Path) -> Citation:
    """CITATION.cff's preferred citation (the paper): its title, BibTeX and arXiv id if it has one."""
    paper = yaml.safe_load(Path(cff).read_text())["preferred-citation"]
    authors = [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    arxiv = next(
        (i["value"].removeprefix("arXiv:") for i in paper.get("identifiers", []) if i["value"].startswith("arXiv:")),
        None,
    )
    key = f"{paper['authors'][0]['family-names'].lower()}{paper['year']}{paper['title'].split()[0].lower()}"
    fields = {
        "title": paper["title"],
        "author": " and ".join(authors),
        "year": paper["year"],
        **({"journal": f"arXiv preprint arXiv:{arxiv}", "eprint": arxiv, "archivePrefix": "arXiv"} if arxiv else {}),
        **({"url": paper["url"]} if "url" in paper else {}),
    }
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items())
    return Citation(paper["title"], f"@{paper['type']}{{{key},\n{body}\n}}", arxiv)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _with_interval(record: Mapping[str, Any], name: str) -> str:
    """`name`'s value with its 95% interval where the record has one."""
    value = record.get(name)
    if value is None:
        return "–"
    low, high = record.get(f"{name}_low"), record.get(f"{name}_high")
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def sae_row(sae: PublishedSae, reading: str, explainers: Sequence[str]) -> dict[str, str]:
    """The card's row of one SAE: what it was trained on, and its metrics with their intervals."""
    directory = Path(sae.target.directory)
    trained = _read(directory / "sae" / "provenance.json")
    evaluated = _read(directory / "metrics.json")
    variant = evaluated["variant_record"]
    revision = variant["revision"] + (f" ({variant['commit'][:10]})" if variant.get("commit") else "")
    row = {
        "model": sae.target.model,
        "revision": revision,
        "variant": sae.target.variant,
        "layer": str(sae.target.layer),
        "expansion": str(sae.target.expansion_factor),
        "k": str(sae.target.k),
        "tokens": f"{trained['training']['tokens']:,}",
        "lr": f"{trained['training']['lr']:.2e}",
        **{metric: _with_interval(evaluated["metrics"], column) for metric, column in READINGS[reading].items()},
    }
    for explainer in explainers:
        path = directory / "autointerp" / explainer / "summary.json"
        row[f"fuzz_auroc_{explainer}"] = (
            _with_interval(_read(path), "fuzz_auroc") if explainer in sae.explainers else "–"
        )
    return row


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _shared_settings(saes: Sequence[PublishedSae]) -> dict[str, Any]:
    """The SAE training settings every SAE shares (each one's provenance.json has them all)."""
    settings = [_read(Path(sae.target.directory) / "sae" / "provenance.json")["sae_config"] for sae in saes]
    return {
        key: value
        for key, value in sorted(settings[0].items())
        if key not in ("expansion_factor", "k") and all(s.get(key) == value for s in settings)
    }


def base_models(saes: Sequence[PublishedSae]) -> dict[str, str | None]:
    """Each model's hub id (None: not a hub model, e.g. the embedded one), from its SAEs' held-out caches."""
    models = {}
    for sae in saes:
        config = _read(Path(sae.target.directory) / "metrics.json")["eval_cache"]["model_config"]
        models[sae.target.model] = config.get("hub_id")
    return models


def model_card(
    saes: Sequence[PublishedSae],
    repo_id: str,
    reading: str,
    explainers: Sequence[str],
    citation_file: str | Path,
    saelens: bool = False,
) -> str:
    """The repository's README.md: hub metadata, then every SAE's provenance and metrics, and the paper."""
    from huggingface_hub import ModelCardData

    if not saes:
        raise PublishError("no SAEs to publish")
    paper = citation(citation_file)
    models = base_models(saes)
    hub_models = sorted({hub_id for hub_id in models.values() if hub_id})
    metadata = ModelCardData(
        library_name="sparsify",
        tags=[*TAGS, *(["saelens"] if saelens else []), *([f"arxiv:{paper.arxiv}"] if paper.arxiv else [])],
        base_model=hub_models or None,
    )
    columns = {
        "model": "Model",
        "revision": "Revision",
        "variant": "Variant",
        "layer": "Layer",
        "expansion": "Expansion",
        "k": "k",
        "tokens": "Tokens trained",
        "lr": "Learning rate",
        "explained_variance": f"Explained variance ({READING_NOTES[reading]})",
        "cosine_similarity": f"Cosine similarity ({READING_NOTES[reading]})",
        **{f"fuzz_auroc_{e}": f"Fuzzing AUROC ({e} explainer)" for e in explainers},
    }
    rows = [sae_row(sae, reading, explainers) for sae in saes]
    example = saes[0]
    model_lines = [
        f"- `{name}`: " + (f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else "built by the workflow")
        for name, hub_id in sorted(models.items())
    ]
    variants = sorted({sae.target.variant for sae in saes})
    settings = yaml.safe_dump(_shared_settings(saes), sort_keys=True).strip()
    sections = [
        "# Sparse autoencoders on trained and randomly initialised transformers",
        (
            f"{len(saes)} top-k sparse autoencoders (SAEs) on the residual stream of transformers, made with "
            f'saerand to reproduce "{paper.title}" (Heap et al. 2025). The transformers\' variants: '
            + ", ".join(f"`{v}` ({label(v)})" for v in variants)
            + "."
        ),
        "## Models\n\n" + "\n".join(model_lines),
        "## Loading",
        (
            "Each SAE's folder is named `{model}/{variant}/x{expansion}-k{k}/layers.{layer}` and holds "
            "sparsify's `cfg.json` and `sae.safetensors` and the SAE's `provenance.json` (its training "
            "settings, seed, tokens and activation cache):\n\n"
            "```python\nfrom sparsify import SparseCoder\n\n"
            f'sae = SparseCoder.load_from_hub("{repo_id}", hookpoint="{example.repo_path}")\n```'
        )
        + (f"\n\nThe same SAEs in SAELens's format are under `{SAELENS_DIR}/` + the same folder." if saelens else ""),
        "## Metrics",
        (
            f"On held-out text; `{METRICS_TABLE}` has every metric of every SAE. Explained variance and cosine "
            f"similarity are the {READING_NOTES[reading]} reading, with 95% bootstrap intervals over held-out "
            "sequences in brackets"
            + (
                "; the fuzzing AUROC is the mean over sampled latents, with 95% bootstrap intervals over latents "
                f"({'; '.join(f'explainer `{e}`: {EXPLAINERS[e].description}' for e in explainers)})."
                if explainers
                else "."
            )
        ),
        _markdown_table(list(columns.values()), [[row[key] for key in columns] for row in rows]),
        "## Training settings shared by every SAE\n\n```yaml\n" + settings + "\n```",
        "## Citation\n\nIf you use these SAEs, please cite the paper they reproduce:\n\n```bibtex\n"
        + paper.bibtex
        + "\n```",
    ]
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def publish(
    repo_id: str,
    files: Mapping[str, str | Path],
    card: str,
    token: str,
    *,
    endpoint: str | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """Upload `files` (repository path -> local file) and the card as README.md to the model repository
    `repo_id`, created if it does not exist (`private` applies only then), in one commit; returns
    the receipt: where, which commit, and each file's size and sha256. `endpoint`: another hub than
    HF_ENDPOINT's."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint, token=token)
    operations = [CommitOperationAdd(path, str(local)) for path, local in sorted(files.items())]
    operations.append(CommitOperationAdd(CARD, card.encode()))
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations, commit_message=f"saerand: {len(operations)} files, the SAEs, metrics and card"
        )
    except HfHubHTTPError as error:
        status = error.response.status_code
        if status not in (401, 403):
            raise
        # Only the status and the hub's words: the request behind the error carries the token.
        raise PublishError(
            f"the hub at {api.endpoint} refused the write token (HTTP {status}: {error.server_message}): check "
            f"that it is valid and may write to {repo_id}"
        ) from None
    return {
        "repo_id": repo_id,
        "endpoint": api.endpoint,
        "repo_url": str(repo_url),
        "private": private,
        "commit": commit.oid,
        "commit_url": commit.commit_url,
        "files": [
            {"path": op.path_in_repo, "bytes": op.upload_info.size, "sha256": op.upload_info.sha256.hex()}
            for op in operations
        ],
    }

"""What the study takes from the network: fetched once where the network is, verified, and read
offline by every other job.

Snakemake's local rules (workflow/rules/prefetch.smk), which run where Snakemake itself runs (the
login node of a cluster), fetch each hub model at each revision the study uses, the hub datasets,
the auto-interp LLM's weights and GloVe. Hub artefacts go into one cache directory laid out as an
HF_HOME; each gets a completion record, written last, which is the input of every job that reads it.
Every other job runs with the hub offline (`job_environment`) and resolves what it reads to the
cached copy (`cached_snapshot`); a missing one is a MissingDownload naming the rule that fetches it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .atomic import atomic_file, write_json
from .config import revision_for
from .costs import MODEL_BYTES, PYTHIA_VOCAB, ModelSize
from .provenance import provenance

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
RECORDS = "saerand-fetched"  # under HF_HOME: one completion record per artefact
# A hub repository id (owner/name); hf:// data files of a hub dataset, optionally at a revision.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_DATA_FILES = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<pattern>.+)$")
# `datasets`' packaged builders: a dataset path that names one reads data_files, not a repository.
PACKAGED_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas", "xml", "sql", "webdataset"})
# What from_pretrained and vLLM read of a model repository: configs, tokenizer, one copy of the weights.
MODEL_FILES = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "tokenizer*")
CHUNK_BYTES = 1 << 20


class MissingDownload(FileNotFoundError):
    """A job needs something from the network that is not in the download cache."""


class CorruptDownload(OSError):
    """Downloaded bytes differ from the checksum they were published with."""


@dataclass(frozen=True)
class HubArtefact:
    repo_id: str
    revision: str
    repo_type: str = "model"  # or "dataset"
    pattern: str | None = None  # a dataset's data files; None: the repository's (a model's: MODEL_FILES)
    download_bytes: float | None = None  # the planner's estimate

    @property
    def name(self) -> str:
        """Its record's file name: models--EleutherAI--pythia-70m@step0."""
        revision = urllib.parse.quote(self.revision, safe="")
        return f"{self.repo_type}s--{self.repo_id.replace('/', '--')}@{revision}"

    def describe(self) -> str:
        return f"{self.repo_type} {self.repo_id}@{self.revision}" + (f" ({self.pattern})" if self.pattern else "")


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


def is_hub_id(location: str) -> bool:
    """A hub repository id rather than a directory on disk."""
    return not Path(location).exists() and bool(REPO_ID.match(location))


def hub_dataset(spec: dict[str, Any]) -> HubArtefact | None:
    """The hub repository a `datasets` spec reads (hf:// data files, or a repository id as its
    path), or None for local data."""
    files = spec.get("data_files")
    match = HUB_DATA_FILES.match(files) if isinstance(files, str) else None
    if match:
        return HubArtefact(
            match["repo"], match["revision"] or "main", "dataset", match["pattern"], spec.get("download_bytes")
        )
    path = spec["path"]
    if path not in PACKAGED_BUILDERS and is_hub_id(path):
        return HubArtefact(path, spec.get("revision") or "main", "dataset", None, spec.get("download_bytes"))
    return None


def model_artefacts(config: dict[str, Any], name: str, variant: str | None = None) -> list[HubArtefact]:
    """The hub revisions a job of this model reads: its tokenizer's (the model's revision) and, for
    a variant, that variant's weights (step0's own revision). None for local and embedded models."""
    model = config["models"][name]
    if model.get("embedded") or "hub_id" not in model:
        return []
    revisions = dict.fromkeys([model["revision"], *([revision_for(model, variant)] if variant else [])])
    checkpoint = ModelSize(model["n_layers"], model["d_model"], PYTHIA_VOCAB, "float16")  # as Pythia stores them
    size = MODEL_BYTES[checkpoint.dtype] * checkpoint.params()
    return [HubArtefact(model["hub_id"], revision, "model", None, size) for revision in revisions]


def llm_artefact(config: dict[str, Any]) -> HubArtefact | None:
    """The auto-interp LLM's weights, when it is served from a hub id rather than a directory."""
    settings = config.get("autointerp") or {}
    llm = settings.get("llm")
    if not llm or "llm" not in settings["explainers"] or not is_hub_id(llm["model"]):
        return None
    return HubArtefact(llm["model"], llm["revision"] or "main", "model", None, llm["weights_bytes"])


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


# --- Offline: what jobs read ------------------------------------------------------------------


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


# --- Online: the fetch rules -----------------------------------------------------------------


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    return _file_digest(path, digest)


def _file_digest(path: Path, digest) -> str:
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_snapshot(snapshot: Path) -> dict[str, dict[str, Any]]:
    """Check every file of a hub snapshot against the etag it was published with (the sha256 of a
    large file, the git blob id of a small one: the blob's name in the cache). A file that differs
    is deleted, so the next attempt downloads it again, and CorruptDownload names it."""
    files, corrupt = {}, []
    for link in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = link.resolve()
        etag = blob.name
        if len(etag) == 64:
            found = _file_digest(blob, hashlib.sha256())
        elif len(etag) == 40:
            found = _git_blob_sha1(blob)
        else:
            found = etag  # no checksum published for it
        name = str(link.relative_to(snapshot))
        if found != etag:
            corrupt.append(name)
            blob.unlink()
            link.unlink()
        files[name] = {"bytes": blob.stat().st_size if blob.exists() else 0, "etag": etag}
    if corrupt:
        raise CorruptDownload(f"{snapshot}: {', '.join(corrupt)} did not match its published checksum")
    return files


def _allow_patterns(artefact: HubArtefact, api) -> list[str] | None:
    if artefact.repo_type == "dataset":
        return [artefact.pattern] if artefact.pattern else None
    listed = api.list_repo_files(artefact.repo_id, revision=artefact.revision, repo_type="model")
    # safetensors where the revision has them (Pythia's main), pickled weights otherwise (its step0).
    weights = "*.safetensors" if any(name.endswith(".safetensors") for name in listed) else "*.bin"
    return [*MODEL_FILES, weights]


def _retrying(what: str, attempts: int, step):
    """step() up to `attempts` times; errors that no retry can fix (no such repository, revision
    or access) are raised at once."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    for attempt in range(1, attempts + 1):
        try:
            return step()
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError):
            raise
        except Exception as err:  # network errors, truncated or corrupt downloads
            if attempt == attempts:
                raise RuntimeError(f"fetching {what} failed on all {attempts} attempts; the last error: {err}") from err
            log.warning("fetching %s, attempt %d of %d failed: %s", what, attempt, attempts, err)
            time.sleep(min(2 ** (attempt - 1), 30))
    raise AssertionError


def fetch_hub(
    artefact: HubArtefact, hf_home: str | Path, attempts: int = 3, endpoint: str | None = None
) -> dict[str, Any]:
    """Download a hub artefact into hf_home's hub cache, verify it, and write its record last
    (`endpoint`: another hub than HF_ENDPOINT's)."""
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint)
    cache = Path(hf_home) / "hub"

    def step():
        patterns = _allow_patterns(artefact, api)
        snapshot = Path(
            snapshot_download(
                artefact.repo_id,
                repo_type=artefact.repo_type,
                revision=artefact.revision,
                cache_dir=cache,
                allow_patterns=patterns,
                endpoint=endpoint,
            )
        )
        if not any(snapshot.rglob("*")):
            raise FileNotFoundError(f"{artefact.describe()} has no files matching {patterns}")
        return snapshot, patterns, verify_snapshot(snapshot)

    snapshot, patterns, files = _retrying(artefact.describe(), attempts, step)
    record = provenance(
        **asdict(artefact),
        commit=snapshot.name,
        patterns=patterns,
        files=files,
        bytes=sum(f["bytes"] for f in files.values()),
    )
    write_json(record_path(hf_home, artefact.name), record)
    return record


def _download(url: str, path: Path, algorithm: str, timeout: float) -> str:
    """Stream `url` into `path`, returning the content's digest; a short read is an error."""
    digest = hashlib.new(algorithm, usedforsecurity=False)  # an integrity check (md5 is what GloVe publishes)
    with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as out:
        total = response.headers.get("Content-Length")
        total = int(total) if total else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(urllib.parse.urlparse(url).path).name) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def fetch_archive(
    urls: list[str], checksum: str, files: dict[str | Path, str], attempts: int = 3, timeout: float = 60
) -> dict[str, Any]:
    """Download a zip (mirrors tried in turn), verify its checksum ("md5:<hex>" or "sha256:<hex>"),
    extract `files` (destination: name in the zip) and remove the zip. A destination appears only
    once complete; a failed or corrupt download leaves neither it nor the zip behind."""
    algorithm, expected = checksum.split(":", 1)
    destinations = {Path(path): member for path, member in files.items()}
    archive_name = Path(urllib.parse.urlparse(urls[0]).path).name
    folder = next(iter(destinations)).parent
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f".{archive_name}.partial-{os.getpid()}"
    used: list[str] = []

    def step():
        url = urls[len(used) % len(urls)]
        used.append(url)
        try:
            found = _download(url, archive, algorithm, timeout)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            raise OSError(f"{url}: {err!r}") from err
        if found != expected.lower():
            raise CorruptDownload(f"{url}: {algorithm} {found}, expected {expected}")
        return url

    try:
        url = _retrying(archive_name, attempts, step)
        with zipfile.ZipFile(archive) as zipped:
            absent = sorted(set(destinations.values()) - set(zipped.namelist()))
            if absent:
                raise FileNotFoundError(
                    f"{archive_name} from {url} has no {', '.join(absent)} (it holds {', '.join(zipped.namelist())})"
                )
            for destination, member in destinations.items():
                # zipfile checks each member's CRC as it is read.
                with atomic_file(destination) as staging, zipped.open(member) as source, staging.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
    finally:
        archive.unlink(missing_ok=True)
    return provenance(
        url=url,
        checksum=checksum,
        attempts=len(used),
        files={str(path): member for path, member in destinations.items()},
    )

"""The fetch rules' work (saerand.fetch): download, verify against published checksums, and record
last; the only code that goes online."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..atomic import atomic_file, write_json
from ..provenance import provenance
from .artefacts import HubArtefact
from .offline import record_path

log = logging.getLogger(__name__)

# What from_pretrained and vLLM read of a model repository: configs, tokenizer, one copy of the weights.
MODEL_FILES = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "tokenizer*")
CHUNK_BYTES = 1 << 20


class CorruptDownload(OSError):
    """Downloaded bytes differ from the checksum they were published with."""


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

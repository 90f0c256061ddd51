"""saerand.fetch against a hub and a download site on 127.0.0.1 (tests/hub_double.py): artefacts
are fetched, verified against their checksums, retried when corrupt or cut off, and read offline."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch

from saerand.fetch.artefacts import HubArtefact, hub_dataset, study_artefacts
from saerand.fetch.download import fetch_archive, fetch_hub
from saerand.fetch.offline import MissingDownload, cached_snapshot, job_environment, local_dataset_spec, record_path
from saerand.models import load_causal_lm, load_tokenizer

from .conftest import dataset_spec
from .hub_double import HubDouble

REPO_ID = "owner/tiny-neox"


@pytest.fixture()
def hub(tmp_path):
    with HubDouble(tmp_path / "hub-site") as double:
        yield double


@pytest.fixture()
def published(hub, model_dir, tiny_neox_config):
    """The tiny model as a hub repository: main with safetensors, step0 with pickled weights only."""
    from transformers import GPTNeoXForCausalLM

    main = Path(model_dir["location"]) / "main"
    hub.add_repo("model", REPO_ID, "main", main)
    step0 = hub.add_repo("model", REPO_ID, "step0", main)
    (step0 / "model.safetensors").unlink()
    torch.manual_seed(1)
    torch.save(GPTNeoXForCausalLM(tiny_neox_config).state_dict(), step0 / "pytorch_model.bin")
    return hub


def test_a_model_is_fetched_at_each_revision_and_loads_with_the_network_cut(published, tmp_path, monkeypatch):
    home = tmp_path / "hf"
    records = {
        revision: fetch_hub(HubArtefact(REPO_ID, revision), home, endpoint=published.url)
        for revision in ("main", "step0")
    }
    # One copy of the weights per revision: safetensors where published, pickled weights otherwise.
    assert "model.safetensors" in records["main"]["files"] and "pytorch_model.bin" not in records["main"]["files"]
    assert "pytorch_model.bin" in records["step0"]["files"]
    for revision, record in records.items():
        written = json.loads(record_path(home, HubArtefact(REPO_ID, revision).name).read_text())
        assert written["commit"] == record["commit"] and written["bytes"] > 10_000 and "versions" in written
    published.stop()
    monkeypatch.setenv("HF_HOME", str(home))
    main = load_causal_lm(REPO_ID, "main", n_layers=3)
    step0 = load_causal_lm(REPO_ID, "step0", n_layers=3)
    assert not torch.equal(main.gpt_neox.embed_in.weight, step0.gpt_neox.embed_in.weight)
    assert len(load_tokenizer(REPO_ID, "main")) == 512


def test_a_corrupt_download_is_detected_deleted_and_fetched_again(published, tmp_path):
    published.corrupt = 1
    record = fetch_hub(HubArtefact(REPO_ID, "main"), tmp_path / "hf", endpoint=published.url)
    snapshot = cached_snapshot(HubArtefact(REPO_ID, "main"), tmp_path / "hf")
    for name, entry in record["files"].items():
        data = (snapshot / name).read_bytes()
        assert entry["etag"] in (
            hashlib.sha256(data).hexdigest(),
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        )
    assert published.corrupt == 0


def test_a_cut_off_download_is_fetched_again(published, tmp_path):
    published.truncate = 2
    record = fetch_hub(HubArtefact(REPO_ID, "step0"), tmp_path / "hf", endpoint=published.url)
    snapshot = cached_snapshot(HubArtefact(REPO_ID, "step0"), tmp_path / "hf")
    assert (
        published.truncate == 0
        and record["files"]["pytorch_model.bin"]["bytes"] == (snapshot / "pytorch_model.bin").stat().st_size > 10_000
    )


def test_a_download_that_stays_corrupt_fails_and_leaves_no_record(published, tmp_path):
    published.corrupt = 100
    with pytest.raises(RuntimeError, match="failed on all 2 attempts.*did not match its published checksum"):
        fetch_hub(HubArtefact(REPO_ID, "main"), tmp_path / "hf", attempts=2, endpoint=published.url)
    assert not record_path(tmp_path / "hf", HubArtefact(REPO_ID, "main").name).exists()
    with pytest.raises(MissingDownload):
        cached_snapshot(HubArtefact(REPO_ID, "main"), tmp_path / "hf")


def test_an_unknown_revision_fails_at_once(published, tmp_path):
    from huggingface_hub.errors import RevisionNotFoundError

    with pytest.raises(RevisionNotFoundError):
        fetch_hub(HubArtefact(REPO_ID, "step9"), tmp_path / "hf", attempts=5, endpoint=published.url)
    assert [path for _, path in published.requests].count(f"/api/models/{REPO_ID}/tree/step9") <= 1


def test_a_job_reading_what_was_not_fetched_names_the_fetch_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        MissingDownload,
        match=r"not in the download cache.*--forcerun .*models--owner--tiny-neox@step0\.json \(rule fetch_hub\)",
    ):
        load_causal_lm(REPO_ID, "step0", n_layers=3)


def test_a_purged_file_of_a_fetched_model_is_named(published, tmp_path):
    fetch_hub(HubArtefact(REPO_ID, "main"), tmp_path / "hf", endpoint=published.url)
    snapshot = cached_snapshot(HubArtefact(REPO_ID, "main"), tmp_path / "hf")
    (snapshot / "model.safetensors").resolve().unlink()
    with pytest.raises(MissingDownload, match=r"incomplete.*model\.safetensors.*--forcerun"):
        cached_snapshot(HubArtefact(REPO_ID, "main"), tmp_path / "hf")


def test_hub_data_files_are_read_from_their_fetched_copy(hub, tmp_path, monkeypatch):
    from saerand.data import load_text_dataset

    data = tmp_path / "data"
    data.mkdir()
    for source in ("arxiv", "book"):
        (data / f"{source}.jsonl").write_text("".join(json.dumps({"text": f"{source} {i}"}) + "\n" for i in range(3)))
    (data / "README.md").write_text("not data\n")
    hub.add_repo("dataset", "owner/sample", "main", data)
    spec = dataset_spec(path="json", data_files="hf://datasets/owner/sample/*.jsonl", split="train")
    artefact = hub_dataset(spec)
    assert (artefact.repo_type, artefact.repo_id, artefact.revision, artefact.pattern) == (
        "dataset",
        "owner/sample",
        "main",
        "*.jsonl",
    )
    record = fetch_hub(artefact, tmp_path / "hf", endpoint=hub.url)
    assert set(record["files"]) == {"arxiv.jsonl", "book.jsonl"}
    hub.stop()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert local_dataset_spec(spec)["data_files"] == f"{cached_snapshot(artefact)}/*.jsonl"
    assert sorted(load_text_dataset(spec)["text"]) == sorted(f"{s} {i}" for s in ("arxiv", "book") for i in range(3))


def test_local_data_and_models_need_no_fetch(tmp_path):
    assert hub_dataset({"path": "text", "data_files": "resources/corpus/train.txt", "split": "train"}) is None
    assert hub_dataset({"path": "EleutherAI/rpj-v2-sample", "split": "train"}).pattern is None
    config = {
        "models": {
            "local": {
                "path": str(tmp_path),
                "n_layers": 2,
                "d_model": 8,
                "revision": "main",
                "step0_revision": "step0",
            },
            "pythia": {
                "hub_id": "EleutherAI/pythia-70m",
                "n_layers": 6,
                "d_model": 512,
                "revision": "main",
                "step0_revision": "step0",
            },
        },
        "variants": ["trained", "step0"],
        "datasets": {"train": {"path": "text", "data_files": "x.txt", "split": "train"}, "shuffle_seed": 42},
    }
    artefacts = study_artefacts(config)
    assert sorted(artefacts) == ["models--EleutherAI--pythia-70m@main", "models--EleutherAI--pythia-70m@step0"]


def test_jobs_read_the_hub_offline_from_one_cache(tmp_path):
    env = job_environment("cache")
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HF_HUB_CACHE"] == str(Path(env["HF_HOME"]) / "hub") and Path(env["HF_HOME"]).is_absolute()
    assert job_environment("cache", online=True)["HF_HUB_OFFLINE"] == "0"


# --- GloVe's zip from a download site ----------------------------------------------------------


@pytest.fixture()
def site_zip(hub):
    """A small glove.6B.zip on the download site, and its sha256."""
    archive = hub.root / "files" / "glove.6B.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("glove.6B.50d.txt", "the 0.1 0.2\nof 0.3 0.4\n")
        zipped.writestr("glove.6B.300d.txt", "the 1 2 3\n")
    return hub, "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()


def test_an_archive_is_verified_unzipped_and_removed(site_zip, tmp_path):
    hub, checksum = site_zip
    hub.corrupt, hub.truncate = 1, 1  # the first attempt gets wrong bytes, the second half of them
    target = tmp_path / "glove" / "glove.6B.50d.txt"
    record = fetch_archive([f"{hub.url}/files/glove.6B.zip"], checksum, {target: "glove.6B.50d.txt"}, attempts=3)
    assert target.read_text() == "the 0.1 0.2\nof 0.3 0.4\n" and record["attempts"] == 3
    assert sorted(p.name for p in target.parent.iterdir()) == ["glove.6B.50d.txt"]  # no zip, nothing partial


def test_a_failing_archive_leaves_nothing_that_looks_complete(site_zip, tmp_path):
    hub, checksum = site_zip
    hub.truncate = 10
    target = tmp_path / "glove" / "glove.6B.50d.txt"
    with pytest.raises(RuntimeError, match="failed on all 2 attempts.*IncompleteRead"):
        fetch_archive([f"{hub.url}/files/glove.6B.zip"], checksum, {target: "glove.6B.50d.txt"}, attempts=2)
    assert list(target.parent.iterdir()) == []
    hub.truncate = 0
    with pytest.raises(RuntimeError, match=r"md5 [0-9a-f]{32}, expected 0+"):
        fetch_archive([f"{hub.url}/files/glove.6B.zip"], "md5:" + "0" * 32, {target: "glove.6B.50d.txt"}, attempts=1)
    with pytest.raises(FileNotFoundError, match="has no glove.6B.100d.txt"):
        fetch_archive([f"{hub.url}/files/glove.6B.zip"], checksum, {target: "glove.6B.100d.txt"}, attempts=1)
    assert list(target.parent.iterdir()) == []


def test_mirrors_are_tried_in_turn(site_zip, tmp_path):
    hub, checksum = site_zip
    target = tmp_path / "glove.6B.300d.txt"
    record = fetch_archive(
        [f"{hub.url}/files/moved.zip", f"{hub.url}/files/glove.6B.zip"],
        checksum,
        {target: "glove.6B.300d.txt"},
        attempts=2,
    )
    assert record["url"].endswith("/files/glove.6B.zip") and target.read_text() == "the 1 2 3\n"


# --- The prefetch rules and offline jobs of the real workflow -----------------------------------


def test_the_workflow_fetches_once_and_its_jobs_run_with_the_network_cut(published, tmp_path, pydoc_text_file):
    """`snakemake prefetch` fetches the model at both revisions, the hub's JSON-lines data and GloVe's
    zip (unzipped, removed); with the hub gone, tokenization and step0's caching (weights at step0, tokenizer at main) still run."""
    import os
    import subprocess

    import yaml

    from saerand.cache import ActivationCache

    from .workflow_runs import MINI, SNAKEMAKE

    data = tmp_path / "text"
    data.mkdir()
    paragraphs = pydoc_text_file.read_text().split("\n\n")
    (data / "part-0.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    published.add_repo("dataset", "owner/text", "main", data)
    config = yaml.safe_load(MINI.read_text())
    for section in ("embedded_model", "sweep", "autointerp", "toy"):
        config.pop(section)
    archive = published.root / "files" / "glove.6B.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("glove.6B.50d.txt", "the 0.1 0.2\n")
    config.update(
        models={"hub-neox": {"hub_id": REPO_ID, "n_layers": 3, "d_model": 64, "layers": [1]}},
        variants=["trained", "step0"],
        datasets={"train": {"path": "json", "data_files": "hf://datasets/owner/text/*.jsonl", "split": "train"}},
        toy={"word_vectors": {"glove": {"glove-50d": "resources/glove/glove.6B.50d.txt"}}},
        prefetch={
            "glove": {
                "urls": [f"{published.url}/files/glove.6B.zip"],
                "checksum": "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest(),
            }
        },
    )
    workdir = tmp_path / "study"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_ENDPOINT": published.url, "HF_HUB_DISABLE_TELEMETRY": "1"}

    def run(*targets):
        return subprocess.run(
            [*SNAKEMAKE, *targets, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    fetch = run("prefetch")
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    records = sorted(p.name for p in (workdir / "resources" / "huggingface" / "saerand-fetched").iterdir())
    assert records == [
        "datasets--owner--text@main.json",
        "glove.6B.zip.json",
        "models--owner--tiny-neox@main.json",
        "models--owner--tiny-neox@step0.json",
    ]
    assert sorted(p.name for p in (workdir / "resources" / "glove").iterdir()) == ["glove.6B.50d.txt"]
    published.stop()
    offline = run("results/hub-neox/step0/cache/eval.zarr")
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert "rule fetch_hub" not in offline.stderr
    store = ActivationCache(workdir / "results" / "hub-neox" / "step0" / "cache" / "eval.zarr")
    assert store.layers == [1] and store.n_tokens == 2048
    # Provenance names the commit the revision was read at.
    step0 = json.loads(
        (workdir / "resources/huggingface/saerand-fetched/models--owner--tiny-neox@step0.json").read_text()
    )
    assert json.dumps(store.attrs).count(step0["commit"]) >= 1

"""saerand.publish against the hub double (tests/hub_double.py): real SAE directories (trained,
saved, evaluated, auto-interpreted by the null explainer, exported to SAELens) go to the hub in one
commit and download back byte for byte; the card holds their numbers; a wrong or missing token
stops it cleanly, and the token is in no file written. Then the rule: `snakemake publish` on the
finished mini study, and never by default."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
from sparsify import SparseCoder

from saerand.aggregate import metrics_table
from saerand.atomic import write_json, write_text
from saerand.autointerp import run
from saerand.cache import ActivationCache, write_activation_cache
from saerand.dag import planned_jobs
from saerand.metrics import evaluate_sae
from saerand.provenance import provenance
from saerand.publish import (
    PublishedSae,
    PublishError,
    checked_repo_id,
    hub_token,
    model_card,
    publish,
    repo_files,
)
from saerand.sae_training import save_sae, train_sae
from saerand.saelens_export import export_saelens
from saerand.settings import SaeSettings, section_settings
from saerand.study import SaeTarget
from saerand.variants import SubjectModel

from .conftest import NO_SLURM_CONF
from .hub_double import HubDouble
from .test_autointerp_scoring import SETTINGS as AUTOINTERP_SETTINGS
from .workflow_runs import MINI, REPO, SNAKEMAKE

CITATION = REPO / "CITATION.cff"
HUB_REPO = "owner/sae-random-transformers"
MODEL = "tiny-neox"
MODEL_CONFIG = {"hub_id": "owner/tiny-neox", "revision": "main", "step0_revision": "step0", "n_layers": 2}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Two layers at the study's point, one at another (a sweep's); the first auto-interpreted.
TARGETS = [
    SaeTarget(MODEL, "trained", 1, 4, 4),
    SaeTarget(MODEL, "trained", 0, 4, 4),
    SaeTarget(MODEL, "trained", 1, 2, 4),
]


def a_token() -> str:
    return f"hf_{secrets.token_hex(16)}"


@pytest.fixture()
def study(tmp_path, monkeypatch, tiny_neox, token_ids, raw_dir, model_dir) -> list[PublishedSae]:
    """Each SAE as the workflow leaves it under results/, and results/metrics.csv, in a study
    directory that is the working directory."""
    work = tmp_path / "study"
    work.mkdir()
    monkeypatch.chdir(work)
    attrs = provenance(model=MODEL, model_config=MODEL_CONFIG, variant="trained", revision="main", commit=COMMIT)
    write_activation_cache(
        "cache.zarr",
        SubjectModel(tiny_neox, "trained"),
        token_ids,
        [0, 1],
        batch_sequences=8,
        dtype="float32",
        chunk_rows=100,
        attrs=attrs,
    )
    cache = ActivationCache("cache.zarr")
    saes = []
    for index, target in enumerate(TARGETS):
        directory = Path(target.directory)
        settings = section_settings(
            SaeSettings,
            "sae",
            expansion_factor=target.expansion_factor,
            k=target.k,
            batch_size=4,
            optimizer="signum",
            device="cpu",
        )
        sae, summary = train_sae(cache, target.layer, settings, context_length=32)
        sae_provenance = provenance(
            model=MODEL,
            variant="trained",
            layer=target.layer,
            sae_config=dataclasses.asdict(settings),
            seed=settings.seed,
            training=summary,
            cache=cache.attrs,
        )
        save_sae(sae, directory / "sae", sae_provenance)
        metrics, _ = evaluate_sae(sae, cache, target.layer, batch_rows=100, special_token_ids=[0], resamples=50)
        sae_record = {"num_latents": sae.num_latents, "expansion_factor": target.expansion_factor, "k": target.k}
        write_json(
            directory / "metrics.json",
            provenance(
                model=MODEL,
                variant="trained",
                layer=target.layer,
                metrics=metrics,
                sae=sae_record | {"d_in": sae.d_in},
                sae_provenance=sae_provenance,
                eval_cache=cache.attrs,
                variant_record={"variant": "trained", "revision": "main", "seed": 0, "commit": COMMIT},
            ),
        )
        export_saelens(directory / "sae", directory / "saelens", sae_provenance, model_name="tiny", context_size=32)
        explainers = ("tokens",) if index == 0 else ()
        for explainer in explainers:
            run.score_sae(
                raw_dir, "layers.0", model_dir, AUTOINTERP_SETTINGS, directory / "autointerp" / explainer, explainer
            )
        saes.append(PublishedSae(target, explainers))
    table = metrics_table([f"{target.directory}/metrics.json" for target in TARGETS])
    write_text("results/metrics.csv", table.to_csv(index=False))
    return saes


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The hub double, with its write token; the client uploads over LFS, the double's protocol."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with HubDouble(tmp_path / "hub", token=a_token()) as double:
        yield double


def _card(study, saelens=True) -> str:
    return model_card(study, HUB_REPO, "masked_per_token", ["tokens"], CITATION, saelens=saelens)


def test_the_saes_table_and_card_go_up_in_one_commit_and_download_back_byte_for_byte(study, hub, tmp_path):
    files = repo_files(study, "results/metrics.csv", saelens=True)
    card = _card(study)
    receipt = publish(HUB_REPO, files, card, hub.token, endpoint=hub.url, private=True)

    assert len(hub.commits) == 1 and hub.commits[0]["files"] == sorted([*files, "README.md"])
    assert hub.private[("model", HUB_REPO)] and receipt["private"]
    with pytest.raises(RepositoryNotFoundError):  # private: not there for anyone without the token
        snapshot_download(HUB_REPO, endpoint=hub.url, cache_dir=tmp_path / "anonymous", token=False)
    snapshot = Path(snapshot_download(HUB_REPO, endpoint=hub.url, cache_dir=tmp_path / "downloads", token=hub.token))
    downloaded = {path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file()}
    assert downloaded == {*files, "README.md"}
    for path, local in files.items():
        assert (snapshot / path).read_bytes() == Path(local).read_bytes(), path
    assert (snapshot / "README.md").read_text() == card
    # Each SAE where sparsify's load_from_hub looks for it (hookpoint: its folder), and its SAELens export.
    for sae in study:
        assert {"cfg.json", "sae.safetensors", "provenance.json"} <= {
            p.name for p in (snapshot / sae.repo_path).iterdir()
        }
        loaded = SparseCoder.load_from_disk(snapshot / sae.repo_path)
        original = SparseCoder.load_from_disk(Path(sae.target.directory) / "sae")
        assert loaded.cfg.k == sae.target.k and (loaded.W_dec == original.W_dec).all()
        assert (snapshot / "saelens" / sae.repo_path / "sae_weights.safetensors").is_file()
    assert sorted(f["path"] for f in receipt["files"]) == sorted([*files, "README.md"])
    for entry in receipt["files"]:
        data = (snapshot / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert receipt["commit"] in receipt["commit_url"] and receipt["repo_id"] == HUB_REPO
    assert hub.token not in json.dumps(receipt)
    # The SAE weights went up over LFS (upload, verify), the small files inline in the commit.
    assert (
        "PUT",
        "/lfs-objects/" + hashlib.sha256(Path(files[f"{study[0].repo_path}/sae.safetensors"]).read_bytes()).hexdigest(),
    ) in hub.requests


def test_the_card_holds_each_saes_provenance_metrics_and_the_paper(study):
    card = _card(study)
    metadata = ModelCard(card).data
    assert metadata.library_name == "sparsify" and metadata.base_model == ["owner/tiny-neox"]
    assert {"sparse-autoencoder", "sparsify", "saerand", "saelens", "arxiv:2501.17727"} <= set(metadata.tags)
    lines = [line for line in card.splitlines() if line.startswith(f"| {MODEL} |")]
    rows = {tuple(cells[:6]): cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}
    assert len(rows) == len(study)
    for sae in study:
        directory = Path(sae.target.directory)
        metrics = json.loads((directory / "metrics.json").read_text())["metrics"]
        trained = json.loads((directory / "sae" / "provenance.json").read_text())
        t = sae.target
        cells = rows[(MODEL, f"main ({COMMIT[:10]})", "trained", str(t.layer), str(t.expansion_factor), str(t.k))]
        assert cells[6] == f"{trained['training']['tokens']:,}"
        for cell, name in zip(cells[8:10], ("explained_variance_masked_per_token", "cosine_similarity_masked")):
            assert cell == f"{metrics[name]:.3f} [{metrics[name + '_low']:.3f}, {metrics[name + '_high']:.3f}]"
        if sae.explainers:
            summary = json.loads((directory / "autointerp" / "tokens" / "summary.json").read_text())
            assert (
                cells[10]
                == f"{summary['fuzz_auroc']:.3f} [{summary['fuzz_auroc_low']:.3f}, {summary['fuzz_auroc_high']:.3f}]"
            )
        else:
            assert cells[10] == "–"
    assert "Heap, Thomas and Lawson, Tim and Farnik, Lucy and Aitchison, Laurence" in card
    assert (
        "eprint = {2501.17727}" in card
        and "Sparse Autoencoders Can Interpret Randomly Initialized Transformers" in card
    )
    assert f'SparseCoder.load_from_hub("{HUB_REPO}", hookpoint="{MODEL}/trained/x4-k4/layers.1")' in card


def test_a_wrong_token_is_refused_with_nothing_committed_and_not_named(study, hub):
    wrong = a_token()
    with pytest.raises(PublishError, match="refused the write token.*401") as refused:
        publish(
            HUB_REPO,
            repo_files(study, "results/metrics.csv", saelens=False),
            _card(study, False),
            wrong,
            endpoint=hub.url,
        )
    assert wrong not in str(refused.value) and hub.token not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert hub.commits == [] and not (hub.root / "model" / HUB_REPO).exists()


def test_a_missing_token_or_repository_is_an_error_before_any_request(monkeypatch):
    monkeypatch.delenv("SAERAND_TEST_TOKEN", raising=False)
    with pytest.raises(PublishError, match="SAERAND_TEST_TOKEN"):
        hub_token("SAERAND_TEST_TOKEN")
    monkeypatch.setenv("SAERAND_TEST_TOKEN", "  ")
    with pytest.raises(PublishError, match="unset or empty"):
        hub_token("SAERAND_TEST_TOKEN")
    for repo in (None, "", "no-owner", "owner/name/extra"):
        with pytest.raises(PublishError, match="publish.repo"):
            checked_repo_id(repo)
    assert checked_repo_id(HUB_REPO) == HUB_REPO


# The rule, in the workflow.


def test_publish_is_planned_only_when_asked(tmp_path):
    def planned(*targets, configs=(MINI,)):
        command = [*SNAKEMAKE, *targets, "--directory", str(tmp_path), "--dry-run", "--configfile", *map(str, configs)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_environment())
        assert result.returncode == 0, result.stderr[-3000:]
        return [job.rule for job in planned_jobs(result.stdout + result.stderr)]

    assert "publish" not in planned()
    asked = planned("publish")
    assert asked.count("publish") == 1 and {"aggregate_metrics", "finalize_sae"} <= set(asked)
    # The SAELens exports only where asked for: one per SAE of the mini study.
    assert "export_saelens" not in asked
    (tmp_path / "saelens.yaml").write_text("publish: {saelens: true}\n")
    assert planned("publish", configs=(MINI, tmp_path / "saelens.yaml")).count("export_saelens") == 15


def _environment(**variables) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    return {**environment, "SLURM_CONF": NO_SLURM_CONF, **variables}


@pytest.fixture()
def finished(mini_snapshot, tmp_path) -> Path:
    """A copy of the finished mini study, told where to publish."""
    workdir = tmp_path / "mini"
    shutil.copytree(mini_snapshot, workdir, symlinks=True)
    (tmp_path / "publish.yaml").write_text("publish: {repo: owner/mini-saes, saelens: false}\n")
    return workdir


def _publish_run(workdir: Path, hub: HubDouble, **variables) -> subprocess.CompletedProcess:
    configs = [str(MINI), str(workdir.parent / "publish.yaml")]
    command = [*SNAKEMAKE, "publish", "--directory", str(workdir), "--configfile", *configs]
    variables = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", **variables}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_environment(**variables), timeout=900)


def _files_holding(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and text.encode() in p.read_bytes()]


def test_snakemake_publish_uploads_the_study_and_writes_the_token_nowhere(finished, tmp_path):
    with HubDouble(tmp_path / "hub", token=a_token()) as hub:
        result = _publish_run(finished, hub, HF_TOKEN=hub.token)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        jobs = [job.rule for job in planned_jobs(result.stdout + result.stderr)]
        assert jobs == ["publish"]  # the study is finished: nothing else runs
        receipt = json.loads((finished / "results" / "publish" / "receipt.json").read_text())
        assert receipt["repo_id"] == "owner/mini-saes" and len(hub.commits) == 1
        snapshot = Path(snapshot_download("owner/mini-saes", endpoint=hub.url, cache_dir=tmp_path / "downloads"))
        for entry in receipt["files"]:
            data = (snapshot / entry["path"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        published = {entry["path"] for entry in receipt["files"]}
        assert "metrics.csv" in published and "README.md" in published
        assert "mini-neox/trained/x4-k4/layers.1/sae.safetensors" in published
        assert "published" in (finished / "logs" / "publish.log").read_text()
        assert _files_holding(finished, hub.token) == [] and hub.token not in result.stdout + result.stderr


def test_snakemake_publish_with_a_wrong_or_missing_token_fails_cleanly(finished, tmp_path):
    with HubDouble(tmp_path / "hub", token=a_token()) as hub:
        wrong = a_token()
        result = _publish_run(finished, hub, HF_TOKEN=wrong)
        assert result.returncode != 0
        assert "refused the write token" in (finished / "logs" / "publish.log").read_text()
        assert not (finished / "results" / "publish").exists() or not any((finished / "results" / "publish").iterdir())
        assert (
            hub.commits == [] and _files_holding(finished, wrong) == [] and wrong not in result.stdout + result.stderr
        )

        hub.requests.clear()
        result = _publish_run(finished, hub)  # no HF_TOKEN
        assert result.returncode != 0 and "no hub token" in (finished / "logs" / "publish.log").read_text()
        assert hub.requests == []

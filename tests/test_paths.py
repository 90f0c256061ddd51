"""The path templates: a job's wildcards give back its SAE, and the per-SAE paths are the
templates filled in."""

from snakemake.io import glob_wildcards

from saerand import paths
from saerand.study import SaeTarget


def test_an_sae_target_round_trips_through_its_directory(tmp_path, monkeypatch):
    targets = [SaeTarget("pythia-70m", "rerandomized_excl_emb", 3, 64, 32), SaeTarget("tiny", "step0", 11, 8, 4)]
    monkeypatch.chdir(tmp_path)
    for target in targets:
        (tmp_path / target.directory).mkdir(parents=True)
    found = glob_wildcards(paths.SAE_DIR)
    parsed = {SaeTarget.from_wildcards(dict(zip(found._fields, values))) for values in zip(*found)}
    assert parsed == set(targets)


def test_per_sae_paths_are_the_templates_filled_in():
    target = SaeTarget("pythia-70m", "control", 2, 64, 32)
    assert target.directory == "results/pythia-70m/control/x64-k32/layers.2"
    assert target.autointerp_directory("tokens") == paths.AUTOINTERP_DIR.format(
        model="pythia-70m", variant="control", expansion=64, k=32, layer=2, explainer="tokens"
    )
    assert paths.latents_directory("m", "step0") == "results/m/step0/autointerp/latents"
    assert paths.delphi_cache(paths.latents_directory("m", "step0")) == "results/m/step0/autointerp/latents/delphi"
    assert paths.tokens_store("m", "eval") == "results/m/tokens/eval.zarr"
    assert paths.layer_checkpoint_directory("m", "trained", 1, 3) == "results/m/trained/layers.1/checkpoints/shard-3"


def test_every_results_path_lies_under_results():
    templates = [value for name, value in vars(paths).items() if name.isupper() and isinstance(value, str)]
    assert len(templates) > 20
    assert all(value.startswith("results/") for value in templates if "/" in value), templates

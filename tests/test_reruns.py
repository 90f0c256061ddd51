"""Which settings are a job's params (a change reruns it) and which reach it through the run's config."""

import yaml

from saerand.config import SCHEMA, load_config
from saerand.reruns import operational_keys, result_defining, with_operational


def test_operational_settings_are_no_params(paper):
    llm = paper["autointerp"]["llm"]
    params = result_defining("autointerp.llm", llm)
    # An error message tells users to raise request_timeout: doing so must not rerun 70B scoring.
    for key in (
        "request_timeout",
        "start_timeout",
        "stuck_after",
        "concurrency",
        "python",
        "saes_per_server",
        "prefix_caching",
    ):
        assert key in llm and key not in params
    for key in ("model", "revision", "seed", "max_tokens", "examples_per_prompt", "dtype"):
        assert params[key] == llm[key]
    assert operational_keys("sae") == {"device", "read_threads"}  # fused_adam changes the rounding: it defines
    assert operational_keys("cache") == {"device", "batch_sequences", "compressor", "node_local_dir"}
    assert operational_keys("model") == {"gpu_constraint"}
    # Nested sections too.
    autointerp = result_defining("autointerp", paper["autointerp"])
    assert "device" not in autointerp and "request_timeout" not in autointerp["llm"] and autointerp["latents"] == 100


def test_a_job_gets_its_params_over_the_runs_operational_settings():
    run = {"device": "cuda", "k": 32, "llm": {"request_timeout": 900, "seed": 0}}
    params = {"k": 16, "llm": {"seed": 0}}  # a sweep point's k
    assert with_operational(params, run) == {"device": "cuda", "k": 16, "llm": {"request_timeout": 900, "seed": 0}}


def test_every_operational_key_is_one_a_job_can_read(tmp_path):
    """The shipped configs' every operational key exists in the schema's sections (a typo in the
    marker's place would silently make a result-defining key operational)."""
    config = load_config(SCHEMA.parent.parent.parent / "config" / "demo.yaml", SCHEMA)
    for section in ("cache", "sae", "evaluation", "autointerp", "toy"):
        assert operational_keys(section) <= set(config[section]), section


def test_keys_added_at_their_earlier_behaviour_rerun_nothing(paper):
    """The SAE options added since studies finished (faster maths, the authors' trajectory) are no
    params at their defaults: a finished study's SAE jobs see the params they were made with."""
    assert set(result_defining("sae", paper["sae"])) == {
        "expansion_factor",
        "k",
        "batch_size",
        "optimizer",
        "lr",
        "lr_warmup_steps",
        "grad_clip_norm",
        "auxk_alpha",
        "dead_feature_threshold",
        "seed",
        "buffer_shuffle",
        "buffer_window_chunks",
        "buffer_block_rows",
    }
    changed = result_defining("sae", paper["sae"] | {"grad_acc_steps": 8, "fused_adam": False, "loop": "authors"})
    assert changed["grad_acc_steps"] == 8 and changed["loop"] == "authors" and "fused_adam" not in changed


def test_the_authors_sae_preset_lays_over_a_study(tmp_path):
    """config/presets/authors_sae.yaml over the paper's config, as `--configfile config.yaml preset`
    merges them (Snakemake's update_config): the fork's trajectory, everything else the study's."""
    from snakemake.utils import update_config

    from saerand.config import validate_config
    from saerand.settings import SaeSettings, from_config

    repository = SCHEMA.parent.parent.parent
    config = yaml.safe_load((repository / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((repository / "config" / "presets" / "authors_sae.yaml").read_text()))
    config = validate_config(config, SCHEMA)
    settings = from_config(SaeSettings, config["sae"], "sae")
    assert (settings.batch_size, settings.grad_acc_steps, settings.micro_acc_steps) == (4, 8, 2)
    assert settings.batch_size * settings.grad_acc_steps * config["tokens"]["context_length"] == 65536
    assert (settings.loop, settings.decoder_bias_init, settings.adam_8bit) == ("authors", "geometric_median", True)
    assert (settings.expansion_factor, settings.k, settings.seed) == (64, 32, 0)
    params = result_defining("sae", config["sae"])
    assert params["loop"] == "authors" and params["lr_schedule_length"] == "batches"

"""Which settings are a job's params (a change reruns it) and which reach it through the run's config."""

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

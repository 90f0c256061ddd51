import copy

import pytest
import yaml

from saerand.config import SCHEMA, ConfigError, load_config, validate_config
from saerand.settings import study_settings
from saerand.study import sae_targets, selected_layers, token_split

from .conftest import REPO


@pytest.fixture(scope="module")
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def _error(config) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, SCHEMA)
    return str(info.value)


def test_shipped_configs_are_valid():
    for name in ("demo.yaml", "config.yaml"):
        config = load_config(REPO / "config" / name, SCHEMA)
        assert config["sae"]["device"] == "auto"  # defaults filled in from the schema


def test_unknown_key_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["sae"]["expansion"] = 64
    message = _error(bad)
    assert "config key 'sae'" in message and "'expansion' was unexpected" in message


def test_wrong_type_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["sae"]["k"] = "thirty-two"
    assert _error(bad).startswith("config key 'sae.k': 'thirty-two' is not of type 'integer'")


def test_unknown_variant_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["variants"] = ["trained", "randomised"]
    message = _error(bad)
    assert "config key 'variants[1]'" in message and "'randomised' is not one of" in message


def test_layer_outside_the_model_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["models"]["tiny-neox"]["layers"] = [0, 4]
    message = _error(bad)
    assert "config key 'models.tiny-neox.layers'" in message and "layer 4 is outside the model" in message


def test_malformed_layers_spec_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["models"]["tiny-neox"]["layers"] = {"every": 0}
    assert "config key 'models.tiny-neox.layers.every': 0 is less than the minimum of 1" in _error(bad)


def test_embedded_model_must_match_its_entry(demo):
    bad = copy.deepcopy(demo)
    bad["models"]["tiny-neox"]["n_layers"] = 6
    assert "config key 'models.tiny-neox.n_layers'" in _error(bad)
    bad = copy.deepcopy(demo)
    del bad["embedded_model"]
    assert "config key 'models.tiny-neox.embedded'" in _error(bad)


def test_model_needs_exactly_one_source(demo):
    bad = copy.deepcopy(demo)
    bad["models"]["tiny-neox"]["hub_id"] = "EleutherAI/pythia-70m"
    assert "config key 'models.tiny-neox'" in _error(bad)


def test_too_few_tokens_is_named(demo):
    bad = copy.deepcopy(demo)
    bad["tokens"]["eval_tokens"] = 10
    assert "config key 'tokens.eval_tokens'" in _error(bad)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", [0, 1, 2, 3, 4, 5]), ({"every": 2}, [0, 2, 4]), ({"every": 4}, [0, 4]), ([5, 1], [1, 5])],
)
def test_selected_layers(paper, spec, expected):
    pythia_70m = study_settings(paper).models["pythia-70m"]
    assert pythia_70m.n_layers == 6
    assert selected_layers(pythia_70m, spec) == expected


def test_paper_grid():
    """Every layer below 410M, every second for 410M and 1B, every fourth for 6.9B (Section 3)."""
    config = load_config(REPO / "config" / "config.yaml", SCHEMA)
    settings = study_settings(config)
    layers = {name: selected_layers(model) for name, model in settings.models.items()}
    assert layers == {
        "pythia-70m": list(range(6)),
        "pythia-160m": list(range(12)),
        "pythia-410m": list(range(0, 24, 2)),
        "pythia-1b": list(range(0, 16, 2)),
        "pythia-6.9b": list(range(0, 32, 4)),
    }
    targets = list(sae_targets(settings))
    study = [t for t in targets if (t.expansion_factor, t.k) == (64, 32)]
    assert len(study) == 5 * (6 + 12 + 12 + 8 + 8)
    # Figure 11: 4 expansion factors x 2 k on every layer and variant of Pythia-160M.
    swept = {(t.expansion_factor, t.k) for t in targets if (t.model, t.variant, t.layer) == ("pythia-160m", "step0", 7)}
    assert swept == {(e, k) for e in (16, 32, 64, 128) for k in (16, 32)}
    assert len(targets) == len(study) + 5 * 12 * 7
    assert len({t.directory for t in targets}) == len(targets)
    assert study[0].directory == "results/pythia-70m/trained/x64-k32/layers.0"


def test_sweep_errors_are_named(demo):
    sweep = {"models": ["tiny-neox"], "expansion_factors": [8, 16], "k": [8, 16]}
    bad = copy.deepcopy(demo) | {"sweep": {**sweep, "models": ["pythia-160m"]}}
    assert "config key 'sweep.models': 'pythia-160m' is not one of the models (tiny-neox)" in _error(bad)
    bad = copy.deepcopy(demo) | {"sweep": {**sweep, "layers": [9]}}
    assert "config key 'sweep.layers': layer 9 is outside the model" in _error(bad)
    bad = copy.deepcopy(demo) | {"sweep": {**sweep, "k": [4096]}}
    assert "config key 'sweep.k': k = 4096 exceeds the 1024 latents of tiny-neox's SAE at expansion 8" in _error(bad)
    bad = copy.deepcopy(demo) | {"sweep": {**sweep, "expansion_factors": []}}
    assert _error(bad).startswith("config key 'sweep.expansion_factors': [] should be non-empty")


def test_sweep_layers_outside_the_study_get_only_the_grid(demo):
    config = validate_config(
        demo
        | {
            "models": {"tiny-neox": {**demo["models"]["tiny-neox"], "layers": [0]}},
            "sweep": {"models": ["tiny-neox"], "layers": [3], "expansion_factors": [8], "k": [8, 16]},
        },
        SCHEMA,
    )
    assert [
        (t.layer, t.expansion_factor, t.k) for t in sae_targets(study_settings(config)) if t.variant == "trained"
    ] == [
        (0, 16, 16),
        (3, 8, 8),
        (3, 8, 16),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"superposition": {"n_features": 64, "n_dims": 128}},
            "config key 'toy.superposition.n_dims': n_d = 128 exceeds n_s = n_features = 64; superposed data needs n_s >= n_d",
        ),
        (
            {"sae": {"l1_coefficients": {"low": 0}}},
            "config key 'toy.sae.l1_coefficients.low': 0 is less than or equal to the minimum of 0",
        ),
        (
            {"sae": {"l1_coefficients": {"low": -1.0e-3}}},
            "config key 'toy.sae.l1_coefficients.low': -0.001 is less than or equal to the minimum of 0",
        ),
        (
            {"sae": {"l1_coefficients": {"low": 10, "high": 1}}},
            "config key 'toy.sae.l1_coefficients': low = 10 exceeds high = 1",
        ),
        (
            {"word_vectors": {"embeddings": ["pythia-70m"]}},
            "config key 'toy.word_vectors.embeddings': 'pythia-70m' is not one of the models (tiny-neox)",
        ),
        ({"word_vectors": {"glove": {"glove 300d": "x.txt"}}}, "config key 'toy.word_vectors.glove'"),
    ],
)
def test_bad_toy_parameters_are_named(demo, change, message):
    bad = copy.deepcopy(demo)
    for section, values in change.items():
        bad["toy"][section] = {**bad["toy"].get(section, {}), **values}
    assert _error(bad).startswith(message)


def test_toy_datasets_and_defaults(demo):
    from saerand.study import toy_datasets, toy_latent_counts

    datasets = toy_datasets(validate_config(demo, SCHEMA))
    assert list(datasets) == ["superposition", "embeddings-tiny-neox"]
    assert datasets["superposition"] == {
        "source": "superposition",
        "seeds": [0, 1],
        "latents": [64, 128],
        "n_samples": 3000,
        "n_features": 64,
        "n_dims": 32,
        "expected_active": 5,
        "decay": 0.99,  # the schema's default: the demo sets everything else
    }
    assert datasets["embeddings-tiny-neox"] == {
        "source": "embeddings",
        "model": "tiny-neox",
        "location": "resources/models/tiny-neox",
        "revision": "main",
        "n_layers": 4,
        "seeds": [0],
        "latent_multiples": [4],
    }
    assert toy_latent_counts(datasets["embeddings-tiny-neox"], 128) == [512]
    paper = toy_datasets(load_config(REPO / "config" / "config.yaml", SCHEMA))
    assert paper["glove-300d"]["config_key"] == "toy.word_vectors.glove.glove-300d"
    assert toy_latent_counts(paper["glove-300d"], 300) == [1200, 4800]  # Figure 7's panels


@pytest.mark.parametrize(
    "path, instead",
    [
        (
            "togethercomputer/RedPajama-Data-1T-Sample",
            "path: json, data_files: hf://datasets/togethercomputer/RedPajama-Data-1T-Sample/*.jsonl",
        ),
    ],
)
def test_a_script_dataset_stops_before_any_job_with_what_to_write(demo, path, instead):
    bad = copy.deepcopy(demo)
    bad["datasets"]["train"] = {"path": path, "split": "train[:99%]"}
    message = _error(bad)
    assert message.startswith(f"config key 'datasets.train.path': '{path}' is a dataset loading script")
    assert instead in message


def test_a_local_script_dataset_stops_before_any_job(demo, tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "corpus.py").write_text("# loading script\n")
    bad = copy.deepcopy(demo)
    bad["datasets"]["eval"] = {"path": str(tmp_path / "corpus"), "split": "train"}
    assert "config key 'datasets.eval.path'" in _error(bad) and "write instead" in _error(bad)


def test_paper_config_reads_redpajama_v2s_sample_shuffled_with_held_out_text_from_the_same_stream():
    config = load_config(REPO / "config" / "config.yaml", SCHEMA)
    train = config["datasets"]["train"]
    assert (train["path"], train["text_column"]) == ("EleutherAI/rpj-v2-sample", "raw_content")  # the authors'
    assert "eval" not in config["datasets"]
    assert config["datasets"]["shuffle_seed"] == 42
    held, train = token_split(config, "eval"), token_split(config, "train")
    assert held["skip_tokens"] == 0 and train["skip_tokens"] == held["n_tokens"] == config["tokens"]["eval_tokens"]
    demo = load_config(REPO / "config" / "demo.yaml", SCHEMA)  # whole books held out: own dataset
    assert (
        token_split(demo, "train")["skip_tokens"] == 0
        and token_split(demo, "eval")["dataset"] == demo["datasets"]["eval"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"context_length": 48},
            "config key 'autointerp.context_length': 48 does not divide tokens.context_length = 128",
        ),
        (
            {"example_context": 24},
            "config key 'autointerp.example_context': 24 does not divide autointerp.context_length",
        ),
        ({"draw": 10}, "config key 'autointerp.draw': 10 is fewer than autointerp.latents = 50"),
        (
            {"explainers": ["llm"], "test_examples": 12, "non_activating": 10},
            "config key 'autointerp.llm.examples_per_prompt': 5 does not divide the 22 samples per latent and scorer",
        ),
    ],
)
def test_bad_autointerp_settings_are_named(demo, change, message):
    bad = copy.deepcopy(demo)
    bad["autointerp"].update(change)
    assert message in _error(bad)


@pytest.mark.parametrize(
    ("llm", "key", "name"),
    [
        ({"environment": {"HF_TOKEN": "hf_x"}}, "environment.HF_TOKEN", "HF_TOKEN"),
        ({"environment": {"openai_api_key": "x"}}, "environment.openai_api_key", "openai_api_key"),
        ({"environment": {"DB_PASSWORD": "x"}}, "environment.DB_PASSWORD", "DB_PASSWORD"),
        ({"server_args": ["--enforce-eager", "--api-key", "x"]}, "server_args[1]", "--api-key"),
        ({"server_args": ["--hf-token=hf_x"]}, "server_args[0]", "--hf-token"),
        ({"server_args": ["AWS_SECRET=x"]}, "server_args[0]", "AWS_SECRET"),
    ],
)
def test_secrets_in_the_llm_servers_settings_are_refused(demo, llm, key, name):
    bad = copy.deepcopy(demo)
    bad["autointerp"]["llm"] = llm
    message = _error(bad)
    assert f"config key 'autointerp.llm.{key}': {name!r} looks like a secret" in message
    assert "put secrets in the job's environment instead (e.g. export HF_TOKEN" in message
    assert "hf_x" not in message


def test_names_that_merely_contain_a_secret_word_are_kept(demo):
    config = copy.deepcopy(demo)
    config["autointerp"]["llm"] = {
        "environment": {"TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": 1},
        "server_args": ["--max-num-batched-tokens", 4096, "--tokenizer-mode", "auto", "--ssl-keyfile", "k.pem"],
    }
    assert validate_config(config, SCHEMA)["autointerp"]["llm"]["server_args"][1] == 4096


def test_the_papers_llm_is_the_default_and_needs_a_server_per_group():
    llm = load_config(REPO / "config" / "config.yaml", SCHEMA)["autointerp"]["llm"]
    # What defines the explanations and scores (Section 3.3: Llama 3.1 70B, AWQ INT4), then how it is served.
    assert {key: llm[key] for key in ("model", "revision", "parameters", "dtype", "seed", "max_tokens")} == {
        "model": "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
        "revision": None,
        "parameters": 70.6e9,
        "dtype": "auto",
        "seed": 0,
        "max_tokens": 1000,
    }
    assert {key: llm[key] for key in ("examples_per_prompt", "structured_outputs", "prefix_caching")} == {
        "examples_per_prompt": 5,
        "structured_outputs": False,
        "prefix_caching": True,
    }
    assert {key: llm[key] for key in ("gpus", "max_model_len", "saes_per_server", "weights_bytes")} == {
        "gpus": 1,
        "max_model_len": 8192,
        "saes_per_server": 10,
        "weights_bytes": 39.8e9,
    }


def test_every_key_of_the_schema_is_documented():
    schema = yaml.safe_load(SCHEMA.read_text())
    undocumented = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        for key, child in node.get("properties", {}).items():
            if isinstance(child, dict) and "description" not in child:
                undocumented.append(f"{path}{key}")
            walk(child, f"{path}{key}.")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{path}[].")
        for key, child in node.get("$defs", {}).items():
            walk(child, f"$defs.{key}.")
        for key in ("oneOf", "anyOf", "allOf"):
            for child in node.get(key, []):
                walk(child, path)

    walk(schema, "")
    assert undocumented == []

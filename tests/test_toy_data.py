"""Toy data generators (Appendix C.1, Figure 4), GloVe/embedding readers and the random MLP."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import GPTNeoXForCausalLM

from saerand.toy.data import (
    embedding_matrix,
    gaussian_control,
    lomax_2d,
    sharkey_coefficients,
    sharkey_data,
    unit_hypersphere,
)
from saerand.toy.glove import glove_vectors
from saerand.toy.mlp import lomax_through_mlp, mlp_outputs, random_mlp


def test_sharkey_data_shapes_unit_features_and_seeding():
    data, features = sharkey_data(500, n_features=64, n_dims=32, seed=3)
    assert data.shape == (500, 32) and features.shape == (64, 32)
    assert data.dtype == features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-6)
    again, _ = sharkey_data(500, n_features=64, n_dims=32, seed=3)
    other, _ = sharkey_data(500, n_features=64, n_dims=32, seed=4)
    np.testing.assert_array_equal(data, again)
    assert not np.allclose(data, other)


def test_sharkey_data_is_coefficients_times_features():
    data, features = sharkey_data(300, n_features=40, n_dims=20, seed=7)
    rng = np.random.default_rng(7)
    expected_features = unit_hypersphere(40, 20, rng)
    coefficients = sharkey_coefficients(300, 40, 5, 0.99, rng)
    np.testing.assert_allclose(features, expected_features, rtol=1e-6)
    np.testing.assert_allclose(data, coefficients @ expected_features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_features", [64, 512])
def test_sharkey_expected_number_of_active_features_is_m(n_features):
    coefficients = sharkey_coefficients(8000, n_features, 5, 0.99, np.random.default_rng(0))
    active = (coefficients != 0).sum(axis=1)
    # Standard error of the mean is about 2.2 / sqrt(8000) = 0.025.
    assert abs(active.mean() - 5) < 0.12
    assert coefficients.min() >= 0 and coefficients.max() < 1


def test_sharkey_features_co_occur_more_than_independent_ones():
    active = sharkey_coefficients(20_000, 32, 5, 0.99, np.random.default_rng(0)) != 0
    off_diagonal = ~np.eye(32, dtype=bool)
    correlation = np.abs(np.corrcoef(active.T)[off_diagonal]).mean()
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(column) for column in active.T], axis=1)
    independent = np.abs(np.corrcoef(shuffled.T)[off_diagonal]).mean()
    assert correlation > 3 * independent


def test_sharkey_feature_frequency_decays_with_index():
    frequency = (sharkey_coefficients(20_000, 64, 5, 0.99, np.random.default_rng(0)) != 0).mean(0)
    assert frequency[0] > 1.5 * frequency[1:].mean()  # p_0 ** 0 = 1 for every sample
    assert frequency[1:16].mean() > frequency[-16:].mean()


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"n_features": 16, "n_dims": 32}, ["n_dims", "n_features"]),
        ({"n_samples": 0}, ["n_samples"]),
        ({"n_features": -1}, ["n_features"]),
        ({"n_dims": 0}, ["n_dims"]),
        ({"expected_active": 0}, ["expected_active"]),
        ({"expected_active": 100, "n_features": 64, "n_dims": 32}, ["expected_active"]),
        ({"decay": -0.5}, ["decay"]),
    ],
)
def test_sharkey_parameter_errors_name_the_parameter(kwargs, names):
    arguments = {"n_samples": 10, "n_features": 64, "n_dims": 32} | kwargs
    with pytest.raises(ValueError) as error:
        sharkey_data(**arguments)
    assert all(name in str(error.value) for name in names)


def test_lomax_2d_shapes_seeding_and_heavy_tailed_arms():
    data, projection = lomax_2d(seed=0)
    assert data.shape == (10_000, 2) and projection.shape == (2, 3)
    np.testing.assert_array_equal(data, lomax_2d(seed=0)[0])
    assert not np.allclose(data, lomax_2d(seed=1)[0])
    norms = np.linalg.norm(data, axis=1)
    # Lomax(1, 1) has infinite mean: the 99.9th percentile is hundreds of medians away.
    assert np.quantile(norms, 0.999) > 100 * np.median(norms)
    # The largest points lie on the arms: along one column of the projection.
    largest = data[norms > np.quantile(norms, 0.99)]
    cosines = np.abs(
        (largest / np.linalg.norm(largest, axis=1, keepdims=True)) @ (projection / np.linalg.norm(projection, axis=0))
    )
    assert np.mean(cosines.max(axis=1) > 0.99) > 0.95


def test_lomax_2d_validates_parameters():
    with pytest.raises(ValueError, match="alpha"):
        lomax_2d(alpha=0)
    with pytest.raises(ValueError, match="n_samples"):
        lomax_2d(n_samples=0)


def test_gaussian_control_matches_mean_and_std_per_dimension():
    data, _ = sharkey_data(20_000, n_features=64, n_dims=32, seed=0)
    control = gaussian_control(data, seed=1, per_dimension=True)
    assert control.shape == data.shape and control.dtype == np.float32
    np.testing.assert_allclose(control.mean(0), data.mean(0), atol=0.01)
    np.testing.assert_allclose(control.std(0), data.std(0), rtol=0.03)
    np.testing.assert_array_equal(control, gaussian_control(data, seed=1, per_dimension=True))
    pooled = gaussian_control(data * np.arange(1, 33), seed=1, per_dimension=False)
    assert pooled.std(0).max() / pooled.std(0).min() < 1.2  # one shared std
    with pytest.raises(ValueError, match="2-D"):
        gaussian_control(np.ones(5), per_dimension=True)


def test_glove_vectors_reads_words_and_vectors(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 -0.2 0.3\n, 1 2 3\nof -1e-2 0 4.5\n")
    words, vectors = glove_vectors(path)
    assert words == ["the", ",", "of"]
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, [[0.1, -0.2, 0.3], [1, 2, 3], [-0.01, 0, 4.5]], rtol=1e-6)
    words, vectors = glove_vectors(path, limit=2)
    assert words == ["the", ","] and vectors.shape == (2, 3)


def test_glove_vectors_missing_file_says_where_to_get_glove(tmp_path):
    path = tmp_path / "nowhere" / "glove.6B.300d.txt"
    with pytest.raises(FileNotFoundError) as error:
        glove_vectors(path)
    message = str(error.value)
    assert str(path) in message
    assert "https://nlp.stanford.edu/projects/glove/" in message
    assert "toy.word_vectors.glove" in message


@pytest.mark.parametrize("bad_line", ["and 1 2\n", "and 1 2 3 4\n", "and 1 x 3\n"], ids=["short", "long", "nan"])
def test_glove_vectors_malformed_line_names_the_line(tmp_path, bad_line):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\nof 1 2 3\n" + bad_line)
    with pytest.raises(ValueError, match="line 3"):
        glove_vectors(path)


def test_glove_vectors_unreadable_or_empty_file(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        glove_vectors(tmp_path)  # a directory
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no vectors"):
        glove_vectors(empty)


def test_embedding_matrix_keeps_one_row_per_token(tmp_path, tiny_neox_config, small_tokenizer):
    """Like Pythia (50304 rows, 50277 tokens), the model pads its embedding past the tokenizer:
    only the tokenizer's rows are token embeddings."""
    n_tokens = len(small_tokenizer)
    config = copy.deepcopy(tiny_neox_config)
    config.vocab_size = n_tokens + 7
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config)
    # A local model directory holds one folder per revision, tokenizer included.
    model.save_pretrained(tmp_path / "main")
    small_tokenizer.save_pretrained(tmp_path / "main")
    embeddings = embedding_matrix(str(tmp_path), "main", n_layers=config.num_hidden_layers)
    assert embeddings.shape == (n_tokens, config.hidden_size) and embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, model.gpt_neox.embed_in.weight[:n_tokens].detach().numpy())


def test_embedding_matrix_rejects_a_tokenizer_larger_than_the_embedding(
    tmp_path,
    tiny_neox_config,
    small_tokenizer,
):
    config = copy.deepcopy(tiny_neox_config)
    config.vocab_size = len(small_tokenizer) - 1
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path / "main")
    small_tokenizer.save_pretrained(tmp_path / "main")
    with pytest.raises(ValueError, match="tokenizer"):
        embedding_matrix(str(tmp_path), "main", n_layers=config.num_hidden_layers)


def test_random_mlp_architecture_seeding_and_outputs():
    state = torch.random.get_rng_state()
    mlp = random_mlp(8, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    first, relu, second = mlp
    assert (first.in_features, first.out_features) == (8, 32)
    assert isinstance(relu, torch.nn.ReLU)
    assert (second.in_features, second.out_features) == (32, 8)
    assert torch.equal(first.weight, random_mlp(8, seed=5)[0].weight)
    assert not torch.equal(first.weight, random_mlp(8, seed=6)[0].weight)
    data = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    outputs = mlp_outputs(data, mlp, batch_size=30)
    assert outputs.shape == (100, 8) and outputs.dtype == np.float32
    expected = second(torch.relu(first(torch.from_numpy(data)))).detach().numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_random_mlp_rejects_non_positive_width():
    with pytest.raises(ValueError, match="n_dims"):
        random_mlp(0)


def test_lomax_through_mlp_panels():
    panels = lomax_through_mlp(n_samples=1000, seed=0)
    inputs, projection = lomax_2d(n_samples=1000, seed=0)
    assert {key: value.shape for key, value in panels.items()} == {
        "superposed_inputs": (1000, 3),
        "mlp_inputs": (1000, 2),
        "mlp_outputs": (1000, 2),
        "superposed_outputs": (1000, 3),
    }
    np.testing.assert_array_equal(panels["mlp_inputs"], inputs)
    # The pseudo-inverse loses nothing: projecting back recovers the 2-D points.
    np.testing.assert_allclose(panels["superposed_outputs"] @ projection.T, panels["mlp_outputs"], rtol=1e-3, atol=1e-3)

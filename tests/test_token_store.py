import numpy as np
import pytest

from saerand.token_store import load_token_store, save_token_store


def test_a_token_store_missing_a_chunk_is_refused_with_the_rule_that_rebuilds_it(tmp_path, token_ids):
    """zarr reads a missing chunk as zeros: token id 0 everywhere, without an error."""
    save_token_store(tmp_path / "eval.zarr", token_ids, {})
    np.testing.assert_array_equal(load_token_store(tmp_path / "eval.zarr"), token_ids)
    (tmp_path / "eval.zarr" / "tokens" / "c" / "0" / "0").unlink()
    with pytest.raises(
        RuntimeError, match=r"eval.zarr is damaged: chunk c/0/0 of tokens is missing.*rule tokenize_text"
    ):
        load_token_store(tmp_path / "eval.zarr")

import numpy as np
import pytest

from saerand.corpus import kjv_chapters, text_file_dataset, write_split_corpus
from saerand.data import token_sequences


def test_token_sequences_from_a_local_text_file(pydoc_text_file, small_tokenizer):
    spec = text_file_dataset(pydoc_text_file)
    ids = token_sequences(spec, small_tokenizer, context_length=32, n_tokens=32 * 50 + 7)
    assert ids.shape == (50, 32) and ids.dtype == np.int32
    assert (ids[:, 0] == small_tokenizer.eos_token_id).any()  # documents joined with EOS
    assert ids.max() < len(small_tokenizer)
    everything = token_sequences(spec, small_tokenizer, context_length=32, n_tokens=None)
    np.testing.assert_array_equal(everything[:50], ids)  # same order, whatever is asked for
    text = small_tokenizer.decode(everything[:3].ravel())
    assert "<|endoftext|>" in text and len(text) > 100


def test_asking_for_more_tokens_than_the_data_holds(pydoc_text_file, small_tokenizer):
    with pytest.raises(ValueError, match="fewer than the"):
        token_sequences(text_file_dataset(pydoc_text_file), small_tokenizer, 32, n_tokens=10**9)


def test_missing_text_column_is_named(pydoc_text_file, small_tokenizer):
    spec = text_file_dataset(pydoc_text_file) | {"text_column": "content"}
    with pytest.raises(ValueError, match="no column 'content'"):
        token_sequences(spec, small_tokenizer, 32, n_tokens=64)


def test_kjv_corpus_holds_out_whole_books(tmp_path):
    chapters = kjv_chapters()
    assert len(chapters) == 1189  # chapters of the King James Bible
    assert chapters[0][0] == "Genesis" and chapters[0][1].startswith("In the beginning God created")
    assert not any(":" in text.split(" ", 1)[0] for _, text in chapters)  # verse marks stripped
    counts = write_split_corpus(chapters, ["John"], tmp_path / "train.txt", tmp_path / "eval.txt")
    held = (tmp_path / "eval.txt").read_text()
    assert "In the beginning was the Word" in held
    assert "In the beginning was the Word" not in (tmp_path / "train.txt").read_text()
    assert counts["eval_chars"] == len(held) - 2 * 20 - 1  # 21 chapters, blank lines between, newline at the end
    with pytest.raises(ValueError, match="not in the corpus"):
        write_split_corpus(chapters, ["Johnn"], tmp_path / "a.txt", tmp_path / "b.txt")

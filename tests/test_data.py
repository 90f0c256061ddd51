import json
import re

import numpy as np
import pytest

from saerand.corpus import kjv_chapters, text_file_dataset, write_split_corpus
from saerand.data import token_sequences

from .conftest import dataset_spec


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


# RedPajama is stored source by source; a local stand-in: one JSON-lines file per source, each
# document marked with its source's word, loaded through the same `path: json` code path.
SOURCES = ("arxiv", "book", "wikipedia")


@pytest.fixture(scope="module")
def sorted_by_source(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("redpajama")
    rng = np.random.default_rng(0)
    words = ["the", "of", "model", "river", "proof", "king", "city", "light"]
    for source in SOURCES:
        with open(folder / f"{source}_sample.jsonl", "w") as out:
            for i in range(120):
                body = " ".join(rng.choice(words, size=40))
                out.write(
                    json.dumps({"text": f"{source}marker {i} {body} {source}marker", "meta": {"source": source}}) + "\n"
                )
    return dataset_spec(path="json", data_files=str(folder / "*.jsonl"), split="train")


def _sources(sequences: np.ndarray, tokenizer) -> set[str]:
    text = tokenizer.decode(sequences.ravel())
    return {source for source in SOURCES if f"{source}marker" in text}


def test_stored_order_gives_one_source_to_each_split(sorted_by_source, small_tokenizer):
    """What the workflow did before: the held-out split and the training text see different sources."""
    held = token_sequences(sorted_by_source, small_tokenizer, 32, 32 * 40)
    train = token_sequences(sorted_by_source, small_tokenizer, 32, 32 * 200, skip_tokens=32 * 40)
    assert _sources(held, small_tokenizer) == {"arxiv"}
    assert "wikipedia" not in _sources(train, small_tokenizer)


def test_shuffled_stream_mixes_sources_in_both_disjoint_splits(sorted_by_source, small_tokenizer):
    from saerand.study import token_split

    config = {
        "datasets": {"train": sorted_by_source, "shuffle_seed": 42},
        "tokens": {"context_length": 32, "train_tokens": 32 * 200, "eval_tokens": 32 * 40},
    }
    splits = {}
    for split in ("eval", "train"):
        text = token_split(config, split)
        splits[split] = token_sequences(
            text["dataset"],
            small_tokenizer,
            32,
            text["n_tokens"],
            skip_tokens=text["skip_tokens"],
            shuffle_seed=text["shuffle_seed"],
        )
    assert splits["eval"].shape == (40, 32) and splits["train"].shape == (200, 32)
    for sequences in splits.values():
        assert _sources(sequences, small_tokenizer) == set(SOURCES)
    # Held-out then training: consecutive, non-overlapping ranges of one deterministic stream.
    stream = token_sequences(sorted_by_source, small_tokenizer, 32, 32 * 240, shuffle_seed=42)
    np.testing.assert_array_equal(np.concatenate([splits["eval"], splits["train"]]), stream)
    held_documents = set(re.findall(r"(\w+marker \d+)", small_tokenizer.decode(splits["eval"].ravel())))
    train_documents = set(re.findall(r"(\w+marker \d+)", small_tokenizer.decode(splits["train"][1:].ravel())))
    assert len(held_documents & train_documents) <= 1  # at most the document cut at the boundary
    other_seed = token_sequences(sorted_by_source, small_tokenizer, 32, 32 * 40, shuffle_seed=7)
    assert not np.array_equal(other_seed, splits["eval"])


def test_auto_interp_text_follows_training_in_the_same_stream_cut_into_its_contexts(sorted_by_source, small_tokenizer):
    from saerand.study import token_split

    config = {
        "datasets": {"train": sorted_by_source, "shuffle_seed": 42},
        "tokens": {"context_length": 32, "train_tokens": 32 * 200, "eval_tokens": 32 * 40},
        "autointerp": {"tokens": 32 * 30 - 5, "context_length": 8},
    }
    text = token_split(config, "autointerp")
    assert text["skip_tokens"] == 32 * 240 and text["n_tokens"] == 32 * 30 and text["window"] == 8
    sequences = token_sequences(
        text["dataset"],
        small_tokenizer,
        32,
        text["n_tokens"],
        skip_tokens=text["skip_tokens"],
        shuffle_seed=text["shuffle_seed"],
    )
    stream = token_sequences(sorted_by_source, small_tokenizer, 32, 32 * 270, shuffle_seed=42)
    np.testing.assert_array_equal(sequences, stream[240:])  # right after evaluation and training
    with_eval = {**config, "datasets": {**config["datasets"], "eval": sorted_by_source}}
    assert token_split(with_eval, "autointerp")["skip_tokens"] == 32 * 200  # the held-out set has its own text


def test_a_script_dataset_is_refused_at_job_time_with_what_to_write(tmp_path, small_tokenizer):
    script_dir = tmp_path / "redpajama_sample"
    script_dir.mkdir()
    (script_dir / "redpajama_sample.py").write_text("# a datasets loading script\n")
    with pytest.raises(RuntimeError, match="is a loading script.*path: json or parquet"):
        token_sequences(dataset_spec(path=str(script_dir), split="train"), small_tokenizer, 32, 64)

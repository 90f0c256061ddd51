import copy
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import zarr

from saerand import cache as cache_module
from saerand.cache import (
    ActivationCache,
    IncompleteCacheError,
    NoRoomError,
    ReaderStats,
    read_ahead,
    residual_stream,
    write_activation_cache,
)
from saerand.variants import SubjectModel


def _write(path, model, ids, layers=(0, 2), variant="trained", **kwargs):
    settings = dict(batch_sequences=5, dtype="float32", chunk_rows=64, compressor="none") | kwargs
    write_activation_cache(
        path,
        SubjectModel(model, variant, noise_seed=0),
        ids,
        list(layers),
        attrs={"model": "tiny", "seed": 0},
        **settings,
    )


def test_hooks_capture_the_residual_stream_not_the_final_layernorm(tiny_neox, token_ids):
    ids = torch.from_numpy(token_ids[:2]).long()
    captured = residual_stream(SubjectModel(tiny_neox, "trained"), ids, [0, 1, 2])
    hidden = tiny_neox(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(captured[0], hidden[1])  # hidden_states[i + 1] is block i's output...
    torch.testing.assert_close(captured[1], hidden[2])
    final = tiny_neox.gpt_neox.final_layer_norm(captured[2])  # ...except the last, after the final LN
    torch.testing.assert_close(final, hidden[3])


@pytest.mark.parametrize("compressor", ["none", "zstd", "blosc"])
def test_round_trip(tmp_path, tiny_neox, token_ids, compressor):
    path = tmp_path / "train.zarr"
    _write(path, tiny_neox, token_ids, compressor=compressor)
    cache = ActivationCache(path)
    assert cache.n_tokens == token_ids.size and cache.d_model == 64 and cache.layers == [0, 2]
    assert cache.attrs["model"] == "tiny" and cache.attrs["complete"] is True
    np.testing.assert_array_equal(cache.tokens(), token_ids)
    expected = residual_stream(SubjectModel(tiny_neox, "trained"), torch.from_numpy(token_ids).long(), [0, 2])
    for layer in (0, 2):
        stored = np.concatenate([b.numpy() for b in cache.batches(layer, batch_rows=100)])
        np.testing.assert_allclose(stored, expected[layer].reshape(-1, 64).numpy(), rtol=1e-5, atol=1e-5)
    assert [len(b) for b in cache.batches(0, 100, drop_last=True)] == [100] * (token_ids.size // 100)
    with pytest.raises(KeyError, match="layer 1 is not in cache"):
        cache.activations(1)


def test_float16_storage_reads_back_as_float32(tmp_path, tiny_neox, token_ids):
    _write(tmp_path / "c.zarr", tiny_neox, token_ids, dtype="float16")
    batch = next(ActivationCache(tmp_path / "c.zarr").batches(0, 64))
    assert batch.dtype == torch.float32 and torch.isfinite(batch).all()


def test_control_variant_is_deterministic(tmp_path, tiny_neox, token_ids):
    for name in ("a", "b"):
        _write(tmp_path / f"{name}.zarr", tiny_neox, token_ids, variant="control")
    a = ActivationCache(tmp_path / "a.zarr").activations(2)[:]
    b = ActivationCache(tmp_path / "b.zarr").activations(2)[:]
    np.testing.assert_array_equal(a, b)


def test_a_store_without_the_complete_flag_is_refused(tmp_path):
    group = zarr.open_group(tmp_path / "half.zarr", mode="w", zarr_format=3)
    group.create_array("layers.0", shape=(10, 4), dtype="float32")
    with pytest.raises(IncompleteCacheError, match="was not completed"):
        ActivationCache(tmp_path / "half.zarr")
    with pytest.raises(IncompleteCacheError, match="is not an activation cache"):
        ActivationCache(tmp_path / "missing.zarr")


@pytest.mark.parametrize(("store", "rule"), [("eval.zarr", "cache_eval"), ("shard-1.zarr", "cache_train_shard")])
def test_a_missing_chunk_is_refused_with_the_rule_that_rebuilds_the_store(tmp_path, tiny_neox, token_ids, store, rule):
    """zarr reads a missing chunk as zeros: the store is refused on opening instead."""
    _write(tmp_path / store, tiny_neox, token_ids)
    (tmp_path / store / "layers.2" / "c" / "5" / "0").unlink()
    with pytest.raises(
        IncompleteCacheError, match=rf"{store} is damaged: chunk c/5/0 of layers.2 is missing.*rule {rule}"
    ):
        ActivationCache(tmp_path / store)


@pytest.mark.parametrize(
    ("compressor", "kept_bytes", "problem"),
    [("none", 100, "holds 100 of its 16384 bytes"), ("zstd", 0, "is empty")],  # 64 rows of 64 float32
)
def test_a_truncated_chunk_is_refused(tmp_path, tiny_neox, token_ids, compressor, kept_bytes, problem):
    _write(tmp_path / "eval.zarr", tiny_neox, token_ids, compressor=compressor)
    chunk = tmp_path / "eval.zarr" / "layers.0" / "c" / "11" / "0"  # the last of 768 / 64
    chunk.write_bytes(chunk.read_bytes()[:kept_bytes])
    with pytest.raises(IncompleteCacheError, match=f"chunk c/11/0 of layers.0 {problem}"):
        ActivationCache(tmp_path / "eval.zarr")


def test_an_error_mid_write_leaves_nothing_behind(tmp_path, tiny_neox, token_ids):
    bad = token_ids.copy()
    bad[-1, -1] = 10_000  # out of the vocabulary: the last batch fails
    with pytest.raises(IndexError):
        _write(tmp_path / "c.zarr", tiny_neox, bad)
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = """
import sys, time
import numpy as np, torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
import saerand.cache as cache_module
from saerand.variants import SubjectModel

original = cache_module._ChunkedWriter.append
def append_then_hang(self, rows):
    original(self, rows)
    print("writing", flush=True)
    time.sleep(3600)  # the test kills us here, mid-write
cache_module._ChunkedWriter.append = append_then_hang
config = GPTNeoXConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=8)
ids = np.zeros((16, 8), dtype=np.int32)
cache_module.write_activation_cache(sys.argv[1], SubjectModel(GPTNeoXForCausalLM(config), "trained"), ids,
    [0], batch_sequences=4, dtype="float32", chunk_rows=16)
"""


def test_a_killed_job_leaves_no_store_that_reads_as_complete(tmp_path, tiny_neox, token_ids):
    """SIGKILL (OOM killer, Slurm) mid-write: no cleanup code runs, the final path must not exist."""
    final = tmp_path / "train.zarr"
    _write(final, tiny_neox, token_ids)  # an older complete store that a rebuild replaces
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(final)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    staging = [p for p in tmp_path.iterdir() if p.name.startswith(".train.zarr.partial")]
    assert staging, "the killed writer should have been writing to a staging directory"
    assert ActivationCache(final).attrs["d_model"] == 64  # the old complete store is untouched
    with pytest.raises(IncompleteCacheError):
        ActivationCache(staging[0])


def _rows(batches) -> np.ndarray:
    return np.concatenate([b.numpy() for b in batches])


def test_shuffled_reading_mixes_the_buffer_and_is_seeded(tmp_path, tiny_neox, token_ids):
    """A shard read in mixed order: every row once, batches drawn from across the store, the same
    order for the same seed (a rerun or resumed shard reads the same batches)."""
    _write(tmp_path / "c.zarr", tiny_neox, token_ids, chunk_rows=64)  # 768 rows: 12 chunks of 64
    cache = ActivationCache(tmp_path / "c.zarr")
    stored = _rows(cache.batches(0, 96))
    mixed = list(cache.batches(0, 96, shuffle_seed=1, window_chunks=4, block_rows=4))
    assert [len(b) for b in mixed] == [96] * 8
    mixed_rows = _rows(mixed)
    # A permutation of the stored rows: match each to a stored index (first positions of sequences
    # that start with the same token are equal rows, hence lists).
    index: dict[bytes, list[int]] = {}
    for i, row in enumerate(stored):
        index.setdefault(row.tobytes(), []).append(i)
    order = np.array([index[row.tobytes()].pop() for row in mixed_rows])
    assert sorted(order) == list(range(len(stored))) and not (order == np.arange(len(stored))).all()
    # Stored order: a 96-row batch spans 2 chunks; mixed: each batch spans most of a 4-chunk window.
    chunks_per_batch = [len(set(order[i : i + 96] // 64)) for i in range(0, len(order), 96)]
    assert min(chunks_per_batch) >= 3
    assert set(order[:256] // 64) != {0, 1, 2, 3}  # windows are random chunks, not the first ones
    blocks = order.reshape(-1, 4)  # 4 consecutive stored rows move together
    assert (np.diff(blocks, axis=1) == 1).all() and (blocks[:, 0] % 4 == 0).all()
    np.testing.assert_array_equal(
        _rows(cache.batches(0, 96, shuffle_seed=1, window_chunks=4, block_rows=4)), mixed_rows
    )
    assert not np.array_equal(_rows(cache.batches(0, 96, shuffle_seed=2, window_chunks=4, block_rows=4)), mixed_rows)


def _indexed_store(path, n_rows: int, chunk_rows: int) -> ActivationCache:
    """A float16 store whose row i holds i in each of its 4 columns: batches show the rows they hold."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array(
        "layers.0", data=np.repeat(np.arange(n_rows, dtype=np.float16)[:, None], 4, 1), chunks=(chunk_rows, 4)
    )
    group.create_array("tokens", data=np.ones((1, n_rows), dtype=np.int32), chunks=(1, n_rows))
    group.attrs.update({"complete": True, "n_tokens": n_rows, "d_model": 4, "layers": [0]})
    return ActivationCache(path)


# The rows of each batch of an 83-row store (chunks of 8, batches of 12), as the single-threaded
# numpy reader of before the read-ahead pipeline gave them: resumed and rerun shards must keep them.
BATCHES_OF_BEFORE = {
    "stored": [list(range(start, min(start + 12, 83))) for start in range(0, 83, 12)],
    "seed 5, windows of 3 chunks, blocks of 2": [
        [11, 12, 13, 14, 59, 60, 82, 56, 80, 81, 61, 62],
        [63, 8, 9, 10, 57, 58, 15, 18, 19, 16, 17, 28],
        [29, 22, 23, 34, 35, 20, 21, 36, 37, 38, 39, 26],
        [27, 30, 31, 24, 25, 32, 33, 50, 51, 74, 75, 52],
        [53, 4, 5, 48, 49, 72, 73, 78, 79, 2, 3, 6],
        [7, 54, 55, 76, 77, 0, 1, 42, 43, 46, 47, 40],
        [41, 68, 69, 44, 45, 64, 65, 66, 67, 70, 71],
    ],
    "seed 7, windows of 4 chunks, blocks of 3, last dropped": [
        [49, 50, 51, 5, 6, 7, 52, 53, 54, 82, 0, 1],
        [55, 80, 81, 38, 39, 48, 32, 33, 34, 2, 3, 4],
        [35, 36, 37, 8, 9, 10, 31, 64, 65, 28, 29, 30],
        [59, 60, 61, 66, 67, 68, 14, 15, 24, 69, 70, 71],
        [25, 26, 27, 56, 57, 58, 11, 12, 13, 62, 63, 44],
        [45, 46, 16, 17, 18, 19, 20, 21, 22, 23, 40, 74],
    ],
}
READINGS = {
    "stored": {},
    "seed 5, windows of 3 chunks, blocks of 2": {"shuffle_seed": 5, "window_chunks": 3, "block_rows": 2},
    "seed 7, windows of 4 chunks, blocks of 3, last dropped": {
        "shuffle_seed": 7,
        "window_chunks": 4,
        "block_rows": 3,
        "drop_last": True,
    },
}


@pytest.mark.parametrize("reading", list(READINGS))
@pytest.mark.parametrize("read_threads, windows_ahead", [(1, 1), (3, 2), (8, 4)])
def test_the_read_ahead_pipeline_gives_the_batches_of_before(tmp_path, reading, read_threads, windows_ahead):
    cache = _indexed_store(tmp_path / "c.zarr", 83, 8)
    batches = list(cache.batches(0, 12, read_threads=read_threads, windows_ahead=windows_ahead, **READINGS[reading]))
    assert all(batch.dtype == torch.float32 and (batch == batch[:, :1]).all() for batch in batches)
    assert [batch[:, 0].int().tolist() for batch in batches] == BATCHES_OF_BEFORE[reading]


def test_the_reader_reads_whole_windows_ahead_while_the_trainer_works(tmp_path):
    """While the consumer holds its first batch, the reader's thread goes on reading: the window
    handed over, `windows_ahead` more in the queue and one more waiting for room."""
    cache = _indexed_store(tmp_path / "c.zarr", 8 * 40, 8)
    stats = ReaderStats()
    batches = cache.batches(0, 16, shuffle_seed=0, window_chunks=4, block_rows=2, windows_ahead=2, stats=stats)
    next(batches)
    deadline = time.monotonic() + 10
    while stats.windows < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats.windows == 4
    assert len(list(batches)) == 8 * 40 // 16 - 1 and stats.windows == 10
    batches.close()


def test_the_next_forward_pass_runs_while_the_rows_before_it_are_written(tmp_path, tiny_neox, token_ids, monkeypatch):
    """The first rows' write waits until the model has started its second batch: a writer in the
    caching loop's own thread would wait in vain (and the store would then be refused below)."""
    second_batch = threading.Event()
    forwards = []

    def count_forward(*_) -> None:
        forwards.append(1)
        if len(forwards) >= 2:
            second_batch.set()

    hook = tiny_neox.gpt_neox.layers[0].register_forward_pre_hook(count_forward)
    overlapped = []
    append = cache_module._ChunkedWriter.append

    def slow_append(self, rows):
        overlapped.append(second_batch.wait(timeout=10))
        append(self, rows)

    monkeypatch.setattr(cache_module._ChunkedWriter, "append", slow_append)
    try:
        _write(tmp_path / "c.zarr", tiny_neox, token_ids)
    finally:
        hook.remove()
    assert overlapped and overlapped[0] is True
    np.testing.assert_array_equal(ActivationCache(tmp_path / "c.zarr").tokens(), token_ids)


def test_non_finite_activations_stop_the_cache_and_leave_no_store(tmp_path, tiny_neox, token_ids):
    broken = copy.deepcopy(tiny_neox)
    with torch.no_grad():
        broken.gpt_neox.layers[2].mlp.dense_4h_to_h.bias[3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"layers\.2 of sequences 0\.\.4"):
        _write(tmp_path / "c.zarr", broken, token_ids)
    assert not (tmp_path / "c.zarr").exists() and list(tmp_path.iterdir()) == []


def test_a_store_larger_than_the_free_space_is_refused_before_it_is_written(
    tmp_path, tiny_neox, token_ids, monkeypatch
):
    """2 layers x 768 tokens x 64 x float32 = 393,216 bytes: a disk with one byte less refuses the
    store and keeps nothing; one with exactly that much takes it."""
    needed = 2 * token_ids.size * 64 * 4
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=needed - 1))
    with pytest.raises(NoRoomError, match=rf"^{tmp_path} has 0\.00 GB free and c\.zarr takes 0\.00 GB: nothing was"):
        _write(tmp_path / "c.zarr", tiny_neox, token_ids)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=needed))
    _write(tmp_path / "c.zarr", tiny_neox, token_ids)
    assert ActivationCache(tmp_path / "c.zarr").n_tokens == token_ids.size


def test_read_ahead_keeps_order_raises_the_readers_error_and_stops_when_closed():
    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("chunk 7 unreadable")

    with pytest.raises(OSError, match="chunk 7 unreadable"):
        list(read_ahead(failing()))
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    reader = read_ahead(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert not any(t.name == "read_ahead" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 1  # at most depth ahead, plus the one in hand

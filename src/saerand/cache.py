"""Residual-stream activation cache in zarr v3: every selected layer from one forward pass.

Layout of a store: `tokens` (sequences x context, int32) and `layers.{i}` (tokens x d_model),
chunked by rows. The store is written in a staging directory and renamed into place when done,
and its attrs carry `complete: true` last, so a killed job never leaves a store that reads as done;
on opening, every chunk must be on disk (a lost one would read back as zeros).
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm
from zarr.codecs import BloscCodec, ZstdCodec

from .atomic import atomic_directory
from .stores import damaged_chunk

if TYPE_CHECKING:  # readers of a cache (training, evaluation) need no transformers model classes
    from .variants import SubjectModel

COMPRESSORS = {
    "none": None,
    "zstd": ZstdCodec(level=1),
    "blosc": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
}


STORED_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


class IncompleteCacheError(RuntimeError):
    """A store that was not finished (a killed job) or is not an activation cache."""


class NoRoomError(OSError):
    """The filesystem a store goes to has less free space than the store takes."""


class _StopForward(Exception):
    """Raised after the deepest cached layer: the rest of the network is not needed."""


@torch.no_grad()
def residual_stream(subject: SubjectModel, input_ids: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """Output of blocks `layers` (forward hooks on base_model.layers[i]), shape (batch, seq, d).

    `hidden_states[L]` of transformers is after the final LayerNorm; hooks see the true stream.
    """
    captured: dict[int, torch.Tensor] = {}
    deepest = max(layers)
    blocks = subject.base.layers

    def make_hook(index: int):
        def hook(_module, _inputs, output):
            captured[index] = (output[0] if isinstance(output, tuple) else output).detach()
            if index == deepest:
                raise _StopForward

        return hook

    handles = [blocks[i].register_forward_hook(make_hook(i)) for i in layers]
    try:
        subject.base(**subject.model_inputs(input_ids), use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


class _ChunkedWriter:
    """Buffers rows so that every write covers whole chunks (no read-modify-write)."""

    def __init__(self, array, chunk_rows: int):
        self.array, self.chunk_rows = array, chunk_rows
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.row = 0

    def append(self, rows: np.ndarray) -> None:
        self.buffer.append(rows)
        self.buffered += len(rows)
        if self.buffered >= self.chunk_rows:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        block = self.buffer[0] if len(self.buffer) == 1 else np.concatenate(self.buffer)
        n = (len(block) // self.chunk_rows) * self.chunk_rows if whole_chunks_only else len(block)
        self.array[self.row : self.row + n] = block[:n]
        self.row += n
        self.buffer = [block[n:]] if n < len(block) else []
        self.buffered = len(block) - n

    def close(self) -> None:
        if self.buffered:
            self._flush(whole_chunks_only=False)
        if self.row != self.array.shape[0]:
            raise RuntimeError(f"{self.array.name}: wrote {self.row} of {self.array.shape[0]} rows")


class _WriteBehind:
    """Writes a cache's rows from a thread of its own, so that the next forward pass runs while this
    one's rows go to disk. A GPU batch is cast on the GPU and copied into pinned host memory without
    blocking; the thread waits for the copy, checks the rows are finite, and appends them. Its error
    is raised in the caller at the next put or on leaving."""

    def __init__(self, writers: dict[int, _ChunkedWriter], depth: int):
        self.writers = writers
        self.pending: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="cache_writer", daemon=True)
        self.thread.start()

    def put(self, layer: int, rows: torch.Tensor, sequences: tuple[int, int]) -> None:
        """Queue `rows` (already in the stored dtype) of `layer`, from `sequences` (first, last)."""
        finite = torch.isfinite(rows).all()  # on the device: no wait here
        if rows.is_cuda:
            host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
            host.copy_(rows, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:
            host, copied = rows, None
        self._raise()
        self.pending.put((layer, host, copied, finite, sequences))

    def _write(self) -> None:
        while (item := self.pending.get()) is not None:
            if self.error is not None:
                continue  # drained, so that the caller never blocks on a full queue
            layer, host, copied, finite, (first, last) = item
            try:
                if copied is not None:
                    copied.synchronize()
                if not bool(finite):
                    raise FloatingPointError(f"non-finite activations in layers.{layer} of sequences {first}..{last}")
                self.writers[layer].append(host.numpy())
            except BaseException as err:  # raised in the caller
                self.error = err

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.pending.put(None)
        self.thread.join()
        if exc_type is None:
            self._raise()
            for writer in self.writers.values():
                writer.close()


def write_activation_cache(
    path: str | Path,
    subject: SubjectModel,
    sequences: np.ndarray,
    layers: list[int],
    *,
    batch_sequences: int,
    dtype: str,
    chunk_rows: int,
    compressor: str = "none",
    attrs: dict[str, Any] | None = None,
) -> None:
    n_sequences, context = sequences.shape
    n_tokens = n_sequences * context
    d_model = subject.model.config.hidden_size
    device = next(subject.model.parameters()).device
    _check_room(Path(path), n_tokens * d_model * np.dtype(dtype).itemsize * len(layers))
    with atomic_directory(path) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        group.create_array("tokens", data=sequences.astype(np.int32), chunks=(max(1, chunk_rows // context), context))
        writers = {
            layer: _ChunkedWriter(
                group.create_array(
                    f"layers.{layer}",
                    shape=(n_tokens, d_model),
                    chunks=(chunk_rows, d_model),
                    dtype=dtype,
                    compressors=COMPRESSORS[compressor],
                    fill_value=0,
                    # Every chunk is written: without this zarr compares each one to the fill value first.
                    config={"write_empty_chunks": True},
                ),
                chunk_rows,
            )
            for layer in layers
        }
        # Two batches' rows in flight: the forward pass of the next overlaps the writing of this one.
        with _WriteBehind(writers, depth=2 * len(layers)) as behind:
            for start in tqdm(range(0, n_sequences, batch_sequences), desc="caching", unit="batch"):
                ids = torch.from_numpy(sequences[start : start + batch_sequences]).long().to(device)
                for layer, acts in residual_stream(subject, ids, layers).items():
                    # Cast on the GPU: half the bytes cross to the host, and no second pass on the CPU.
                    rows = acts.reshape(-1, d_model).to(STORED_DTYPES[dtype])
                    behind.put(layer, rows, (start, start + len(ids) - 1))
        group.attrs.update(
            {
                **(attrs or {}),
                "layers": list(layers),
                "n_tokens": n_tokens,
                "n_sequences": n_sequences,
                "context_length": context,
                "d_model": d_model,
                "dtype": dtype,
                "chunk_rows": chunk_rows,
                "compressor": compressor,
            }
        )
        group.attrs["complete"] = True


def _check_room(path: Path, needed: int) -> None:
    """Refuse before the forward passes when the store's filesystem cannot hold it (uncompressed;
    a codec only shrinks it), instead of failing at the last chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise NoRoomError(
            f"{path.parent} has {free / 1e9:,.2f} GB free and {path.name} takes {needed / 1e9:,.2f} GB: nothing "
            "was written. Free space there, or for training shards point cache.node_local_dir at a larger disk "
            "(null: the shared filesystem)."
        )


class ActivationCache:
    """Read side: refuses unfinished stores, returns float32 (fp16 into sparsify gives fvu = 0)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.group = zarr.open_group(self.path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            raise IncompleteCacheError(f"{self.path} is not an activation cache") from err
        self.attrs = dict(self.group.attrs)
        if self.attrs.get("complete") is not True:
            raise IncompleteCacheError(f"{self.path} was not completed (killed job?): rebuild it")
        self.n_tokens: int = self.attrs["n_tokens"]
        self.d_model: int = self.attrs["d_model"]
        self.layers: list[int] = self.attrs["layers"]
        self._check_whole()

    def _check_whole(self) -> None:
        """Every layer as long as the store says, every chunk on disk."""
        short = [name for name, array in self.group.arrays() if name != "tokens" and array.shape[0] != self.n_tokens]
        problem = (
            f"{short[0]} does not hold n_tokens = {self.n_tokens} rows"
            if short
            else damaged_chunk(self.group, self.path)
        )
        if problem:
            # Training shards are shard-{s}.zarr (workflow/rules/cache.smk), the held-out text eval.zarr.
            rule = "cache_train_shard" if self.path.name.startswith("shard-") else "cache_eval"
            raise IncompleteCacheError(
                f"activation cache {self.path} is damaged: {problem}. "
                f"Remove it and run the workflow again: rule {rule} rebuilds it"
            )

    def activations(self, layer: int):
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in cache {self.path} (has {self.layers})")
        return self.group[f"layers.{layer}"]

    def tokens(self) -> np.ndarray:
        return self.group["tokens"][:]

    def batches(
        self,
        layer: int,
        batch_rows: int,
        *,
        drop_last: bool = False,
        shuffle_seed: int | None = None,
        window_chunks: int = 8,
        block_rows: int = 16,
        device: str | torch.device = "cpu",
        read_threads: int = 4,
        windows_ahead: int = 2,
        stats: ReaderStats | None = None,
    ) -> Iterator[torch.Tensor]:
        """`batch_rows` rows at a time, float32 on `device`, always reading whole chunks (random row
        reads are slow).

        shuffle_seed None: rows in stored order. Otherwise the buffer is mixed: its chunks are read
        in a seeded random order, `window_chunks` at a time, and the blocks of `block_rows`
        consecutive rows of each window are permuted together (whole blocks copy several times
        faster than single rows), so every batch draws from that many random places of the store.

        A background thread reads up to `windows_ahead` windows ahead of the one being consumed,
        `read_threads` chunks at once, into pinned host memory in the stored dtype; the window is
        copied to `device` without blocking, cast and mixed there. The batches are the same, bit for
        bit, on every device and with any number of threads; `stats` records the reader's busy time
        and the consumer's waits.
        """
        array = self.activations(layer)
        rows_per_chunk = array.chunks[0]
        starts = list(range(0, self.n_tokens, rows_per_chunk))
        if shuffle_seed is None:
            per_read, rng = max(1, -(-batch_rows // rows_per_chunk)), None
        else:
            per_read, rng = window_chunks, np.random.default_rng(shuffle_seed)
            starts = [starts[i] for i in rng.permutation(len(starts))]
        pin = torch.device(device).type == "cuda"
        stats = ReaderStats() if stats is None else stats

        def windows() -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
            with ThreadPoolExecutor(read_threads, thread_name_prefix="chunk_reader") as pool:
                for first in range(0, len(starts), per_read):
                    began = time.perf_counter()
                    group = starts[first : first + per_read]
                    sizes = [min(rows_per_chunk, self.n_tokens - start) for start in group]
                    window = torch.empty((sum(sizes), self.d_model), dtype=_TORCH_DTYPES[array.dtype], pin_memory=pin)
                    places = np.cumsum([0, *sizes])
                    parts = [window[place : place + size].numpy() for place, size in zip(places, sizes)]
                    list(pool.map(_read_rows, [array] * len(group), group, parts))
                    # Drawn window by window, as the reading order needs: the seed fixes every batch.
                    order = None if rng is None else rng.permutation(len(window) // block_rows)
                    stats.read_seconds += time.perf_counter() - began
                    stats.windows += 1
                    yield window, order

        carry = torch.empty((0, self.d_model), dtype=torch.float32, device=device)  # rows short of a batch
        reader = read_ahead(windows(), depth=windows_ahead)
        try:
            while True:
                began = time.perf_counter()
                item = next(reader, None)
                stats.wait_seconds += time.perf_counter() - began
                if item is None:
                    break
                stored, order = item
                window = stored.to(device, non_blocking=True).float()
                if order is not None:
                    window = _permute_blocks(window, block_rows, torch.from_numpy(order).to(device, non_blocking=True))
                if len(carry):
                    window = torch.cat([carry, window])
                full = len(window) // batch_rows * batch_rows
                for begin in range(0, full, batch_rows):
                    yield window[begin : begin + batch_rows]
                carry = window[full:].clone()
        finally:
            reader.close()
        if len(carry) and not drop_last:
            yield carry


def _read_rows(array, start: int, out: np.ndarray) -> None:
    """Rows start.. of `array` into `out` (zarr releases the GIL while it reads)."""
    out[:] = array[start : start + len(out)]


@dataclasses.dataclass
class ReaderStats:
    """Where a reader's time went: reading windows (in its thread) and the consumer waiting for one."""

    read_seconds: float = 0.0
    wait_seconds: float = 0.0
    windows: int = 0


def _permute_blocks(rows: torch.Tensor, block_rows: int, order: torch.Tensor) -> torch.Tensor:
    """`rows` with its whole blocks of `block_rows` in `order`; a last partial block stays last."""
    whole = len(order) * block_rows
    blocks = rows[:whole].view(-1, block_rows, rows.shape[1])
    mixed = blocks.index_select(0, order).view(whole, rows.shape[1])
    return torch.cat([mixed, rows[whole:]]) if whole < len(rows) else mixed


def read_ahead(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """`items` in order, produced by a background thread up to `depth` ahead, so reading and mixing
    the next batch (zarr and numpy release the GIL) overlaps the GPU's work on this one. An error
    in the thread is raised here; closing this iterator stops the thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()
    end = object()

    def hand_over(item: Any) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over((item, None)):
                    return
            hand_over((end, None))
        except BaseException as err:  # handed to the consumer, which raises it
            hand_over((None, err))
        finally:
            if hasattr(items, "close"):  # a generator's own clean-up (its thread pool) runs here
                items.close()

    thread = threading.Thread(target=produce, name="read_ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, err = ready.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stopped.set()
        thread.join()

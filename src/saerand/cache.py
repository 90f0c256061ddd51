"""Residual-stream activation cache in zarr v3: every selected layer from one forward pass.

Layout of a store: `tokens` (sequences x context, int32) and `layers.{i}` (tokens x d_model),
chunked by rows. The store is written in a staging directory and renamed into place when done,
and its attrs carry `complete: true` last, so a killed job never leaves a store that reads as done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm
from zarr.codecs import BloscCodec, ZstdCodec

from .atomic import atomic_directory
from .variants import SubjectModel

COMPRESSORS = {
    "none": None,
    "zstd": ZstdCodec(level=1),
    "blosc": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
}


class IncompleteCacheError(RuntimeError):
    """A store that was not finished (a killed job) or is not an activation cache."""


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
        block = np.concatenate(self.buffer)
        n = (len(block) // self.chunk_rows) * self.chunk_rows if whole_chunks_only else len(block)
        if not np.isfinite(block[:n]).all():
            raise FloatingPointError(f"non-finite activations near row {self.row} of {self.array.name}")
        self.array[self.row : self.row + n] = block[:n]
        self.row += n
        self.buffer = [block[n:]] if n < len(block) else []
        self.buffered = len(block) - n

    def close(self) -> None:
        if self.buffered:
            self._flush(whole_chunks_only=False)
        if self.row != self.array.shape[0]:
            raise RuntimeError(f"{self.array.name}: wrote {self.row} of {self.array.shape[0]} rows")


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
    with atomic_directory(path) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        group.create_array("tokens", data=sequences.astype(np.int32), chunks=(max(1, chunk_rows // context), context))
        writers = {
            layer: _ChunkedWriter(
                group.create_array(
                    f"layers.{layer}", shape=(n_tokens, d_model), chunks=(chunk_rows, d_model),
                    dtype=dtype, compressors=COMPRESSORS[compressor], fill_value=0,
                ),
                chunk_rows,
            )
            for layer in layers
        }
        for start in tqdm(range(0, n_sequences, batch_sequences), desc="caching", unit="batch"):
            ids = torch.from_numpy(sequences[start : start + batch_sequences]).long().to(device)
            for layer, acts in residual_stream(subject, ids, layers).items():
                writers[layer].append(acts.reshape(-1, d_model).float().cpu().numpy().astype(dtype))
        for writer in writers.values():
            writer.close()
        group.attrs.update({
            **(attrs or {}),
            "layers": list(layers), "n_tokens": n_tokens, "n_sequences": n_sequences,
            "context_length": context, "d_model": d_model, "dtype": dtype,
            "chunk_rows": chunk_rows, "compressor": compressor,
        })
        group.attrs["complete"] = True


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

    def activations(self, layer: int):
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in cache {self.path} (has {self.layers})")
        return self.group[f"layers.{layer}"]

    def tokens(self) -> np.ndarray:
        return self.group["tokens"][:]

    def batches(self, layer: int, batch_rows: int, *, drop_last: bool = False) -> Iterator[torch.Tensor]:
        """Rows in order, `batch_rows` at a time, reading whole chunks sequentially."""
        array = self.activations(layer)
        span = max(array.chunks[0], batch_rows)
        pending = np.empty((0, self.d_model), dtype=np.float32)
        for start in range(0, self.n_tokens, span):
            pending = np.concatenate([pending, array[start : start + span].astype(np.float32)])
            while len(pending) >= batch_rows:
                yield torch.from_numpy(pending[:batch_rows].copy())
                pending = pending[batch_rows:]
        if len(pending) and not drop_last:
            yield torch.from_numpy(pending)

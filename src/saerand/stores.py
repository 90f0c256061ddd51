"""Zarr stores checked whole on opening: zarr reads a missing chunk as its fill value, without error."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import zarr


def damaged_chunk(group: zarr.Group, path: str | Path) -> str | None:
    """The first chunk of the group's arrays that is missing or, stored uncompressed, shorter than
    a whole chunk (zarr pads edge chunks to full size), described; None when every chunk is whole."""
    for name, array in group.arrays():
        # A compressed chunk's size is unknown until decoded; its codec refuses a truncated one.
        whole_bytes = math.prod(array.chunks) * array.dtype.itemsize
        uncompressed = not array.compressors and not array.filters
        for index in itertools.product(*(range(count) for count in array.cdata_shape)):
            key = array.metadata.encode_chunk_key(index)
            try:
                size = (Path(path) / array.path / key).stat().st_size
            except FileNotFoundError:
                return f"chunk {key} of {name} is missing (zarr would read it as zeros)"
            if uncompressed and size != whole_bytes:
                return f"chunk {key} of {name} holds {size} of its {whole_bytes} bytes (truncated)"
            if size == 0:
                return f"chunk {key} of {name} is empty (truncated)"
    return None

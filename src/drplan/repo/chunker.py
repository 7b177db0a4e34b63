"""Content-defined chunking with FastCDC (the compiled pyfastcdc), parameters from the repository config."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from pyfastcdc import FastCDC

from drplan.repo.config import ChunkerParams


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class Chunker:
    """Cuts a stream into chunks whose boundaries follow content, so an insertion moves few of them.

    Not thread-safe: use one per thread.
    """

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalization,  # type: ignore[arg-type]
            seed=params.seed,
        )

    def chunks(self, stream: BinaryIO | io.RawIOBase | Readable) -> Iterator[memoryview]:
        """Chunks of ``stream``; each view is valid only until the next one is produced."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

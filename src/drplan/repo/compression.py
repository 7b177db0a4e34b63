"""zstd compression of blobs, skipped when it does not pay (already compressed or random data)."""

from __future__ import annotations

import threading

import zstandard

NONE, ZSTD = 0, 1
# Compression must save at least 1/32 of a blob to be kept: below that, reading it
# back costs more than the few bytes saved.
MIN_SAVING_SHIFT = 5
# Probing a sample first avoids compressing a whole 4 MiB random chunk to learn that.
PROBE_SIZE = 64 * 1024

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    d: zstandard.ZstdDecompressor = _local.decompressor
    return d


def compress(
    data: bytes | bytearray | memoryview, level: int
) -> tuple[int, bytes | bytearray | memoryview]:
    """(ZSTD, compressed) when that saves enough, else (NONE, data)."""
    size = len(data)
    if size < 64:
        return NONE, data
    compressor = _compressor(level)
    if size > 2 * PROBE_SIZE:
        probe = compressor.compress(data[:PROBE_SIZE])
        if len(probe) > PROBE_SIZE - (PROBE_SIZE >> MIN_SAVING_SHIFT):
            return NONE, data
    packed = compressor.compress(data)
    if len(packed) > size - (size >> MIN_SAVING_SHIFT):
        return NONE, data
    return ZSTD, packed


def decompress(kind: int, data: bytes, raw_length: int) -> bytes:
    if kind == NONE:
        return data
    if kind == ZSTD:
        return _decompressor().decompress(data, max_output_size=raw_length)
    raise ValueError(f"unknown compression {kind}")

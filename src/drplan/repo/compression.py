"""zstd compression of blobs, skipped when it does not pay (already compressed or random data)."""

from __future__ import annotations

import threading

import zstandard

from drplan.errors import IntegrityError

NONE, ZSTD = 0, 1
# Compression must save at least 1/32 of a blob to be kept: below that, reading it
# back costs more than the few bytes saved.
MIN_SAVING_SHIFT = 5
# Probing a sample first avoids compressing a whole 4 MiB random chunk to learn that.
PROBE_SIZE = 64 * 1024

STREAM_CHUNK = 1024 * 1024

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


def decompress(kind: int, data: bytes, limit: int, what: str) -> bytes:
    """The plaintext of ``data`` stored as ``kind``, at most ``limit`` bytes; IntegrityError
    (naming ``what``) for anything else: an unknown kind, a broken frame, or more than
    ``limit``. zstd allocates what a frame declares before it reads a byte, so that is
    held to ``limit`` first; a frame declaring nothing (drplan's frames always declare)
    is read a chunk at a time, where zstd would allocate all of ``limit``."""
    if kind == NONE:
        return data
    if kind != ZSTD:
        raise IntegrityError(f"{what}: unknown compression {kind}")
    try:
        declared = zstandard.frame_content_size(data)
        if declared > limit:
            raise IntegrityError(f"{what}: declares {declared} bytes uncompressed, over {limit}")
        if declared >= 0:
            return _decompressor().decompress(data)
        return _streamed(data, limit, what)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{what}: cannot be decompressed ({exc})") from None


def _streamed(data: bytes, limit: int, what: str) -> bytes:
    out = bytearray()
    with _decompressor().stream_reader(data) as reader:
        while chunk := reader.read(STREAM_CHUNK):
            out += chunk
            if len(out) > limit:
                raise IntegrityError(f"{what}: holds more than {limit} bytes uncompressed")
    return bytes(out)

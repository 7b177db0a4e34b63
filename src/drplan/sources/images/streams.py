"""Streams to and from a registry: a blob's body checked against its digest as it is
read, stored chunks read back as a stream, and the next part of a stream (one upload
chunk)."""

from __future__ import annotations

import hashlib
import http.client
import io
from collections.abc import Iterable, Iterator

from drplan.sources.images.manifest import DigestMismatchError, RegistryUnreachableError


class BlobReader(io.RawIOBase):
    """A blob's body as it arrives; at its end, size and SHA-256 must match, or reading
    raises :class:`DigestMismatchError` instead of returning the last empty read."""

    def __init__(self, response: http.client.HTTPResponse, digest: str, what: str) -> None:
        self._response = response
        self._digest = digest
        self._hash = hashlib.sha256()
        self._what = what
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        try:
            count = self._response.readinto(view)
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryUnreachableError(f"{self._what}: connection lost ({exc})") from None
        if count == 0:
            got = "sha256:" + self._hash.hexdigest()
            if got != self._digest:
                raise DigestMismatchError(
                    f"{self._what}: content has digest {got}, not {self._digest} (refused)",
                    hint="the registry's storage is damaged or something altered the download",
                )
            return 0
        self._hash.update(view[:count])
        self.size += count
        return count

    def close(self) -> None:
        self._response.close()
        super().close()


class IterReader(io.RawIOBase):
    """Chunks (a stored file, read back) as a stream."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


class Bounded(io.RawIOBase):
    """The next ``length`` bytes of a stream (one PATCH chunk)."""

    def __init__(self, stream: io.RawIOBase, length: int) -> None:
        self._stream, self._left = stream, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._stream.readinto(view) or 0
        self._left -= count
        return count

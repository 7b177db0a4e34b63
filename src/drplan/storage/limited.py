"""A bandwidth limit: a Storage whose writes (and, if asked, reads) of another go no faster
than a given number of bytes per second, for work that must not crowd out backups on the
same link (re-encrypting a whole repository).

The limit is a token bucket shared by every thread using the storage: a write waits until
its bytes fit under the rate, with a burst of one second's worth, so parallel pack
writers together stay under it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from drplan.storage.base import Storage


class Bucket:
    """Bytes per second, with a burst of one second: ``take`` blocks until ``n`` fit."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth limit must be positive")
        self.rate = rate
        self._level = rate
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:  # one waiter at a time: the order of writes is kept
            now = time.monotonic()
            self._level = min(self.rate, self._level + (now - self._stamp) * self.rate)
            self._stamp = now
            self._level -= n
            short = -self._level / self.rate if self._level < 0 else 0.0
            if short > 0:
                time.sleep(short)  # paying for these bytes: the limit is the wait


class LimitedStorage:
    """``inner`` with writes (and reads, given ``read_rate``) held to a rate in bytes/s."""

    def __init__(self, inner: Storage, write_rate: float, read_rate: float | None = None) -> None:
        self.inner = inner
        self._write = Bucket(write_rate)
        self._read = Bucket(read_rate) if read_rate else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(
        self, name: str, data: bytes, *, hot: bool = False, content_type: str | None = None
    ) -> None:
        self._write.take(len(data))
        self.inner.write(name, data, hot=hot, content_type=content_type)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.read(name, offset, length)
        if self._read is not None:
            self._read.take(len(data))
        return data

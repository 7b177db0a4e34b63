"""Retries: a Storage that tries each operation of another again while it fails transiently.

The backend below makes one attempt per operation and says, by the error contract,
whether another may help (:class:`TransientError`); this wrapper owns the policy:
how many attempts, and how long to wait between them. Waits grow exponentially with
full jitter (a random share of the ceiling), so clients that failed together do not
retry together; a service asking to slow down (:class:`Throttled`) gets longer ones.

Trying again is safe for every operation: an object's name is the hash of its bytes, so
writing it again writes the same object; a retried delete that finds the object gone
was carried out by the attempt that seemed to fail. An operation that keeps failing
raises its last error, saying how many attempts were made. :class:`NotFound` and
permanent errors are raised at once.

A response cut short counts as a failed attempt like any other: the retry is what
makes a truncated or reset download harmless (the backend detects it, by length).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from drplan.storage.base import NotFound, ObjectInfo, Storage, Throttled, TransientError

T = TypeVar("T")

ATTEMPTS = 8  # per operation, the first included
BACKOFF = 0.1  # seconds: the ceiling of the first wait, doubled for each attempt after
THROTTLED_BACKOFF = 0.5  # seconds: the same when the service asks to slow down
MAX_BACKOFF = 20.0  # seconds: no wait is longer


class RetryingStorage:
    """``inner`` with each operation tried up to ``attempts`` times."""

    def __init__(
        self,
        inner: Storage,
        attempts: int = ATTEMPTS,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.attempts = attempts
        self._sleep = sleep
        self._random = random.Random()

    def _wait(self, failed: int, error: TransientError) -> None:
        """Before attempt ``failed + 1``: full jitter under an exponential ceiling."""
        base = THROTTLED_BACKOFF if isinstance(error, Throttled) else BACKOFF
        self._sleep(self._random.uniform(0, min(MAX_BACKOFF, base * 2 ** (failed - 1))))

    def _exhausted(self, error: TransientError) -> TransientError:
        noun = "attempt" if self.attempts == 1 else "attempts"
        final = type(error)(f"{error.message} after {self.attempts} {noun}", error.hint)
        final.origin = error.origin
        return final

    def _retry(self, operation: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except TransientError as error:
                if attempt == self.attempts:
                    raise self._exhausted(error) from None
                self._wait(attempt, error)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # -- the Storage protocol ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.inner.url

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(lambda: self.inner.read(name, offset, length))

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        self._retry(lambda: self.inner.write(name, data, hot=hot, content_type=content_type))

    def delete(self, name: str) -> None:
        tried = False

        def delete() -> None:
            nonlocal tried
            try:
                self.inner.delete(name)
            except NotFound:
                if not tried:
                    raise
                # gone: the attempt that seemed to fail deleted it
            except TransientError:
                tried = True
                raise

        self._retry(delete)

    def verify(self, name: str, data: bytes) -> None:
        self._retry(lambda: self.inner.verify(name, data))

    @property
    def lock_days(self) -> int | None:
        return self.inner.lock_days

    def locked_until(self, name: str) -> datetime | None:
        return self._retry(lambda: self.inner.locked_until(name))

    def lock_until(self, name: str, until: datetime) -> None:
        self._retry(lambda: self.inner.lock_until(name, until))

    @property
    def archives(self) -> bool:
        return self.inner.archives

    def thaw_state(self, name: str) -> str:
        return self._retry(lambda: self.inner.thaw_state(name))

    def request_thaw(self, name: str, days: int, tier: str) -> None:
        self._retry(lambda: self.inner.request_thaw(name, days, tier))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """A listing that fails part way starts again and skips what it already gave. The
        attempts count failures in a row: a listing that moves on between them goes on."""
        given: set[str] = set()
        failed = 0
        while True:
            progressed = False
            try:
                for info in self.inner.list(prefix):
                    if info.name not in given:
                        given.add(info.name)
                        progressed = True
                        yield info
                return
            except TransientError as error:
                failed = 1 if progressed else failed + 1
                if failed == self.attempts:
                    raise self._exhausted(error) from None
                self._wait(failed, error)

    def stat(self, name: str) -> ObjectInfo:
        return self._retry(lambda: self.inner.stat(name))

    def exists(self) -> bool:
        return self._retry(self.inner.exists)

    def free_space(self) -> int | None:
        return self._retry(self.inner.free_space)

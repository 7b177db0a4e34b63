"""Storing the blobs of one stream on worker threads, so a single stream uses every core.

A file backup reads many files at once and keeps the cores busy that way; a base
backup is one stream, read and cut into chunks by one thread. Hashing, compressing
and sealing a chunk cost more than reading and cutting it (measured on pgbench data:
about 2.6 ns a byte against 1.7), and the libraries release the GIL for all three, so
the reading thread hands each chunk to a pool and goes on. Each chunk's id comes
back as a future; callers keep them in stream order.

At most ``workers * IN_FLIGHT_PER_WORKER`` chunks wait or are being stored: memory
stays bounded (chunks are at most 4 MiB by default), and a slow repository slows the
reader instead of filling memory.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from drplan.repo.repository import Repository

IN_FLIGHT_PER_WORKER = 3
MAX_WORKERS = 4


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class BlobPool:
    """``save`` hands a blob to a worker; ``close`` (or leaving the ``with``) waits for all.

    On an error inside the ``with``, blobs not yet started are dropped and running ones
    finish before it propagates, so no worker writes to the repository afterwards.
    """

    def __init__(self, repo: Repository, blob_type: int, workers: int | None = None) -> None:
        self.repo = repo
        self.blob_type = blob_type
        workers = workers or default_workers()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="drplan-blob")
        self._slots = threading.BoundedSemaphore(workers * IN_FLIGHT_PER_WORKER)
        self._failure: BaseException | None = None

    def save(self, data: bytes | bytearray) -> Future[bytes]:
        """The future id of ``data``, stored unless the repository has it. ``data`` must
        not change afterwards (pass bytes, not a view into a buffer about to be reused)."""
        if self._failure is not None:
            raise self._failure  # stop reading a stream whose backup cannot finish
        self._slots.acquire()
        try:
            future = self._pool.submit(self._save, data)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)
        return future

    def _save(self, data: bytes | bytearray) -> bytes:
        return self.repo.save_blob(self.blob_type, data)[0]

    def _done(self, future: Future[bytes]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> BlobPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(cancel=kind is not None)

"""Blobs of one stream stored on worker threads: ids come back in order and the blobs are
in the repository once the pool is closed; a failure stops the stream and no worker
writes after the pool is left."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from drplan.repo.blob_pool import BlobPool
from drplan.repo.keys import KdfParams
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.storage.local import LocalStorage

FAST_KDF = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)


def new_repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    storage = LocalStorage(tmp_path_factory.mktemp("repo"))
    return Repository.init(storage, b"pw", kdf=FAST_KDF)


class FullDisk(LocalStorage):
    """A location whose disk fills up: every pack write fails."""

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        if name.startswith("data/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(name, data, hot=hot)


def test_ids_come_back_in_order_and_every_blob_is_stored(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repo = new_repo(tmp_path_factory)
    blobs = [os.urandom(1000 + i) for i in range(200)] + [b"same"] * 5
    with BlobPool(repo, DATA, workers=3) as pool:
        futures = [pool.save(b) for b in blobs]
    ids = [f.result() for f in futures]
    assert ids == [repo.key.blob_id(b) for b in blobs]
    repo.flush()
    reopened = Repository.open(repo.storage, b"pw")
    reopened.load_index()
    assert [reopened.read_blob(i) for i in ids] == blobs
    assert repo.stats.blobs_added == 201  # the five equal ones stored once


def test_a_failed_write_stops_the_stream(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("repo")
    Repository.init(LocalStorage(path), b"pw", kdf=FAST_KDF)
    repo = Repository.open(FullDisk(path), b"pw")
    saved: list[int] = []

    def stream() -> None:
        with BlobPool(repo, DATA, workers=2) as pool:
            for _ in range(10_000):  # 640 MB: far past the packs the repository holds
                pool.save(os.urandom(64 * 1024))
                saved.append(1)

    with pytest.raises(OSError, match="No space left"):
        stream()
    assert len(saved) < 2000  # the failure stopped the stream soon after the first full pack
    repo.settle()


def test_leaving_on_an_error_waits_for_running_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repo = new_repo(tmp_path_factory)
    started, release = threading.Event(), threading.Event()
    finished: list[bytes] = []

    class Slow(Repository):
        def save_blob(self, blob_type: int, plaintext: object, blob_id: bytes | None = None):  # type: ignore[no-untyped-def]
            started.set()
            release.wait(10)
            finished.append(bytes(plaintext))  # type: ignore[call-overload]
            return b"id", True

    slow = Slow(repo.storage, repo.config, repo.key, repo.key_id)

    def stream() -> None:
        with BlobPool(slow, DATA, workers=1) as pool:
            pool.save(b"running")
            queued = pool.save(b"queued")
            assert started.wait(10)

            def release_once_dropped() -> None:  # the running one ends after the error
                deadline = time.monotonic() + 10
                while not queued.cancelled() and time.monotonic() < deadline:
                    time.sleep(0.01)
                release.set()

            threading.Thread(target=release_once_dropped).start()
            raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        stream()
    # the running blob finished before the error left the pool; the queued one never ran
    assert finished == [b"running"]

"""One suite for every Storage backend: LocalStorage, and S3Storage on a real SeaweedFS.

What only S3 has is in test_s3.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from drplan.errors import IntegrityError
from drplan.storage import NotFound, ObjectInfo, Storage, StorageError
from drplan.storage.local import LocalStorage
from drplan.storage.s3 import MIN_PART_SIZE, S3Storage
from tests.fixtures.seaweedfs import SeaweedFS
from tests.unit.storage.samples import FAR_PACK, LARGE, OTHER_PACK, PACK, blob


@dataclass
class Backend:
    storage: Storage
    absent: Callable[[], Storage]  # a storage whose root (directory, bucket) does not exist


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend(LocalStorage(tmp_path / "repo"), lambda: LocalStorage(tmp_path / "absent"))
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    bucket: S3Storage = request.getfixturevalue("s3_bucket")
    return Backend(bucket, lambda: seaweedfs.storage(f"drplan-absent-{uuid.uuid4().hex[:12]}"))


# --- the contract, on every backend ------------------------------------------------


def test_write_then_read_round_trips(backend: Backend) -> None:
    storage = backend.storage
    storage.write("config", b"the config")
    storage.write(PACK, blob(1000))
    assert storage.read("config") == b"the config"
    assert storage.read(PACK) == blob(1000)
    assert storage.stat(PACK) == ObjectInfo(PACK, 1000)


def test_ranged_reads_return_the_bytes_asked_for_and_stop_at_the_end(backend: Backend) -> None:
    storage = backend.storage
    data = blob(1024)
    storage.write(PACK, data)
    assert storage.read(PACK, 10, 20) == data[10:30]
    assert storage.read(PACK, 0, 1) == data[:1]
    assert storage.read(PACK, 1000) == data[1000:]
    assert storage.read(PACK, 1000, 100) == data[1000:]
    assert storage.read(PACK, 1023, 1) == data[1023:]
    assert storage.read(PACK, 500, 0) == b""
    assert storage.read(PACK, 1024) == b""
    assert storage.read(PACK, 2000, 10) == b""


def test_writing_the_same_name_again_is_allowed_and_keeps_one_object(backend: Backend) -> None:
    storage = backend.storage
    storage.write(PACK, b"same bytes")
    storage.write(PACK, b"same bytes")
    assert storage.read(PACK) == b"same bytes"
    assert list(storage.list("data/")) == [ObjectInfo(PACK, 10)]


def test_listings_say_when_each_object_was_written(backend: Backend) -> None:
    """The WAL archive's age (the recovery point exposure) is read from listings."""
    storage = backend.storage
    before = time.time()
    storage.write(PACK, b"x")
    (listed,) = storage.list("data/")
    # S3 stores whole seconds; clocks of a local server agree with ours.
    assert before - 2 <= listed.mtime <= time.time() + 2


def test_a_missing_object_is_not_found_for_read_stat_and_delete(backend: Backend) -> None:
    storage = backend.storage
    storage.write("config", b"x")  # the root exists; only the object is missing
    for operation in (
        lambda: storage.read(PACK),
        lambda: storage.read(PACK, 5, 10),
        lambda: storage.read(PACK, 0, 0),
        lambda: storage.stat(PACK),
        lambda: storage.delete(PACK),
    ):
        with pytest.raises(NotFound) as info:
            operation()
        assert PACK in str(info.value)
        assert isinstance(info.value, StorageError)


def test_verify_accepts_what_was_written_and_rejects_anything_else(backend: Backend) -> None:
    storage = backend.storage
    storage.write(PACK, blob(1000))
    storage.verify(PACK, blob(1000))
    with pytest.raises(IntegrityError, match="does not hold what was written"):
        storage.verify(PACK, blob(1000, seed=2))
    with pytest.raises(NotFound):
        storage.verify(OTHER_PACK, blob(10))


def test_delete_removes_the_object(backend: Backend) -> None:
    storage = backend.storage
    storage.write(PACK, b"pack")
    storage.write(OTHER_PACK, b"other")
    storage.delete(PACK)
    with pytest.raises(NotFound):
        storage.stat(PACK)
    assert list(storage.list("data/")) == [ObjectInfo(OTHER_PACK, 5)]


def test_list_finds_objects_by_name_prefix_at_any_depth(backend: Backend) -> None:
    storage = backend.storage
    sizes = {
        "config": 6,
        "keys/k1": 2,
        PACK: 3,
        OTHER_PACK: 4,
        FAR_PACK: 5,
        "index/i1": 7,
        "snapshots/s1": 8,
    }
    for name, size in sizes.items():
        storage.write(name, blob(size))

    def names(prefix: str) -> dict[str, int]:
        return {info.name: info.size for info in storage.list(prefix)}

    assert names("") == sizes
    assert names("data/") == {n: s for n, s in sizes.items() if n.startswith("data/")}
    assert names("data/ab/") == {PACK: 3, OTHER_PACK: 4}
    assert names("data/c") == {FAR_PACK: 5}
    assert names(PACK[:12]) == {PACK: 3}
    assert names("keys") == {"keys/k1": 2}
    assert names("locks/") == {}
    assert names("nothing/at/all/") == {}


def test_an_empty_object_is_stored_and_read(backend: Backend) -> None:
    storage = backend.storage
    storage.write("locks/l1", b"")
    assert storage.read("locks/l1") == b""
    assert storage.read("locks/l1", 0, 10) == b""
    assert storage.stat("locks/l1") == ObjectInfo("locks/l1", 0)
    assert list(storage.list("locks/")) == [ObjectInfo("locks/l1", 0)]


def test_a_large_object_round_trips_whole_and_in_ranges(backend: Backend) -> None:
    storage = backend.storage
    data = blob(LARGE)
    storage.write(FAR_PACK, data)
    assert storage.stat(FAR_PACK).size == LARGE
    assert storage.read(FAR_PACK) == data
    boundary = MIN_PART_SIZE  # where the first part ends on S3
    assert storage.read(FAR_PACK, boundary - 10, 20) == data[boundary - 10 : boundary + 10]
    assert storage.read(FAR_PACK, LARGE - 5) == data[-5:]


def test_exists_tells_whether_the_root_is_there(backend: Backend) -> None:
    backend.storage.write("config", b"x")
    assert backend.storage.exists()
    assert not backend.absent().exists()


def test_names_that_escape_the_root_are_refused(backend: Backend) -> None:
    for name in ("/etc/passwd", "../outside", "data/../../outside"):
        with pytest.raises(StorageError):
            backend.storage.write(name, b"x")


def test_url_is_printable_and_free_space_is_a_number_or_unknown(backend: Backend) -> None:
    backend.storage.write("config", b"x")
    assert "@" not in backend.storage.url
    free = backend.storage.free_space()
    assert free is None or free > 0

"""Where archived WAL lives in a location: a directory per timeline and log, so finding
one file on a local location lists at most a log's 256 segments, not the whole history."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import WalConflictError
from drplan.repo.repository import Repository
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.storage.local import LocalStorage
from tests.fixtures.fuzz import decoded_or_damage, fuzz, mutated, seal_plaintext
from tests.integration.conftest import init_repo


def test_segments_are_kept_apart_by_log_and_all_are_found(tmp_path: Path) -> None:
    repo = init_repo(LocalStorage(tmp_path / "repo"))
    archive = WalArchive(repo, "db")
    files = {
        "0000000100000000000000FF": b"last segment of log 0",
        "000000010000000100000000": b"first segment of log 1",
        "00000002.history": b"1\t0/1000000\tno recovery target specified\n",
        "000000020000000100000001.00000028.backup": b"START WAL LOCATION: 1/1000028\n",
        "000000020000000100000002.partial": b"half a segment",
    }
    for name, data in files.items():
        assert archive.push(name, data)
    wal = tmp_path / "repo" / "wal" / "db"
    dirs = sorted(p.relative_to(wal).as_posix() for p in wal.rglob("*") if p.is_dir())
    assert dirs == ["00000001", "00000001/00000000", "00000001/00000001",
                    "00000002", "00000002/00000001"]  # fmt: skip
    assert [p.name.split(".")[0] for p in (wal / "00000002").iterdir() if p.is_file()] == [
        "00000002"
    ]  # the history file beside the logs of its timeline
    assert [w.file for w in archive.files()] == sorted(files)
    for name, data in files.items():
        assert archive.fetch(name) == data
        assert not archive.push(name, data)  # the same file again: nothing to do
    with pytest.raises(WalConflictError):
        archive.push("000000010000000100000000", b"another cluster's segment")


SEGMENT = "000000010000000000000003"
WAL = b"\x00\x01page of WAL\x00" * 400


@pytest.fixture(scope="module")
def wal_repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return init_repo(LocalStorage(tmp_path_factory.mktemp("wal") / "repo"))


@fuzz
@given(
    mutated(b"\x01" + zstandard.ZstdCompressor().compress(WAL))
    | mutated(b"\x00" + WAL[:64])
    | st.binary(max_size=64)
)
def test_fuzz_wal_object_plaintext(wal_repo: Repository, plaintext: bytes) -> None:
    """A WAL object that authenticates but holds anything once decrypted: fetching gives
    the file it was archived as, or damage (IntegrityError), never another error."""
    archive = WalArchive(wal_repo, "db")
    archive.push(SEGMENT, WAL)
    (name,) = archive.stored_as(SEGMENT)
    wal_repo.storage.delete(name)
    wal_repo.storage.write(name, seal_plaintext(wal_repo.key, wal_repo.cipher, "wal", plaintext))
    assert decoded_or_damage(lambda: archive.fetch(SEGMENT)) in (None, WAL)
    wal_repo.storage.delete(name)

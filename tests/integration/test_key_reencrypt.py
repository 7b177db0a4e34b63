"""`drplan key rotate --reencrypt`: everything rewritten under the new data key and the old
keys dropped, so that not even a copy of the old keyring reads what is stored; resumable
after a crash at any write; held to a bandwidth limit; damage left as it is and said."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from drplan.errors import DrplanError, IntegrityError
from drplan.repo.check import check_repository
from drplan.repo.crypto import KeyRing
from drplan.repo.key_rotation import Target, rotate_locations
from drplan.repo.keyring import load_keyring
from drplan.repo.objects import open_object
from drplan.repo.pack import read_header
from drplan.repo.reencrypt import reencrypt_locations
from drplan.repo.repository import Repository
from drplan.sources.files.archiver import BackupOptions, backup_files
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from tests.conftest import Result
from tests.integration.conftest import FAST_KDF, PASSWORD, Compare, init_repo
from tests.integration.test_key_rotation import KINDS, Counting, Killed

Run = Callable[..., Result]
NEW = b"after the breach"


def _filled(storage: Storage, source: Path, rounds: int = 3) -> Repository:
    repo = init_repo(storage)
    parent = None
    for i in range(rounds):
        (source / f"f{i}").write_bytes(os.urandom(200_000 + i))
        repo.load_index()
        parent = backup_files(repo, BackupOptions([str(source)], workers=2, parent=parent)).snapshot
    return repo


def _rotated(storage: Storage | Counting, reencrypt: bool = True) -> bool:
    plain = cast(Storage, storage)
    rotate_locations([Target("here", plain)], PASSWORD.encode(), NEW, FAST_KDF, "", True)
    if not reencrypt:
        return False
    return reencrypt_locations([("here", plain)], NEW, None, lambda _: None)[1]


def _nothing_opens_with(storage: Storage, old: KeyRing, cipher: str) -> None:
    kinds = {**KINDS, "audit/": "audit", "revoked/": "revoked", "wal/": "wal"}
    for prefix, kind in kinds.items():
        for info in storage.list(prefix):
            with pytest.raises(IntegrityError):
                open_object(old, cipher, kind, storage.read(info.name), info.name)  # type: ignore[arg-type]
    for info in storage.list("data/"):
        with pytest.raises(IntegrityError):
            read_header(old, cipher, storage.read(info.name), info.name)  # type: ignore[arg-type]


def test_reencryption_leaves_nothing_the_old_keys_open(
    fresh: Callable[[], Storage], tmp_path: Path, run: Run, same_tree: Compare, password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    storage = fresh()
    source = tmp_path / "src"
    source.mkdir()
    before = _filled(storage, source)
    old_ids = [s.id for s in before.snapshots()]
    old_keys = before.key  # every data key the old keyring held

    assert _rotated(storage)

    repo = Repository.open(storage, NEW)
    assert sorted(repo.key.keys) == [repo.key.current]  # the old data keys are gone
    _nothing_opens_with(storage, old_keys, repo.cipher)
    repo.load_index()
    now = repo.snapshots()
    assert len(now) == len(old_ids)
    assert not set(old_ids) & {s.id for s in now}  # re-sealed: new names
    for old in old_ids:  # an old name still finds its snapshot
        assert old in repo.find_snapshot(old[:8]).previous_ids
    assert [s.parent for s in now[1:]] == [s.id for s in now[:-1]]  # parents follow
    assert not [f for f in check_repository(repo, read_data=True).findings if f.severity == "error"]
    if isinstance(storage, LocalStorage):
        monkeypatch.setenv("DRPLAN_PASSWORD", NEW.decode())
        out = tmp_path / "out"
        done = run("restore", old_ids[-1][:8], "--target", str(out), "--repo", str(storage.root))
        assert done.code == 0, done.err
        same_tree(source, out / source.relative_to("/"))


def test_a_crash_at_every_write_of_a_reencryption_and_the_rerun(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    step = 0
    while True:
        storage = LocalStorage(tmp_path / f"repo{step}")
        repo = _filled(storage, source, rounds=2)
        expected = {s.tree for s in repo.snapshots()}
        _rotated(storage, reencrypt=False)
        try:
            reencrypt_locations([("here", cast(Storage, Counting(storage, step)))], NEW, None,
                                lambda _: None)  # fmt: skip
            break
        except Killed:
            for info in list(storage.list("locks/")):  # its pid is gone: stale at once
                storage.delete(info.name)
        opened = Repository.open(storage, NEW)
        opened.load_index()
        assert [s.tree for s in opened.snapshots()].count(next(iter(expected))) == 1, step
        assert {s.tree for s in opened.snapshots()} == expected, step
        report = check_repository(opened, read_data=True)
        assert not [f.message for f in report.findings if f.severity == "error"], step
        assert reencrypt_locations([("here", storage)], NEW, None, lambda _: None)[1], step
        after = Repository.open(storage, NEW)
        assert len(after.key.keys) == 1, (step, [i.name for i in storage.list("keyring/")])
        assert {s.tree for s in after.snapshots()} == expected
        step += 1
    assert step > 10  # packs, indexes, config, tombstone, snapshots, keyring: all cut


def test_the_upload_limit_holds(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    storage = LocalStorage(tmp_path / "repo")
    init_repo(storage)
    (source / "big").write_bytes(os.urandom(3 * 1024 * 1024))
    repo = Repository.open(storage, PASSWORD.encode())
    repo.load_index()
    backup_files(repo, BackupOptions([str(source)], workers=2))
    _rotated(storage, reencrypt=False)
    started = time.monotonic()
    done, dropped = reencrypt_locations([("here", storage)], NEW, 1024 * 1024, lambda _: None)
    took = time.monotonic() - started
    assert dropped
    assert done[0].bytes_written > 3 * 1024 * 1024
    # A second's burst, then 1 MiB/s: 3 MiB cannot go in under 2 s.
    assert took >= 2.0, took


def test_a_damaged_pack_is_left_and_the_old_keys_kept(
    tmp_path: Path, run: Run, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    storage = LocalStorage(tmp_path / "repo")
    _filled(storage, source, rounds=2)
    packs = sorted(p for p in Path(storage.root, "data").rglob("*") if p.is_file())
    victim = packs[0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW.decode())
    done = run("key", "rotate", "--repo", str(storage.root), "--reencrypt")
    assert done.code == 23, done.out + done.err
    assert f"left as it is: pack {victim.name[:16]}" in done.out
    assert "the old data keys are kept" in done.err
    repo = Repository.open(storage, NEW)
    assert len(repo.key.keys) == 2
    with pytest.raises(DrplanError):
        Repository.open(storage, PASSWORD.encode())
    assert len(load_keyring(storage, repo.opened_master(), repo.cipher).live) == 1


def test_a_process_opened_before_a_rotation_stops_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon that opened the repository before a rotation and re-encryption would write
    with data keys that are about to be dropped: it refuses instead, saying to restart."""
    source = tmp_path / "src"
    source.mkdir()
    storage = LocalStorage(tmp_path / "repo")
    _filled(storage, source, rounds=1)
    daemon = Repository.open(storage, PASSWORD.encode())
    daemon.load_index()
    assert _rotated(storage)
    monkeypatch.setattr("drplan.repo.repository.KEYRING_WATCH", 0.0)
    (source / "later").write_bytes(os.urandom(10_000))
    with pytest.raises(DrplanError, match="keyring changed since this process opened it"):
        backup_files(daemon, BackupOptions([str(source)], workers=2))
    repo = Repository.open(storage, NEW)
    assert not [f for f in check_repository(repo, read_data=True).findings if f.severity == "error"]

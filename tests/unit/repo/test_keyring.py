"""The keyring: data keys by generation under the master key; repositories from before
keyrings (generation 0 is the master key's own) open, and rotate into one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drplan.errors import IntegrityError
from drplan.repo.config import RepoConfig
from drplan.repo.crypto import KeyRing, MasterKey
from drplan.repo.key_rotation import Target, rotate_locations
from drplan.repo.keyring import KEYRING_PREFIX, keyring_findings, load_keyring
from drplan.repo.keys import KdfParams, add_key
from drplan.repo.objects import open_object, seal_object
from drplan.repo.pack import DATA, read_header
from drplan.repo.repository import CONFIG, Repository, pack_name
from drplan.storage.local import LocalStorage

FAST = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)
OLD, NEW = b"old", b"new"


def _legacy(storage: LocalStorage) -> Repository:
    """A repository as drplan wrote one before keyrings: the master key seals everything."""
    master = MasterKey.generate()
    config = RepoConfig.new("aes-256-gcm", 3)
    key_id = add_key(storage, master, OLD, FAST, config.cipher, "")
    ring = master.ring()
    storage.write(CONFIG, seal_object(ring, config.cipher, "config", config.to_json()))
    return Repository(storage, config, ring, key_id, master)


def _stored_pack(repo: Repository, data: bytes) -> str:
    repo.save_blob(DATA, data)
    repo.flush()
    return next(
        p.id for p in repo.load_index().packs.values() if p.entries[0].raw_length == len(data)
    )


def test_a_repository_from_before_keyrings_opens_and_rotates_into_one(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    legacy = _legacy(storage)
    old_master = legacy.opened_master()
    before = os.urandom(5000)
    old_pack = _stored_pack(legacy, before)
    assert load_keyring(storage, old_master, legacy.cipher).legacy
    assert storage.read(pack_name(old_pack))[-5] == 1  # a version 1 pack

    rotate_locations([Target("here", storage)], OLD, NEW, FAST, "")

    repo = Repository.open(storage, NEW)
    repo.load_index()
    assert sorted(repo.key.keys) == [0, 1]
    assert repo.key.keys[0] == old_master.encryption  # the upgrade: generation 0 kept
    assert repo.read_blob(repo.key.blob_id(before)) == before
    after = os.urandom(6000)
    new_pack = _stored_pack(repo, after)
    header = storage.read(pack_name(new_pack))
    assert header[-5] == 2  # version 2, generation 1
    # What the threat model says: the old master key still reads generation 0, not 1.
    read_header(old_master.ring(), repo.cipher, storage.read(pack_name(old_pack)), "old")
    with pytest.raises(IntegrityError, match="generation 1"):
        read_header(old_master.ring(), repo.cipher, header, "new")


def test_an_object_of_a_generation_the_keyring_lacks_is_damage_naming_it() -> None:
    ring = KeyRing(os.urandom(32), {0: os.urandom(32), 4: os.urandom(32)}, 4)
    stored = seal_object(ring, "aes-256-gcm", "snapshot", b"{}")
    older = KeyRing(ring.id_key, {0: ring.keys[0]}, 0)
    with pytest.raises(IntegrityError, match="snapshots/x is sealed with data key generation 4"):
        open_object(older, "aes-256-gcm", "snapshot", stored, "snapshots/x")
    assert open_object(ring, "aes-256-gcm", "snapshot", stored, "snapshots/x") == b"{}"


def test_a_keyring_that_does_not_open_is_passed_over_and_reported(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    repo = Repository.init(storage, OLD, kdf=FAST)
    forged = seal_object(MasterKey.generate().ring(), repo.cipher, "keyring", b"{}")
    storage.write(KEYRING_PREFIX + "f" * 64, forged)
    loaded = load_keyring(storage, repo.opened_master(), repo.cipher)
    assert loaded.ring.keys == repo.key.keys
    assert loaded.foreign == ["f" * 64]
    assert "does not open with this repository's master key" in keyring_findings(loaded)[0][1]
    assert Repository.open(storage, OLD).key.keys == repo.key.keys

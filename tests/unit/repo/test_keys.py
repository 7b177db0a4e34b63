"""Key files: whatever a key file holds, it opens, fails as a wrong password, or is damage
naming it (IntegrityError); version 2 binds its metadata to the wrapped key."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError, WrongPasswordError
from drplan.repo import keys
from drplan.repo.crypto import MasterKey, object_id
from drplan.repo.keys import describe, open_with_password
from drplan.storage.local import LocalStorage
from tests.fixtures.fuzz import decoded_or_damage, fuzz, json_mutated, mutated
from tests.fixtures.keyfiles import add_key_file, key_file
from tests.integration.conftest import PASSWORD, init_repo

MASTER = MasterKey.generate()
NAME, V2 = key_file(MASTER, PASSWORD.encode(), 2)
_, V1 = key_file(MASTER, PASSWORD.encode(), 1)
DOC: dict[str, Any] = json.loads(V2)


def test_new_key_files_are_version_2_and_open() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = init_repo(LocalStorage(tmp))
        (stored,) = Path(tmp, "keys").iterdir()
        assert describe(stored.name, stored.read_bytes()).version == 2
        assert open_with_password(repo.storage, PASSWORD.encode()).master == repo.master
        assert keys.key_file_findings(repo.storage) == []


@pytest.mark.parametrize("version", [1, 2])
def test_key_files_written_from_the_spec_open(tmp_path: Path, version: int) -> None:
    storage = LocalStorage(tmp_path)
    name = add_key_file(storage, MASTER, PASSWORD.encode(), version)
    opened = open_with_password(storage, PASSWORD.encode())
    assert (opened.master, opened.key_id, opened.cipher) == (
        MASTER,
        name.removeprefix("keys/"),
        "aes-256-gcm",
    )


def _rewritten(data: bytes, **changes: Any) -> bytes:
    return json.dumps({**json.loads(data), **changes}, indent=2).encode()


def test_version_2_binds_its_metadata(tmp_path: Path) -> None:
    """Someone who can write to the location changes the host of a key file and renames
    it to match: the wrapped key no longer opens with the password."""
    storage = LocalStorage(tmp_path)
    forged = _rewritten(V2, host="attacker", created="2030-01-01T00:00:00Z")
    storage.write("keys/" + object_id(forged), forged)
    with pytest.raises(WrongPasswordError, match=f"keys/{object_id(forged)[:12]}"):
        open_with_password(storage, PASSWORD.encode())


def test_version_1_opens_with_changed_metadata_and_check_tells(tmp_path: Path) -> None:
    """Repositories in the field hold version 1 key files: they keep opening, and the
    bytes that no longer match the name are reported, without any password."""
    storage = LocalStorage(tmp_path)
    name = add_key_file(storage, MASTER, PASSWORD.encode(), 1)
    assert keys.key_file_findings(storage) == [
        (
            "info",
            f"key file {name[:17]} is version 1: its host, user, label and time are not bound to"
            " the key; open the repository with its password and run `drplan key passwd` to"
            " rewrite it",
        )
    ]
    (tmp_path / name).write_bytes((tmp_path / name).read_bytes().replace(b"2026-11", b"2026-12"))
    assert open_with_password(storage, PASSWORD.encode()).master == MASTER
    assert keys.key_file_findings(storage) == [
        ("error", f"key file {name[:17]} is damaged: its bytes do not match its name")
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kdf": {**DOC["kdf"], "salt": "3LWp49VgPBaBioK2yVx!Qg=="}}, "its salt is not base64"),
        ({"kdf": {**DOC["kdf"], "time_cost": 0}}, "its time_cost is 0"),
        ({"kdf": {**DOC["kdf"], "memory_kib": 1 << 40}}, "its memory_kib is 1099511627776"),
        ({"nonce": "AAAA"}, "its nonce has 3 bytes"),
        ({"cipher": "rot13"}, "its cipher 'rot13' is unknown"),
        ({"host": 5}, "its host is 5, not text"),
        ({"version": 3}, "has version 3; this drplan reads 1 and 2"),
    ],
)
def test_a_damaged_key_file_is_damage_naming_it(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    storage = LocalStorage(tmp_path)
    bad = _rewritten(V2, **change)
    name = "keys/" + object_id(bad)
    storage.write(name, bad)
    with pytest.raises(IntegrityError, match=f"key file {name[:17]}") as caught:
        open_with_password(storage, PASSWORD.encode())
    assert problem in caught.value.message
    assert keys.key_file_findings(storage) == [("error", caught.value.message.split(", and ")[1])]


def test_a_damaged_key_file_does_not_stand_in_the_way_of_another(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("keys/" + "0" * 64, b"{not json")  # sorts first: tried first
    name = add_key_file(storage, MASTER, PASSWORD.encode(), 2)
    assert open_with_password(storage, PASSWORD.encode()).key_id == name.removeprefix("keys/")
    ((severity, message),) = keys.key_file_findings(storage)
    assert (severity, message.split(":")[0]) == ("error", "key file keys/000000000000 is damaged")


def _opened_or_refused(data: bytes) -> None:
    """Open a repository whose only key file is ``data``: the master key, a wrong password
    or damage naming the key file, nothing else."""
    try:
        doc = json.loads(data)
        kdf = doc["kdf"]
        costly = int(kdf["memory_kib"]) > 64 * 1024 or int(kdf["time_cost"]) > 10
    except Exception:
        costly = False
    info = decoded_or_damage(lambda: describe(NAME, data))
    if info is not None:
        assert all(type(v) is str for v in (info.created, info.host, info.user, info.label))
    if costly:
        return  # valid, but argon2 would take seconds and gigabytes: the parse is what counts
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalStorage(tmp)
        name = "keys/" + object_id(data)
        storage.write(name, data)
        try:
            master = open_with_password(storage, PASSWORD.encode()).master
        except (IntegrityError, WrongPasswordError) as exc:
            refused = exc.message
        else:
            assert master == MASTER
            return
    assert name[:17] in refused, refused
    assert "\n" not in refused


@fuzz
@given(
    st.binary(max_size=300)
    | mutated(V2)
    | mutated(V1)
    | json_mutated(DOC)
    | json_mutated(json.loads(V1))
)
def test_fuzz_key_file(data: bytes) -> None:
    _opened_or_refused(data)

"""Lock objects: whatever a lock holds once decrypted, it is judged live or stale as it
is, or ignored as unreadable (it blocks nobody); listing locks never fails on one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drplan import clock
from drplan.repo.locks import LOCK_PREFIX, RepositoryLock, list_locks
from drplan.repo.repository import Repository
from drplan.storage.local import LocalStorage
from tests.fixtures.fuzz import fuzz, json_mutated, mutated
from tests.integration.conftest import init_repo

DOC: dict[str, Any] = {
    "host": "elsewhere",
    "pid": os.getpid(),
    "user": "root",
    "time": "2026-11-26T01:45:00Z",
    "exclusive": True,
    "operation": "prune",
}
VALID = json.dumps(DOC).encode()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return init_repo(LocalStorage(tmp_path_factory.mktemp("locks") / "repo"))


def _listed(repo: Repository, body: bytes) -> list[Any]:
    name = LOCK_PREFIX + repo.save_object("lock", LOCK_PREFIX, body)
    try:
        return list(list_locks(repo))
    finally:
        repo.storage.delete(name)


@fuzz
@given(st.binary(max_size=200) | mutated(VALID) | json_mutated(DOC))
def test_fuzz_lock(repo: Repository, body: bytes) -> None:
    for lock in _listed(repo, body):
        lock.describe(clock.now())
        lock.is_stale(clock.now())


@pytest.mark.parametrize(
    "change",
    [
        {"pid": 0},  # os.kill(0, 0) would ask about our own process group
        {"pid": -1},
        {"pid": 1 << 40},
        {"pid": "42"},
        {"exclusive": "no"},
        {"time": "yesterday"},
        {"host": None},
        {"operation": None},
    ],
)
def test_a_malformed_lock_is_ignored(repo: Repository, change: dict[str, Any]) -> None:
    assert _listed(repo, json.dumps({**DOC, **change}).encode()) == []


def test_a_malformed_lock_blocks_nobody(tmp_path: Path) -> None:
    repo = init_repo(LocalStorage(tmp_path / "repo"))
    no_operation = {key: value for key, value in DOC.items() if key != "operation"}
    repo.save_object("lock", LOCK_PREFIX, json.dumps(no_operation).encode())
    with RepositoryLock(repo, exclusive=True, operation="prune"):
        pass
    assert [lock.operation for lock in _listed(repo, VALID)] == ["prune"]

"""Locks where the storage refuses deletes (an append-only backup host): a process ends its
lock objects with a marker instead, which frees prune at once, ends nothing of anyone
else's, and is cleared, after what it ends, by the next process that may delete."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from drplan import clock
from drplan.errors import RepositoryLockedError
from drplan.repo.locks import LOCK_PREFIX, RepositoryLock, list_locks
from drplan.repo.repository import Repository
from drplan.storage.local import LocalStorage
from tests.fixtures.appendonly import AppendOnlyStorage
from tests.integration.conftest import PASSWORD, init_repo


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "repo")
    init_repo(storage)
    return storage


def opened(storage: LocalStorage | AppendOnlyStorage) -> Repository:
    return Repository.open(storage, PASSWORD.encode())


def names(storage: LocalStorage) -> set[str]:
    return {info.name for info in storage.list(LOCK_PREFIX)}


def test_a_lock_this_host_may_not_delete_is_ended_by_a_marker(storage: LocalStorage) -> None:
    append_only = AppendOnlyStorage(storage)
    with RepositoryLock(opened(append_only), exclusive=False, operation="backup") as held:
        lock = held.name
    assert append_only.deletes == [lock]  # asked once; refused, it stopped asking
    [marker] = [info for info in list_locks(opened(storage)) if info.ends]
    assert marker.ends == (lock,)
    assert (marker.host, marker.pid, marker.exclusive) == (socket.gethostname(), os.getpid(), False)

    # Prune, from a host that may delete, is not held up: the ended lock and then the
    # marker are removed as it locks.
    with RepositoryLock(opened(storage), exclusive=True, operation="prune") as prune:
        assert names(storage) == {prune.name}
    assert names(storage) == set()


def test_stale_locks_this_host_may_not_delete_block_nobody(storage: LocalStorage) -> None:
    repo = opened(storage)
    _save(repo, {"time": "2020-01-01T00:00:00Z", "exclusive": True})  # stale: a dead prune
    append_only = AppendOnlyStorage(storage)
    with RepositoryLock(opened(append_only), exclusive=True, operation="check"):
        pass
    assert len(append_only.deletes) == 1  # the stale lock: refused, and not asked again
    assert append_only.overwrites == []


def test_a_marker_ends_only_its_own_process_locks(storage: LocalStorage) -> None:
    repo = opened(storage)
    other = _save(repo, {"host": "elsewhere", "pid": 4242, "exclusive": False})
    _save(repo, {"host": "intruder", "pid": 77, "ends": [other]})  # not the same process
    with pytest.raises(RepositoryLockedError, match="shared lock by backup"):
        RepositoryLock(repo, exclusive=True, operation="prune").acquire()

    _save(repo, {"host": "elsewhere", "pid": 4242, "ends": [other]})  # its own: ended
    with RepositoryLock(repo, exclusive=True, operation="prune") as prune:
        assert names(storage) == {prune.name}  # the ended lock, then every marker, removed


def test_a_marker_with_ends_that_are_not_lock_names_is_ignored(storage: LocalStorage) -> None:
    repo = opened(storage)
    for ends in (["snapshots/abc"], "locks/x", [42]):
        _save(repo, {"ends": ends})
    assert list(list_locks(repo)) == []


def _save(repo: Repository, change: dict[str, Any]) -> str:
    doc = {
        "host": "elsewhere",
        "pid": 4242,
        "user": "backup",
        "time": clock.rfc3339(clock.now()),
        "exclusive": False,
        "operation": "backup",
        **change,
    }
    return LOCK_PREFIX + repo.save_object("lock", LOCK_PREFIX, json.dumps(doc).encode())

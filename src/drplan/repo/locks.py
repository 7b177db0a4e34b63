"""Repository locks: shared for backups and restores, exclusive for prune; refreshed while held.

Why locks and not a two-phase delete: prune must know that no backup is between
"this blob is already stored" and "the snapshot that needs it is written". A lock
object per process, refreshed every few minutes, lets prune see every live writer
on every host through the storage itself, which is the only thing all hosts share.
A lock older than STALE_AFTER, or written on this host by a process that is gone,
is stale and is removed by whoever next needs the repository.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from drplan import clock
from drplan.errors import IntegrityError, RepositoryLockedError
from drplan.liveness import alive
from drplan.repo.repository import Repository
from drplan.storage import NotFound, StorageError

LOCK_PREFIX = "locks/"
REFRESH_EVERY = timedelta(minutes=5)
STALE_AFTER = timedelta(minutes=30)
RACE_RETRIES = 5  # after a simultaneous lock by another process


@dataclass(frozen=True)
class LockInfo:
    name: str
    host: str
    pid: int
    user: str
    time: datetime
    exclusive: bool
    operation: str

    def describe(self, now: datetime) -> str:
        age = int((now - self.time).total_seconds())
        kind = "exclusive" if self.exclusive else "shared"
        return f"{kind} lock by {self.operation} (pid {self.pid} on {self.host}, user {self.user}, {age}s old)"

    def is_stale(self, now: datetime) -> bool:
        if now - self.time > STALE_AFTER:
            return True
        return self.host == socket.gethostname() and not alive(self.pid)


class RepositoryLock:
    """A held lock; use as a context manager. Refreshes itself in a background thread."""

    def __init__(self, repo: Repository, exclusive: bool, operation: str) -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.operation = operation
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> str:
        body = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "user": getpass.getuser(),
                "time": clock.rfc3339(clock.now()),
                "exclusive": self.exclusive,
                "operation": self.operation,
            }
        ).encode()
        return LOCK_PREFIX + self.repo.save_object("lock", LOCK_PREFIX, body)

    def acquire(self) -> RepositoryLock:
        """Take the lock, or raise RepositoryLockedError naming who holds a conflicting one.

        A lock already held conflicts at once. Two processes that lock at the same moment
        both see each other after writing, both back off, and try again after a random
        pause, so one of them wins instead of both failing.
        """
        for attempt in range(RACE_RETRIES + 1):
            self._check_conflicts()
            self.name = self._write()
            try:
                self._check_conflicts()
                break
            except RepositoryLockedError:
                self._remove_own()
                if attempt == RACE_RETRIES:
                    raise
                time.sleep(random.uniform(0.05, 0.5))
        self._thread = threading.Thread(
            target=self._refresh_loop, name="drplan-lock-refresh", daemon=True
        )
        self._thread.start()
        return self

    def _check_conflicts(self) -> None:
        now = clock.now()
        for lock in list_locks(self.repo):
            if lock.name == self.name:
                continue
            if lock.is_stale(now):
                with contextlib.suppress(NotFound):
                    self.repo.storage.delete(lock.name)
                continue
            if self.exclusive or lock.exclusive:
                raise RepositoryLockedError(
                    f"{self.repo.storage.url} is locked: {lock.describe(now)}",
                    hint="wait for it to finish; a lock of a process that died goes stale after 30 minutes"
                    " (at once on the same host)",
                )

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY.total_seconds()):
            old = self.name
            self.name = self._write()
            if old:
                with contextlib.suppress(NotFound):
                    self.repo.storage.delete(old)

    def _remove_own(self) -> None:
        if self.name:
            with contextlib.suppress(StorageError):
                self.repo.storage.delete(self.name)
            self.name = None

    def release(self) -> None:
        """Remove the lock object. Never raises: a lock that cannot be removed goes stale, and
        the error that ended the work (often the same unreachable storage) must stay visible."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._remove_own()

    def __enter__(self) -> RepositoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def list_locks(repo: Repository) -> Iterator[LockInfo]:
    for info in repo.storage.list(LOCK_PREFIX):
        try:
            yield decode_lock(info.name, repo.load_object("lock", info.name))
        except (NotFound, IntegrityError):
            continue  # removed meanwhile, or a lock we cannot read: it does not block


def decode_lock(name: str, body: bytes) -> LockInfo:
    """A lock object's body; IntegrityError unless every field has its type (a pid that is a
    process id: ``os.kill`` treats 0 and negative ones as process groups)."""
    try:
        data = json.loads(body)
        if type(data) is not dict:
            raise ValueError("not a JSON object")
        pid, exclusive = data.get("pid"), data.get("exclusive")
        if type(pid) is not int or not 0 < pid < 1 << 31:
            raise ValueError(f"pid {pid!r:.40} is no process id")
        if type(exclusive) is not bool:
            raise ValueError(f"exclusive is {exclusive!r:.40}")
        return LockInfo(
            name,
            _text(data, "host"),
            pid,
            _text(data, "user"),
            clock.parse_rfc3339(_text(data, "time")),
            exclusive,
            _text(data, "operation"),
        )
    except (ValueError, RecursionError, OverflowError) as exc:
        raise IntegrityError(f"{name} is malformed ({exc})") from None


def _text(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if type(value) is not str:
        raise ValueError(f"{key} is {value!r:.40}, not text")
    return value

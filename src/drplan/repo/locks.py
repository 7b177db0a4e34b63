"""Repository locks: shared for backups and restores, exclusive for prune; refreshed while held.

Why locks and not a two-phase delete: prune must know that no backup is between
"this blob is already stored" and "the snapshot that needs it is written". A lock
object per process, refreshed every few minutes, lets prune see every live writer
on every host through the storage itself, which is the only thing all hosts share.
A lock older than STALE_AFTER, or written on this host by a process that is gone,
is stale and is removed by whoever next needs the repository.

Append-only credentials (a backup host that may write but never delete) cannot remove
a lock object. A process whose delete is refused (PermissionDenied: by the service, or
at once under ``$DRPLAN_APPEND_ONLY``) stops asking: its refreshes leave the previous
object in place (it is its own, and goes stale with age), and when it is done it
writes an **end marker**, a lock object that blocks nobody and names the lock objects
it ends. Readers take a lock a marker of the same host and process ends as gone, so
prune does not wait 30 minutes for every backup of an append-only host. Only a process
that is done writes one (after its last write): prune's exclusive lock stays safe. The
ended locks, then the marker (in that order: the other way round, the locks would come
back to life), are removed by the next process that may delete.
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from drplan import clock
from drplan.errors import DrplanError, IntegrityError, RepositoryLockedError
from drplan.liveness import alive
from drplan.repo.repository import Repository
from drplan.storage import NotFound, PermissionDenied, StorageError

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
    ends: tuple[str, ...] = ()  # an end marker: the lock objects of its process it ends

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
        self.append_only = False  # a delete was refused: end our locks with a marker instead
        self._mine: list[str] = []  # our lock objects still in place
        self._guard = threading.Lock()  # the refresh thread and release both change them
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, ends: Iterable[str] = ()) -> str:
        doc: dict[str, object] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": getpass.getuser(),
            "time": clock.rfc3339(clock.now()),
            "exclusive": self.exclusive and not ends,  # a marker: shared to older readers
            "operation": self.operation,
        }
        if ends:
            doc["ends"] = sorted(ends)
        return LOCK_PREFIX + self.repo.save_object("lock", LOCK_PREFIX, json.dumps(doc).encode())

    def _lock_object(self) -> None:
        self.name = self._write()
        self._mine.append(self.name)

    def acquire(self) -> RepositoryLock:
        """Take the lock, or raise RepositoryLockedError naming who holds a conflicting one.

        A lock already held conflicts at once. Two processes that lock at the same moment
        both see each other after writing, both back off, and try again after a random
        pause, so one of them wins instead of both failing.
        """
        for attempt in range(RACE_RETRIES + 1):
            self._check_conflicts()
            self._lock_object()
            try:
                self._check_conflicts()
                break
            except RepositoryLockedError:
                with contextlib.suppress(StorageError):  # else ours goes stale: a longer wait
                    self._let_go()
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
        locks = [lock for lock in list_locks(self.repo) if lock.name not in self._mine]
        ended = ended_by_markers(locks)
        gone: set[str] = set()
        for lock in locks:
            if lock.ends:
                continue  # a marker blocks nobody; removed below, after what it ends
            if lock.name in ended or lock.is_stale(now):
                if self._remove(lock.name):
                    gone.add(lock.name)
                continue
            if self.exclusive or lock.exclusive:
                raise RepositoryLockedError(
                    f"{self.repo.storage.url} is locked: {lock.describe(now)}",
                    hint="wait for it to finish; a lock of a process that died goes stale after 30 minutes"
                    " (at once on the same host)",
                )
        present = {lock.name for lock in locks} - gone
        for marker in (lock for lock in locks if lock.ends):
            if marker.is_stale(now) or present.isdisjoint(marker.ends):
                self._remove(marker.name)

    def _remove(self, name: str) -> bool:
        """Delete a lock object (ours, or another's found stale or ended); False when this
        host may not delete (another's is then left, blocking nobody, to a host that may)."""
        if self.append_only:
            return False
        try:
            self.repo.storage.delete(name)
        except NotFound:
            pass
        except PermissionDenied:
            self.append_only = True
            return False
        return True

    def _delete_own(self, names: list[str]) -> None:
        for name in names:
            if not self._remove(name):
                return
            self._mine.remove(name)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY.total_seconds()):
            with self._guard:
                if self._stop.is_set():
                    return  # released meanwhile: a lock written now would outlive the work
                old = self.name
                try:
                    self._lock_object()
                    if old:
                        self._delete_own([old])
                except DrplanError:
                    continue  # the storage failing: try again next time; locks go stale slowly

    def _let_go(self) -> None:
        """Remove our lock objects; where this host may not delete, end them all with one
        marker. Only ever called once the work they protect is done."""
        self._delete_own(list(self._mine))
        if self._mine:
            self._write(ends=self._mine)
            self._mine = []
        self.name = None

    def release(self) -> None:
        """Remove our lock objects (or end them with a marker, where this host may not delete).
        Never raises: a lock that cannot be removed goes stale, and the error that ended the
        work (often the same unreachable storage) must stay visible."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._guard, contextlib.suppress(StorageError):
            self._let_go()

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


def ended_by_markers(locks: list[LockInfo]) -> set[str]:
    """The lock objects an end marker among ``locks`` ends: only its own process's (same
    host and pid), so a marker can never end another process's lock."""
    by_name = {lock.name: lock for lock in locks}
    return {
        name
        for marker in locks
        for name in marker.ends
        if (ended := by_name.get(name)) is not None
        and not ended.ends
        and (ended.host, ended.pid) == (marker.host, marker.pid)
    }


def decode_lock(name: str, body: bytes) -> LockInfo:
    """A lock object's body; IntegrityError unless every field has its type (a pid that is a
    process id: ``os.kill`` treats 0 and negative ones as process groups; an end marker's
    ``ends``, lock object names)."""
    try:
        data = json.loads(body)
        if type(data) is not dict:
            raise ValueError("not a JSON object")
        pid, exclusive, ends = data.get("pid"), data.get("exclusive"), data.get("ends", [])
        if type(pid) is not int or not 0 < pid < 1 << 31:
            raise ValueError(f"pid {pid!r:.40} is no process id")
        if type(exclusive) is not bool:
            raise ValueError(f"exclusive is {exclusive!r:.40}")
        if type(ends) is not list or not all(
            type(e) is str and e.startswith(LOCK_PREFIX) for e in ends
        ):
            raise ValueError(f"ends is {ends!r:.40}, not lock object names")
        return LockInfo(
            name,
            _text(data, "host"),
            pid,
            _text(data, "user"),
            clock.parse_rfc3339(_text(data, "time")),
            exclusive,
            _text(data, "operation"),
            tuple(ends),
        )
    except (ValueError, RecursionError, OverflowError) as exc:
        raise IntegrityError(f"{name} is malformed ({exc})") from None


def _text(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if type(value) is not str:
        raise ValueError(f"{key} is {value!r:.40}, not text")
    return value

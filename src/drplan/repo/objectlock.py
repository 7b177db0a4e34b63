"""Object Lock, object by object: when an object's lock ends, deleting only what no lock
holds, and extending the locks of objects that must outlast another.

Terms:

lock
    An S3 Object Lock retention: until its date the object's version cannot be removed.
    A delete of a locked object (the bucket is versioned, as Object Lock requires)
    succeeds and hides it behind a delete marker: the version stays, stored and billed,
    out of drplan's sight. So drplan looks at the lock *before* deleting, and leaves a
    locked object where it is, instead of counting on the service to refuse.
cover
    Making objects stay locked until at least a date (``floor``): those whose lock ends
    sooner are extended (to ``until``, further, so the next cover finds them long
    enough). :class:`LockCover` remembers, for one run on one location, what it learnt of
    each object's lock, so that an object is asked about (HEAD) at most once per run and
    extended (PUT retention) only when its lock ends too early.

This module knows storages, not repositories: :mod:`drplan.repo.immutability` decides
which objects a snapshot needs, and for how long.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from drplan.storage import NotFound, Storage

LOCK_WORKERS = 8  # HEAD and PUT retention requests in flight


def wall_now() -> datetime:
    """The time locks are judged by: the real clock, never a pinned ``$DRPLAN_NOW``, as the
    service sets and enforces retention dates by its own."""
    return datetime.now(UTC)


def locked_until(storage: Storage, name: str, now: datetime) -> datetime | None:
    """When the object's lock ends, if it is locked now; None if deletable (or gone)."""
    try:
        until = storage.locked_until(name)
    except NotFound:
        return None
    return until if until is not None and until > now else None


def locks_of(storage: Storage, names: Iterable[str], now: datetime) -> dict[str, datetime]:
    """The objects among ``names`` that are locked now, with when their locks end."""
    names = list(names)
    if not names:
        return {}
    with ThreadPoolExecutor(LOCK_WORKERS, thread_name_prefix="drplan-lock") as pool:
        ends = list(pool.map(lambda n: locked_until(storage, n, now), names))
    return {name: end for name, end in zip(names, ends, strict=True) if end is not None}


def delete_unless_locked(storage: Storage, name: str, now: datetime) -> datetime | None:
    """Delete ``name`` unless it is locked now; returns the lock's end when it was left (None
    when deleted, or gone already). PermissionDenied, from credentials that may not
    delete, is the caller's to judge."""
    until = locked_until(storage, name, now)
    if until is not None:
        return until
    with contextlib.suppress(NotFound):  # gone already: as good as deleted
        storage.delete(name)
    return None


class LockCover:
    """What one run knows of the locks of objects in one location, and extending them.

    The cache holds, per object, a date its lock is known to last until at least: what a
    HEAD said, what this run extended it to, or, for an object this run wrote, the time
    just before the write plus the location's days (the service dates the lock from the
    write, later). Locks only grow, so a known date stays true.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._known: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def written(self, name: str, before: datetime) -> None:
        """``name`` was written by this run, its write begun after ``before``."""
        days = self.storage.lock_days
        if days:
            with self._lock:
                self._known[name] = before + timedelta(days=days)

    def cover(self, names: Iterable[str], *, floor: datetime, until: datetime) -> int:
        """Make every object of ``names`` locked until ``floor`` at least: those whose lock ends
        sooner (or that have none) are locked until ``until``. Objects that are gone are
        left to `drplan check`. Returns how many were extended."""
        with self._lock:
            todo = sorted(n for n in set(names) if self._known.get(n, floor) <= floor)

        def one(name: str) -> tuple[str, datetime | None, bool]:
            with self._lock:
                known = self._known.get(name)
            if known is None:  # never asked this run: it may have been extended by another
                try:
                    known = self.storage.locked_until(name)
                except NotFound:
                    return name, None, False
                if known is not None and known >= floor:
                    return name, known, False
            try:
                self.storage.lock_until(name, until)
            except NotFound:
                return name, None, False
            return name, until, True

        with ThreadPoolExecutor(LOCK_WORKERS, thread_name_prefix="drplan-lock") as pool:
            results = list(pool.map(one, todo))
        with self._lock:
            self._known.update((name, end) for name, end, _ in results if end is not None)
        return sum(1 for _, _, extended in results if extended)

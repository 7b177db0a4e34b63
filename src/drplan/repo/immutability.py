"""Write-once locks (S3 Object Lock): what forget and prune may not delete, and renewing locks.

On a location with Object Lock, a delete of a locked object only hides it behind a
delete marker: the locked version stays, stored and billed, until its lock ends.
So forget keeps a snapshot whose object is still locked (and says until when), and
prune neither deletes nor repacks a locked pack or index: it leaves them for a prune
after the lock ends, and reports them.

While retention keeps a snapshot it must stay immutable, however long that is. A
lock is set for the location's ``immutability.days`` when an object is written;
``renew_locks`` extends the locks of everything the kept snapshots need (their
snapshot objects, packs and the live index) to ``days`` from now, whenever less
than half of that remains. Run at each forget, this keeps every kept snapshot
locked; once retention lets a snapshot go, its locks lapse within ``days`` and a
later prune frees the space.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from drplan.repo.index import live_index_files
from drplan.repo.replication import blobs_of
from drplan.repo.repository import INDEX_PREFIX, SNAPSHOT_PREFIX, Repository, pack_name
from drplan.repo.snapshot import Snapshot
from drplan.storage import NotFound, Storage

LOCK_WORKERS = 8  # HEAD and PUT retention requests in flight


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
    with ThreadPoolExecutor(LOCK_WORKERS, thread_name_prefix="drplan-lock") as pool:
        ends = list(pool.map(lambda n: locked_until(storage, n, now), names))
    return {name: end for name, end in zip(names, ends, strict=True) if end is not None}


def renew_locks(repo: Repository, kept: list[Snapshot], days: int, now: datetime) -> int:
    """Extend to ``now + days`` the locks of what ``kept`` needs, where less than half is
    left; returns how many objects were extended. The index must be loaded."""
    names = {SNAPSHOT_PREFIX + s.id for s in kept}
    for blob_id in blobs_of(repo, kept):
        where = repo.index.lookup(blob_id)
        if where is not None:
            names.add(pack_name(where.pack.id))
    # Only the live index: superseded ones must be let go, for prune to remove them.
    names.update(INDEX_PREFIX + name for name, _ in live_index_files(repo.index_files()))
    until = now + timedelta(days=days)
    soon = now + timedelta(days=days / 2)

    def renew(name: str) -> bool:
        try:
            current = repo.storage.locked_until(name)
        except NotFound:
            return False
        if current is not None and current >= soon:
            return False
        repo.storage.lock_until(name, until)
        return True

    with ThreadPoolExecutor(LOCK_WORKERS, thread_name_prefix="drplan-lock") as pool:
        return sum(pool.map(renew, sorted(names)))

"""Write-once locks (S3 Object Lock): what forget and prune may not delete, and how long
what snapshots need stays locked.

On a location with Object Lock, a delete of a locked object only hides it behind a
delete marker: the locked version stays, stored and billed, until its lock ends.
So forget keeps a snapshot whose object is still locked (and says until when), and
prune neither deletes nor repacks a locked pack or index: it leaves them for a prune
after the lock ends, and reports them (the storage-level helpers are in objectlock.py).

Two rules keep what a snapshot needs locked while the snapshot is:

* **at backup time** (``cover_snapshot``), before a snapshot object is written, every
  object it needs (its packs, the live index, what opens the repository: config, key
  files, keyrings, tombstones) is made locked until at least ``SLACK`` before the
  snapshot's own lock will end. Deduplication is the trap this closes (Kopia #1067,
  restic #3195): a new snapshot reuses packs written long ago, whose locks end soon; an
  attacker who waits for them deletes the data every newer snapshot depends on, while
  those snapshots themselves are still locked. It runs *before* the snapshot is
  written: a crash between the two then leaves longer locks and no snapshot, never a
  snapshot whose data is about to become deletable. What falls short is extended to
  ``AHEAD`` beyond the snapshot's lock, so a daily backup does not extend the same
  packs every day.
* **at each forget** (``renew_locks``), everything the kept snapshots need is extended to
  ``days`` from now whenever less than half of that remains. Once retention lets a
  snapshot go, its locks lapse within ``days`` and a later prune frees the space.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from drplan.errors import IntegrityError
from drplan.repo.keyring import KEYRING_PREFIX, load_keyring
from drplan.repo.keys import (
    KEY_PREFIX,
    REVOKED_PREFIX,
    live_keys,
    revoke_key,
    revoked_ids,
    tombstone,
)
from drplan.repo.objectlock import delete_unless_locked, locked_until, locks_of, wall_now
from drplan.repo.replication import blobs_of
from drplan.repo.repository import CONFIG, SNAPSHOT_PREFIX, Repository, pack_name
from drplan.repo.snapshot import Snapshot

# An object a snapshot needs may be locked this much less long than the snapshot object
# itself: the objects this run wrote early on, and the snapshot's own write (retries
# included), take time that must not cost a PUT retention per new pack.
SLACK = timedelta(hours=1)
# What falls short is extended this share of the location's days beyond the snapshot's
# lock: one PUT retention per reused pack every days/4 or so, not one per backup.
AHEAD = 0.25

__all__ = [
    "AHEAD",
    "SLACK",
    "cover_snapshot",
    "delete_unless_locked",
    "locked_until",
    "locks_of",
    "remove_revoked_key_files",
    "renew_locks",
    "revoke_key_file",
]


def cover_snapshot(repo: Repository, snapshot: Snapshot, blobs: set[bytes] | None = None) -> int:
    """Before ``snapshot`` is written to ``repo``'s location, when it has Object Lock: lock
    everything it needs at least until ``SLACK`` before the snapshot's own lock ends (the
    dedup trap, see above). ``blobs``: what it needs, when the caller walked its trees
    already; the index must be loaded and hold them. Returns how many were extended."""
    days = repo.storage.lock_days
    if not days:
        return 0
    names = _needs(repo, blobs if blobs is not None else blobs_of(repo, [snapshot]), strict=True)
    now = wall_now()
    locked_for = timedelta(days=days)
    return repo.lock_cover.cover(
        names, floor=now + locked_for - SLACK, until=now + locked_for * (1 + AHEAD)
    )


def renew_locks(repo: Repository, kept: list[Snapshot], days: int, now: datetime) -> int:
    """Extend to ``now + days`` the locks of what ``kept`` needs, where less than half is
    left; returns how many objects were extended. The index must be loaded."""
    names = _needs(repo, blobs_of(repo, kept), strict=False) | {
        SNAPSHOT_PREFIX + s.id for s in kept
    }
    return repo.lock_cover.cover(
        names, floor=now + timedelta(days=days / 2), until=now + timedelta(days=days)
    )


def revoke_key_file(repo: Repository, key_id: str) -> datetime | None:
    """Revoke a key: its tombstone first (that alone makes drplan refuse the key), then its
    key file, unless under Object Lock, where a delete would only hide it. Returns the
    lock's end when the key file stays (a prune after that removes it)."""
    until = locked_until(repo.storage, KEY_PREFIX + key_id, wall_now())
    if until is None:
        revoke_key(repo.storage, repo.key, repo.cipher, key_id)
    else:
        repo.storage.write(REVOKED_PREFIX + key_id, tombstone(repo.key, repo.cipher, key_id))
    return until


def remove_revoked_key_files(repo: Repository) -> int:
    """Delete the key files a tombstone revokes whose locks have ended (``revoke_key_file``
    left them); returns how many went."""
    present = {info.name for info in repo.storage.list(KEY_PREFIX)}
    revoked = {KEY_PREFIX + key_id for key_id in revoked_ids(repo.storage, repo.key, repo.cipher)}
    now = wall_now()
    return sum(
        1
        for name in sorted(present & revoked)
        if delete_unless_locked(repo.storage, name, now) is None
    )


def _needs(repo: Repository, blobs: Iterable[bytes], *, strict: bool) -> set[str]:
    """The objects reading ``blobs`` needs: their packs, the live index (superseded index
    objects must be let go, for prune to remove them) and what opens the repository.
    ``strict``: a blob the index lacks stops a snapshot from being written (forget leaves
    such damage to `drplan check`)."""
    names = set(repo.index_names)
    for blob_id in blobs:
        where = repo.index.lookup(blob_id)
        if where is None:
            if not strict:
                continue
            raise IntegrityError(
                f"{repo.storage.url}: blob {blob_id.hex()[:16]} a snapshot needs is not in the"
                " index; the snapshot was not written",
                hint=f"run `drplan check --repo {repo.storage.url}`",
            )
        names.add(pack_name(where.pack.id))
    return names | _opening(repo)


def _opening(repo: Repository) -> set[str]:
    """What opening the repository needs: its config, the key files that are not revoked,
    the live keyrings (all, without the master key to tell) and the tombstones (were one
    to go, its key would open again)."""
    storage = repo.storage
    names = {CONFIG, *live_keys(storage, repo.key, repo.cipher)}
    names.update(info.name for info in storage.list(REVOKED_PREFIX))
    if repo.master is not None:
        live = load_keyring(storage, repo.master, repo.cipher).live
        names.update(KEYRING_PREFIX + name for name in live)
    else:
        names.update(info.name for info in storage.list(KEYRING_PREFIX))
    return names

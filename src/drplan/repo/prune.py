"""Prune: remove data no snapshot needs, and repack packs that are mostly garbage.

Runs under an exclusive lock (see locks.py for why that is safe while other hosts
back up). Order, so that a crash at any point loses nothing a snapshot needs:

1. find the blobs every snapshot references (walking all trees);
2. copy the still-used blobs of packs to be repacked into new packs (verified as read);
3. write one new index of every kept pack, superseding all old indexes;
4. only then delete the old indexes, and then the packs nothing indexes any more.

A crash before 3 leaves extra packs (garbage for the next prune); after 3, the old
indexes are superseded and ignored even if their deletion did not happen.

Objects under a write-once lock (S3 Object Lock) are neither deleted nor repacked:
see immutability.py. They are reported with when their locks end. Key files a tombstone
revokes, which key removal leaves while they are locked, go once their locks end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from drplan import clock
from drplan.errors import IntegrityError
from drplan.repo.immutability import locks_of, remove_revoked_key_files
from drplan.repo.index import Index, IndexFile, Location, PackInfo, live_index_files
from drplan.repo.replication import blobs_of
from drplan.repo.repository import DATA_PREFIX, INDEX_PREFIX, Repository, pack_name
from drplan.storage import NotFound

# Repack a pack when more than this fraction of its bytes is unused.
REPACK_UNUSED_FRACTION = 0.2


@dataclass
class PrunePlan:
    used_blobs: int = 0
    packs_keep: list[PackInfo] = field(default_factory=list)
    packs_repack: list[PackInfo] = field(default_factory=list)
    packs_delete: list[str] = field(default_factory=list)  # ids, indexed or not
    bytes_unused: int = 0
    bytes_total: int = 0
    old_indexes: list[str] = field(default_factory=list)
    locked: dict[str, datetime] = field(default_factory=dict)  # object -> end of its lock
    used: set[bytes] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "used_blobs": self.used_blobs,
            "packs_kept": len(self.packs_keep),
            "packs_repacked": len(self.packs_repack),
            "packs_deleted": len(self.packs_delete),
            "bytes_unused": self.bytes_unused,
            "bytes_total": self.bytes_total,
            "locked_objects": len(self.locked),
            "locked_until": clock.rfc3339(max(self.locked.values())) if self.locked else None,
        }


@dataclass
class PruneResult:
    plan: PrunePlan
    bytes_freed: int = 0
    new_packs: int = 0


def used_blobs(repo: Repository) -> set[bytes]:
    """Every blob some snapshot needs; raises IntegrityError if a tree cannot be read."""
    used: set[bytes] = set()
    for snapshot in repo.snapshots():
        try:
            used |= blobs_of(repo, [snapshot], seen=used)
        except IntegrityError as exc:
            raise IntegrityError(
                f"prune stopped: snapshot {snapshot.short_id} has an unreadable tree ({exc.message})",
                hint="run `drplan check` and repair the repository first; nothing was deleted",
            ) from None
    return used


def plan_prune(repo: Repository, max_unused: float = REPACK_UNUSED_FRACTION) -> PrunePlan:
    files = list(repo.index_files())
    plan = PrunePlan(old_indexes=[name for name, _ in files])
    packs: dict[str, PackInfo] = {}
    for _, index_file in live_index_files(files):
        for pack in index_file.packs:
            packs.setdefault(pack.id, pack)
    for pack in packs.values():
        repo.index.add_pack(pack)
    used = plan.used = used_blobs(repo)
    plan.used_blobs = len(used)
    stored = {info.name.rsplit("/", 1)[-1] for info in repo.storage.list(DATA_PREFIX)}
    placed: set[bytes] = set()
    for pack_id, pack in sorted(packs.items()):
        if pack_id not in stored:
            continue  # lost: check reports it; nothing to keep or delete here
        live = [e for e in pack.entries if e.id in used and e.id not in placed]
        placed.update(e.id for e in live)
        size = pack.size
        unused = size - sum(e.stored_length for e in live)
        plan.bytes_total += size
        plan.bytes_unused += unused
        if not live:
            plan.packs_delete.append(pack_id)
        elif unused > max_unused * size:
            plan.packs_repack.append(pack)
        else:
            plan.packs_keep.append(pack)
    plan.packs_delete += sorted(stored - packs.keys())  # left by interrupted backups
    _spare_locked(repo, plan)
    return plan


def _spare_locked(repo: Repository, plan: PrunePlan) -> None:
    """Keep locked packs and indexes out of the deletions: deleting them would free nothing."""
    now = clock.now()
    candidates = [pack_name(p) for p in plan.packs_delete]
    candidates += [pack_name(p.id) for p in plan.packs_repack]
    candidates += [INDEX_PREFIX + name for name in plan.old_indexes]
    plan.locked = locks_of(repo.storage, candidates, now)
    if not plan.locked:
        return
    plan.packs_delete = [p for p in plan.packs_delete if pack_name(p) not in plan.locked]
    spared = [p for p in plan.packs_repack if pack_name(p.id) in plan.locked]
    plan.packs_repack = [p for p in plan.packs_repack if pack_name(p.id) not in plan.locked]
    plan.packs_keep += spared


def run_prune(
    repo: Repository, plan: PrunePlan, report: Callable[[str], None] = lambda _: None
) -> PruneResult:
    result = PruneResult(plan)
    used = plan.used
    # Fresh writes only: the repository's in-memory index must not claim the old blobs exist.
    repo.index = Index()
    for pack in plan.packs_keep:
        repo.index.add_pack(pack)
    before = len(repo.index.packs)
    for pack in plan.packs_repack:
        report(f"repacking {pack.id[:16]}")
        for entry in pack.entries:
            if entry.id in used and entry.id not in repo.index:
                data = repo.read_located(Location(pack, entry))
                repo.save_blob(entry.type, data, entry.id)
    repo.flush_packs()
    result.new_packs = len(repo.index.packs) - before
    kept = list(repo.index.packs.values())
    repo.save_index(IndexFile(kept, supersedes=plan.old_indexes))
    for name in plan.old_indexes:
        if INDEX_PREFIX + name not in plan.locked:  # superseded: ignored while it stays
            _delete(repo, INDEX_PREFIX + name)
    for pack_id in [*plan.packs_delete, *(p.id for p in plan.packs_repack)]:
        try:
            result.bytes_freed += repo.storage.stat(pack_name(pack_id)).size
        except NotFound:
            continue
        _delete(repo, pack_name(pack_id))
    remove_revoked_key_files(repo)  # those key removal left under Object Lock, now unlocked
    return result


def _delete(repo: Repository, name: str) -> None:
    with contextlib.suppress(NotFound):
        repo.storage.delete(name)

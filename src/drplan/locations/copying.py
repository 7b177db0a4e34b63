"""Copying snapshots to a location, keeping only what that location's retention keeps.

Used by ``drplan copy`` and by the fan-out after each backup of a plan job. The
repository-level mechanics (replica identity, packs, index, verification) are in
``drplan.repo.replication``; this module decides which snapshots go, and locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from drplan.errors import DrplanError
from drplan.progress import Progress
from drplan.repo.locks import RepositoryLock
from drplan.repo.replication import CopyResult, copy_snapshots, open_replica, target_snapshot_ids
from drplan.repo.repository import Repository
from drplan.repo.retention import BUCKETS, Decision, Policy, decide, group_key
from drplan.repo.snapshot import Snapshot
from drplan.storage import Storage

GROUP_BY = ("host", "paths")  # as forget groups by default, so copy and forget agree


@contextlib.contextmanager
def about_location(name: str | None) -> Iterator[None]:
    """Errors raised inside name the plan location they concern (URLs alone are ambiguous)."""
    try:
        yield
    except DrplanError as exc:
        if name and exc.origin is None:
            exc.origin = name
            exc.message = f"location {name}: {exc.message}"
        raise


def worth_copying(
    candidates: list[Snapshot], present: list[Snapshot], policies: dict[str | None, Policy]
) -> list[Snapshot]:
    """The candidates the target's retention would keep, next to what it already holds.

    A snapshot kept only by period rules (hourly ... yearly) is not sent when the
    target already holds one of each of those periods: a location that keeps one
    snapshot a year (an archive) receives the first of each year and then nothing more
    that year, not every backup only to forget it at its next prune (and, under Object
    Lock, to pay for it for the lock's days).
    """
    held = {s.id for s in present}
    pool = present + [s for s in candidates if s.id not in held]
    wanted = set()
    for d in decide(pool, policies, GROUP_BY):
        if d.keep and d.snapshot.id not in held and not _period_held(d, present):
            wanted.add(d.snapshot.id)
    return [s for s in candidates if s.id in wanted]


def _period_held(decision: Decision, present: list[Snapshot]) -> bool:
    """Whether every rule keeping it is a period rule whose period the target already has."""
    snapshot = decision.snapshot
    periods = [reason.split()[0] for reason in decision.reasons]
    if not periods or any(p not in BUCKETS for p in periods):
        return False
    group = group_key(snapshot, GROUP_BY)
    mates = [s for s in present if s.job == snapshot.job and group_key(s, GROUP_BY) == group]
    return all(any(BUCKETS[p](s.time) == BUCKETS[p](snapshot.time) for s in mates) for p in periods)


def with_chains(source: Repository, snapshots: list[Snapshot], present: set[str]) -> list[Snapshot]:
    """``snapshots`` and the base backups they build on that the target lacks, oldest first:
    an incremental without its full could not be restored there."""
    wanted = {s.id: s for s in snapshots}
    if any(s.source.get("chain") for s in snapshots):
        by_id = {s.id: s for s in source.readable_snapshots()[0]}
        for snapshot in snapshots:
            for needed in snapshot.source.get("chain", []):
                if needed not in present and needed in by_id:
                    wanted.setdefault(needed, by_id[needed])
    return sorted(wanted.values(), key=lambda s: (s.time, s.id))


def copy_to(
    source: Repository,
    target_storage: Storage,
    snapshots: list[Snapshot],
    *,
    policies: dict[str | None, Policy] | None = None,
    report: Callable[[str], None] = lambda _: None,
    create: bool = True,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy ``snapshots`` (filtered by ``policies`` when given) to the replica at ``target_storage``.

    The caller holds a shared lock on ``source``; the target is created as a replica
    if empty, and locked shared (like a backup) while the copy runs.
    """
    target, created = open_replica(source, target_storage, create=create)
    with RepositoryLock(target, exclusive=False, operation="copy"):
        target.load_index()
        not_kept = 0
        present_ids = target_snapshot_ids(target)
        if policies is not None:
            present, _ = target.readable_snapshots()  # what the target holds, not the source
            wanted = worth_copying(snapshots, present, policies)
            not_kept = sum(1 for s in snapshots if s.id not in present_ids) - sum(
                1 for s in wanted if s.id not in present_ids
            )
            snapshots = wanted
        snapshots = with_chains(source, snapshots, present_ids)
        result = copy_snapshots(source, target, snapshots, report, progress)
    result.created, result.not_kept = created, not_kept
    return result

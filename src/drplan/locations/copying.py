"""Copying snapshots to a location, keeping only what that location's retention keeps.

Used by ``drplan copy`` and by the fan-out after each backup of a plan job. The
repository-level mechanics (replica identity, packs, index, verification) are in
``drplan.repo.replication``; this module decides which snapshots go, and locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from drplan.errors import DrplanError
from drplan.repo.locks import RepositoryLock
from drplan.repo.replication import CopyResult, copy_snapshots, open_replica, target_snapshot_ids
from drplan.repo.repository import Repository
from drplan.repo.retention import Policy, decide
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

    A location that keeps one snapshot a year (an archive) gets the newest of each
    year, not every snapshot only to forget them at its next prune.
    """
    held = {s.id for s in present}
    pool = present + [s for s in candidates if s.id not in held]
    kept = {d.snapshot.id for d in decide(pool, policies, GROUP_BY) if d.keep}
    return [s for s in candidates if s.id in kept]


def copy_to(
    source: Repository,
    target_storage: Storage,
    snapshots: list[Snapshot],
    *,
    policies: dict[str | None, Policy] | None = None,
    report: Callable[[str], None] = lambda _: None,
    create: bool = True,
) -> CopyResult:
    """Copy ``snapshots`` (filtered by ``policies`` when given) to the replica at ``target_storage``.

    The caller holds a shared lock on ``source``; the target is created as a replica
    if empty, and locked shared (like a backup) while the copy runs.
    """
    target, created = open_replica(source, target_storage, create=create)
    with RepositoryLock(target, exclusive=False, operation="copy"):
        target.load_index()
        not_kept = 0
        if policies is not None:
            present_ids = target_snapshot_ids(target)
            present = [s for s in source.snapshots() if s.id in present_ids]
            wanted = worth_copying(snapshots, present, policies)
            not_kept = sum(1 for s in snapshots if s.id not in present_ids) - sum(
                1 for s in wanted if s.id not in present_ids
            )
            snapshots = wanted
        result = copy_snapshots(source, target, snapshots, report)
    result.created, result.not_kept = created, not_kept
    return result

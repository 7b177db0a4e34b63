"""Which archived WAL a location may let go: only what no kept base backup can use.

WAL is kept from the start of the oldest base backup that retention keeps in the
location (a kept incremental keeps its full, so its chain's start counts): every
point from that backup on stays reachable. When the plan bounds the point-in-time
window (the WAL job's ``keep_within``, else the data classes' ``retention.wal``),
WAL is kept only from the newest kept base backup that was consistent before the
window began: every point in the window stays reachable, and older base backups stay
restorable to their own end (each carries the WAL it needs). History files are always kept (they are tiny, and recovery
follows timelines through them). A ``.partial`` another replaced goes too (one under
Object Lock, or written by an append-only host, outlives its replacement): the complete
segment, else the newest partial of it, is what recovery reads. A location that holds no kept base backup of the
system keeps all of its WAL: the backups it belongs to may be in another location.
Objects still under Object Lock stay and are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from drplan.repo.immutability import locks_of
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_archive import (
    SEGMENT,
    WAL_PREFIX,
    ArchivedWal,
    WalArchive,
    lsn_segment,
    segment_name,
    segment_number,
)
from drplan.sources.postgres.wal_status import segment_size, stop_time

if TYPE_CHECKING:
    from drplan.plan.model import Plan


@dataclass
class WalRetention:
    system: str
    reason: str
    keep_from: str | None = None  # the first segment kept
    doomed: list[ArchivedWal] = field(default_factory=list)
    locked: dict[str, datetime] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "system": self.system,
            "keep_from": self.keep_from,
            "reason": self.reason,
            "remove": [w.file for w in self.doomed],
            "locked": len(self.locked),
        }


def wal_systems(repo: Repository) -> list[str]:
    """The systems with archived WAL in the repository."""
    return sorted({info.name.split("/")[1] for info in repo.storage.list(WAL_PREFIX)})


def plan_wal_retention(
    repo: Repository,
    system: str,
    kept: list[Snapshot],
    now: datetime,
    window: timedelta | None = None,
) -> WalRetention:
    bases = [s for s in kept if s.system == system and s.source.get("kind") == "postgres"]
    files = WalArchive(repo, system).files()
    replaced = _replaced_partials(files)
    if not bases:
        decision = WalRetention(
            system,
            f"no base backup of {system} is kept here: all of its WAL stays, but for partial"
            " segments a newer copy replaced",
        )
        decision.doomed = [wal for wal in files if wal.object in replaced]
        return _spare_locked(repo, decision, now)
    size = segment_size(bases)

    def start(s: Snapshot) -> int:
        return lsn_segment(str(s.source.get("start_lsn", "0/0")), size)

    oldest = min(bases, key=start)
    reason = f"the oldest kept base backup of {system}, {oldest.short_id}, starts there"
    if window is not None:
        before = [s for s in bases if stop_time(s) <= now - window]
        if before:
            oldest = max(before, key=start)
            reason = (
                f"base backup {oldest.short_id} of {system}, the newest before the"
                f" {_days(window)} point-in-time window, starts there"
            )
    first = start(oldest)
    timeline = int(oldest.source.get("timeline", 1))
    decision = WalRetention(system, reason, segment_name(timeline, first, size))
    for wal in files:
        old = SEGMENT.match(wal.file[:24]) and segment_number(wal.file, size) < first
        if old or wal.object in replaced:
            decision.doomed.append(wal)
    return _spare_locked(repo, decision, now)


def _spare_locked(repo: Repository, decision: WalRetention, now: datetime) -> WalRetention:
    decision.locked = locks_of(repo.storage, [w.object for w in decision.doomed], now)
    decision.doomed = [w for w in decision.doomed if w.object not in decision.locked]
    return decision


def _replaced_partials(files: list[ArchivedWal]) -> set[str]:
    """Objects of ``.partial`` files that recovery would never read: their segment is
    archived complete, or a newer partial of it is (those stored in the same second as
    the newest all stay: a listing's times tell them no further apart)."""
    complete = {wal.file for wal in files if SEGMENT.fullmatch(wal.file)}
    partials = [wal for wal in files if wal.file.endswith(".partial")]
    newest: dict[str, float] = {}
    for wal in partials:
        newest[wal.file] = max(newest.get(wal.file, wal.mtime), wal.mtime)
    return {
        wal.object for wal in partials if wal.file[:24] in complete or wal.mtime < newest[wal.file]
    }


def _days(window: timedelta) -> str:
    return f"{window.days}-day" if window.days and not window.seconds else str(window)


def wal_window(plan: Plan, system: str) -> timedelta | None:
    """How far back the plan wants point-in-time recovery for ``system``: its WAL job's
    ``keep_within``, else the longest ``retention.wal`` of its data classes; None: as
    far as the kept base backups reach."""
    for job in plan.jobs.values():
        retention = job.retention
        if job.system == system and job.type == "wal" and retention and retention.keep_within:
            return retention.keep_within
    spans = [
        plan.data_classes[name].retention["wal"]
        for name in plan.systems[system].data_classes
        if name in plan.data_classes and "wal" in plan.data_classes[name].retention
    ]
    return max(spans) if spans else None


def apply_wal_retention(repo: Repository, decision: WalRetention) -> None:
    for wal in decision.doomed:
        repo.storage.delete(wal.object)

"""Which archived WAL a location may let go: only what no kept base backup can use.

WAL is kept from the start of the oldest base backup that retention keeps in the
location (a kept incremental keeps its full, so its chain's start counts): every
point from that backup on stays reachable, which is the recoverable window the
retention policy implies. History files are always kept (they are tiny, and recovery
follows timelines through them). A location that holds no kept base backup of the
system keeps all of its WAL: the backups it belongs to may be in another location.
Objects still under Object Lock stay and are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

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
from drplan.sources.postgres.wal_status import segment_size


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
    repo: Repository, system: str, kept: list[Snapshot], now: datetime
) -> WalRetention:
    bases = [s for s in kept if s.system == system and s.source.get("kind") == "postgres"]
    if not bases:
        return WalRetention(
            system, f"no base backup of {system} is kept here: all of its WAL stays"
        )
    size = segment_size(bases)
    oldest = min(bases, key=lambda s: lsn_segment(str(s.source.get("start_lsn", "0/0")), size))
    first = lsn_segment(str(oldest.source.get("start_lsn", "0/0")), size)
    timeline = int(oldest.source.get("timeline", 1))
    decision = WalRetention(
        system,
        f"the oldest kept base backup of {system}, {oldest.short_id}, starts there",
        segment_name(timeline, first, size),
    )
    for wal in WalArchive(repo, system).files():
        if SEGMENT.match(wal.file[:24]) and segment_number(wal.file, size) < first:
            decision.doomed.append(wal)
    decision.locked = locks_of(repo.storage, [w.object for w in decision.doomed], now)
    decision.doomed = [w for w in decision.doomed if w.object not in decision.locked]
    return decision


def apply_wal_retention(repo: Repository, decision: WalRetention) -> None:
    for wal in decision.doomed:
        repo.storage.delete(wal.object)

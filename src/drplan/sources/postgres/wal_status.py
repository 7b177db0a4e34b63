"""What a location can recover a PostgreSQL system to: its base backups plus its archived WAL.

The recoverable window runs from the earliest moment a kept base backup is
consistent to the newest archived segment reachable from it without a gap.
Segment times are the times they were archived: a segment holds no commit later
than that, which makes the end of the window a safe bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.backup_record import problem
from drplan.sources.postgres.wal_archive import (
    DEFAULT_SEGMENT_SIZE,
    SEGMENT,
    ArchivedWal,
    WalArchive,
    gaps,
    lsn_segment,
    segment_name,
    segment_number,
    segments_by_number,
)

if TYPE_CHECKING:
    from drplan.plan.model import PostgresSystem


def base_backups(
    repo: Repository, system: str, damaged: list[Snapshot] | None = None
) -> list[Snapshot]:
    """The system's base backups a restore can use, oldest first; those whose record it
    cannot (see ``backup_record``) go to ``damaged`` instead: one of them must neither
    be restored nor stand in the way of restoring the others."""
    snapshots, _ = repo.readable_snapshots()
    usable = []
    for s in snapshots:
        if s.system == system and s.source.get("kind") == "postgres":
            if problem(s.source) is None:
                usable.append(s)
            elif damaged is not None:
                damaged.append(s)
    return usable


def stop_time(base: Snapshot) -> datetime:
    """When the base backup became consistent, at the latest."""
    recorded = base.source.get("stop_time")
    if recorded:
        return datetime.fromisoformat(str(recorded))
    return base.time + timedelta(seconds=base.summary.duration_seconds)


def segment_size(bases: list[Snapshot]) -> int:
    for base in reversed(bases):
        size = base.source.get("wal_segment_size")
        if size:
            return int(size)
    return DEFAULT_SEGMENT_SIZE


@dataclass
class Reach:
    """How far WAL carries one base backup: contiguous segments from its stop point on."""

    base: Snapshot
    last_segment: str | None  # the newest segment reachable without a gap
    last_time: datetime  # when that was archived (the base's stop time when none)
    gap: tuple[str, str] | None = None  # the first run of missing segments after it, if any
    archived: bool = True  # False: the archive begins after it; it restores to its end only


@dataclass
class Window:
    system: str
    bases: list[Snapshot]
    reaches: list[Reach] = field(default_factory=list)
    files: list[ArchivedWal] = field(default_factory=list)
    segment_size: int = DEFAULT_SEGMENT_SIZE
    damaged: list[Snapshot] = field(default_factory=list)  # base backups left out (see above)

    @property
    def start(self) -> datetime | None:
        """The earliest point reachable with WAL after it (or the only base backup's end)."""
        usable = [r for r in self.reaches if r.archived] or self.reaches
        return min((stop_time(r.base) for r in usable), default=None)

    @property
    def end(self) -> datetime | None:
        return max((r.last_time for r in self.reaches), default=None)

    def describe(self) -> str:
        if self.start is None or self.end is None:
            return "nothing: no base backup"
        return f"{fmt_time(self.start)} to {fmt_time(self.end)}"


def fmt_time(value: datetime) -> str:
    """As --to takes it, to the microsecond (PostgreSQL's precision)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def recoverable_window(repo: Repository, system: str) -> Window:
    damaged: list[Snapshot] = []
    bases = base_backups(repo, system, damaged)
    size = segment_size(bases)
    files = WalArchive(repo, system).files()
    by_number = segments_by_number(files, size)
    partials = {
        segment_number(w.file, size): w
        for w in files
        if w.file.endswith(".partial") and SEGMENT.match(w.file[:24])
    }
    window = Window(system, bases, files=files, segment_size=size, damaged=damaged)
    newest = max(by_number, default=-1)
    oldest = min(by_number, default=-1)
    for base in bases:
        first = lsn_segment(str(base.source.get("stop_lsn", "0/0")), size)
        timeline = int(base.source.get("timeline", 1))
        reach = Reach(base, None, stop_time(base))
        n = first
        while n in by_number and by_number[n].timeline >= timeline:
            reach.last_segment = by_number[n].file
            reach.last_time = max(reach.last_time, _when(by_number[n]))
            n += 1
        if n in partials:  # the segment being written when it was last shipped
            reach.last_time = max(reach.last_time, _when(partials[n]))
        if n <= newest:
            missing = gaps(by_number, n, newest)[0]
            later = any(  # a newer base backup from which the archive is usable
                lsn_segment(str(b.source.get("stop_lsn", "0/0")), size) >= oldest for b in bases
            )
            if missing[0] == first and missing[1] == oldest - 1 and later:
                # The archive begins after this backup (retention let older WAL go): it
                # restores to its own end only, which is no hole in the archive.
                reach.archived = False
            else:
                reach.gap = (
                    segment_name(timeline, missing[0], size),
                    segment_name(timeline, missing[1], size),
                )
        window.reaches.append(reach)
    return window


def _when(wal: ArchivedWal) -> datetime:
    return datetime.fromtimestamp(wal.mtime, UTC)


def archive_state(repo: Repository, system: str, now: float) -> dict[str, Any]:
    """For ``wal status``: newest file, lag, size, and gaps after the oldest base backup."""
    window = recoverable_window(repo, system)
    files = window.files
    by_number = segments_by_number(files, window.segment_size)
    newest = files[-1] if files else None
    first = min(by_number, default=0)
    if window.bases:  # each base backup carries the WAL to its end: the archive goes on
        stop = lsn_segment(str(window.bases[0].source.get("stop_lsn", "0/0")), window.segment_size)
        first = max(first, stop)  # WAL retention may have let older WAL go
    holes = gaps(by_number, first, max(by_number)) if by_number else []
    timeline = newest.timeline if newest else 1
    return {
        "newest": newest.file if newest else None,
        "newest_time": _when(newest).isoformat() if newest else None,
        "lag_seconds": round(now - newest.mtime, 3) if newest else None,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "gaps": [
            {
                "first": segment_name(timeline, a, window.segment_size),
                "last": segment_name(timeline, b, window.segment_size),
            }
            for a, b in holes
        ],
        "window": {
            "start": window.start.isoformat() if window.start else None,
            "end": window.end.isoformat() if window.end else None,
        },
    }


def server_archiver(system: PostgresSystem, name: str) -> dict[str, Any]:
    """The live server of system ``name``: pg_stat_archiver, whether a ``drplan wal stream``
    is connected (its slot active), and what stops WAL reaching the archive; or why the
    server cannot be read (``error``)."""
    from drplan.sources.postgres.cluster import (  # noqa: PLC0415
        ClusterError,
        connect,
        problems,
        server_info,
    )

    try:
        secret = system.password.resolve() if system.password else None
        with connect(system.connection, secret, name) as conn:
            row = conn.execute(
                "select archived_count, last_archived_wal, last_archived_time,"
                " failed_count, last_failed_wal, last_failed_time from pg_stat_archiver"
            ).fetchone()
            streaming = conn.execute(
                "select coalesce(bool_or(active), false) from pg_replication_slots"
                " where slot_name like 'drplan\\_%'"
            ).fetchone()
            info = server_info(conn)
    except ClusterError as exc:
        return {"error": exc.message}
    assert row is not None
    keys = (
        "archived_count",
        "last_archived_wal",
        "last_archived_time",
        "failed_count",
        "last_failed_wal",
        "last_failed_time",
    )
    state: dict[str, Any] = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in zip(keys, row, strict=True)
    }
    state["streaming"] = bool(streaming and streaming[0])
    found = problems(info, "wal")
    if state["streaming"]:  # pg_receivewal carries the WAL: archiving is not needed
        found = [p for p in found if not p.startswith("archive_mode")]
    state["problems"] = found
    return state

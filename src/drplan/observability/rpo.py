"""The RPO engine: exposure per data class and location against the plan's objectives,
and each PostgreSQL system's recoverable window.

``gather`` reads every location once (snapshots, and the WAL window of each
PostgreSQL system); ``assess`` and ``windows`` are pure functions of what it read and
the clock, so the daemon, ``drplan status`` and ``/metrics`` agree, and tests need no
waiting.

A job that runs on a schedule is as good as its newest snapshot: exposure is now minus
that. A job that runs when triggered (``on change``, ``on EVENT``) backs up changes, not
time: exposure counts from the oldest change or event seen after its newest snapshot in
the location (the ledger, :mod:`drplan.scheduler.ledger`, a lost watch counting as one),
since data changed then is what a disaster now would lose; it is zero while every change
seen is backed up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from drplan.clock import rfc3339
from drplan.errors import DrplanError
from drplan.plan.model import Plan
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_status import Window, recoverable_window, stop_time

if TYPE_CHECKING:
    from drplan.scheduler.ledger import JobChanges

OK, AT_RISK, BREACHED, UNKNOWN = "ok", "at_risk", "breached", "unknown"


@dataclass
class LocationFacts:
    """What one location holds, as read once."""

    location: str
    error: str | None = None  # why it could not be read
    snapshots: list[Snapshot] = field(default_factory=list)
    windows: dict[str, Window] = field(default_factory=dict)  # by PostgreSQL system
    sizes: dict[str, int] = field(default_factory=dict)  # bytes stored, by SIZE_KINDS


# What a location's bytes are: packs of snapshot data, archived WAL, and the rest
# (snapshots, indexes, keys: metadata), by the first part of an object's name.
SIZE_KINDS = {"data": "data", "wal": "wal"}


def stored_sizes(repo: Repository) -> dict[str, int]:
    """Bytes stored in the repository by kind (one listing of every object)."""
    sizes = {"data": 0, "wal": 0, "metadata": 0}
    for info in repo.storage.list(""):
        sizes[SIZE_KINDS.get(info.name.split("/", 1)[0], "metadata")] += info.size
    return sizes


@dataclass(frozen=True)
class Exposure:
    data_class: str
    location: str
    objective: timedelta
    status: str  # ok, at_risk, breached, unknown
    newest: datetime | None = None  # the newest recoverable point (None: none, or unknown)
    source: str | None = None  # what that point is
    error: str | None = None

    def exposure(self, now: datetime) -> timedelta | None:
        return None if self.newest is None else now - self.newest


def gather(
    plan: Plan, open_location: Callable[[str], Repository], sizes: bool = True
) -> list[LocationFacts]:
    """Read every location of the plan once; a location that fails is reported, not raised.
    ``sizes``: also list every object for what the location stores (the one read that
    grows with the data, not with the snapshots)."""
    postgres = [name for name, s in plan.systems.items() if s.kind == "postgres"]
    facts = []
    for location in plan.locations:
        try:
            repo = open_location(location)
            snapshots, _ = repo.readable_snapshots()
            here = LocationFacts(location, snapshots=snapshots)
            if sizes:
                here.sizes = stored_sizes(repo)
            for system in postgres:
                window = recoverable_window(repo, system)
                if window.reaches:
                    here.windows[system] = window
        except DrplanError as exc:
            here = LocationFacts(location, error=exc.message)
        facts.append(here)
    return facts


def class_locations(plan: Plan, data_class: str) -> list[str]:
    """Where a data class must be recoverable from: the locations it requires, and every
    location a job covering it writes to, in the plan's order."""
    wanted = set(plan.data_classes[data_class].locations if data_class in plan.data_classes else [])
    for job in plan.jobs.values():
        if data_class in plan.job_data_classes(job):
            wanted.update(job.locations)
    return [name for name in plan.locations if name in wanted]


def assess(
    plan: Plan,
    facts: list[LocationFacts],
    now: datetime,
    triggers: Mapping[str, JobChanges] | None = None,
) -> list[Exposure]:
    """Exposure of every data class with an RPO in every location it must be in;
    ``triggers``: the ledger's record of each triggered job (none: nothing seen changing)."""
    from drplan.plan.schedule import ScheduleKind  # noqa: PLC0415

    by_location = {f.location: f for f in facts}
    triggered: dict[str, JobChanges | None] = {
        name: (triggers or {}).get(name)
        for name, job in plan.jobs.items()
        if job.schedule.kind is ScheduleKind.EVENT
    }
    at_risk = plan.objectives.at_risk
    out = []
    for data_class, objective in plan.objectives.rpo.items():
        jobs = {name for name, job in plan.jobs.items() if data_class in plan.job_data_classes(job)}
        systems = [
            name for name, s in plan.systems.items()
            if s.kind == "postgres" and data_class in s.data_classes
        ]  # fmt: skip
        for location in class_locations(plan, data_class):
            here = by_location.get(location)
            if here is None or here.error is not None:
                error = here.error if here else "not read"
                out.append(Exposure(data_class, location, objective, UNKNOWN, error=error))
                continue
            newest, source = _newest_point(here, jobs, systems, triggered, now)
            status = BREACHED
            if newest is not None:
                age = now - newest
                status = (
                    OK if age <= objective * at_risk else AT_RISK if age <= objective else BREACHED
                )
            out.append(Exposure(data_class, location, objective, status, newest, source))
    return out


def _newest_point(
    here: LocationFacts,
    jobs: set[str],
    systems: list[str],
    triggered: Mapping[str, JobChanges | None],
    now: datetime,
) -> tuple[datetime | None, str | None]:
    best: tuple[datetime | None, str | None] = (None, None)
    newest_of: dict[str, Snapshot] = {}  # a triggered job's newest snapshot here
    for snapshot in here.snapshots:
        if snapshot.job not in jobs:
            continue
        if snapshot.job in triggered:
            held = newest_of.get(snapshot.job)
            if held is None or snapshot.time > held.time:
                newest_of[snapshot.job] = snapshot
            continue
        point = stop_time(snapshot) if snapshot.source.get("kind") == "postgres" else snapshot.time
        if best[0] is None or point > best[0]:
            best = (point, f"snapshot {snapshot.short_id} of job {snapshot.job}")
    for job, snapshot in newest_of.items():
        point, source = triggered_point(snapshot, triggered[job], now)
        if best[0] is None or point > best[0]:
            best = (point, source)
    for system in systems:
        window = here.windows.get(system)
        if (
            window is not None
            and window.end is not None
            and (best[0] is None or window.end > best[0])
        ):
            best = (window.end, f"WAL of {system} archived up to then")
    return best


def triggered_point(
    snapshot: Snapshot, record: JobChanges | None, now: datetime
) -> tuple[datetime, str]:
    """How far a triggered job's snapshot keeps data safe: up to the oldest change seen
    after it (what a disaster now loses changed then), or up to now when none was."""
    changed = record.after(snapshot.time) if record is not None else None
    name = f"snapshot {snapshot.short_id} of job {snapshot.job}"
    if changed is None:
        return now, f"{name}; no change seen since"
    return min(changed, now), f"{name}; changed at {rfc3339(changed)}, not backed up since"


def overall(exposures: list[Exposure]) -> dict[str, Exposure]:
    """Per data class, the location it can be recovered from with the least loss."""
    best: dict[str, Exposure] = {}
    for e in exposures:
        held = best.get(e.data_class)
        if held is None or _better(e, held):
            best[e.data_class] = e
    return best


def _better(a: Exposure, b: Exposure) -> bool:
    if a.newest is None or b.newest is None:
        return a.newest is not None
    return a.newest > b.newest


def windows(facts: list[LocationFacts]) -> Mapping[str, tuple[datetime | None, datetime | None]]:
    """Per PostgreSQL system, the oldest and newest point reachable from any location."""
    out: dict[str, tuple[datetime | None, datetime | None]] = {}
    for here in facts:
        for system, window in here.windows.items():
            start, end = out.get(system, (None, None))
            if window.start is not None and (start is None or window.start < start):
                start = window.start
            if window.end is not None and (end is None or window.end > end):
                end = window.end
            out[system] = (start, end)
    return out

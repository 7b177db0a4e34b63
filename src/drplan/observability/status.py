"""The plan at a glance: per data class its exposure against its RPO, per job its newest
snapshot, next run and last outcome, per location whether it can be read and which
jobs it lags behind on. One value, rendered by ``drplan status`` as text or JSON and
served by the daemon."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan.clock import rfc3339
from drplan.drills.schedule import drill_states
from drplan.observability.rpo import (
    AT_RISK,
    BREACHED,
    OK,
    UNKNOWN,
    Exposure,
    LocationFacts,
    assess,
    overall,
    windows,
)
from drplan.plan.model import Job, JobType, Plan
from drplan.plan.schedule import NeverFiresError, ScheduleKind

if TYPE_CHECKING:  # the catalog (SQLAlchemy) is imported only where it is used
    from drplan.catalog.store import Catalog
    from drplan.scheduler.ledger import JobChanges


@dataclass(frozen=True)
class JobRun:
    """The outcome of a job's last run, as the catalog has it."""

    status: str
    ended_at: datetime | None
    error: str | None


def last_runs(catalog: Catalog, jobs: Iterable[str]) -> dict[str, JobRun]:
    """Each job's last run, as the catalog has it (jobs never run are left out)."""
    found = {name: catalog.last_run(name) for name in jobs}
    return {n: JobRun(r.status, r.ended_at, r.error) for n, r in found.items() if r is not None}


@dataclass
class Status:
    now: datetime
    exposures: list[Exposure]
    best: dict[str, Exposure]
    windows: dict[str, tuple[datetime | None, datetime | None]]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    drills: dict[str, dict[str, Any]] = field(default_factory=dict)  # see drills.schedule
    kpis: dict[str, Any] = field(default_factory=dict)  # see drills.report.kpi_table
    incidents: list[dict[str, Any]] = field(default_factory=list)  # open: incidents.view.status

    @property
    def healthy(self) -> bool:
        """No data class breached or unknown in any location it must be in."""
        return all(e.status in (OK, AT_RISK) for e in self.exposures)


def build_status(
    plan: Plan,
    facts: list[LocationFacts],
    now: datetime,
    last_runs: dict[str, JobRun],
    last_drills: dict[str, dict[str, Any]] | None = None,
    since: datetime | None = None,
    triggers: Mapping[str, JobChanges] | None = None,
) -> Status:
    """``last_drills``: each drill's newest catalog row; ``since``: when the daemon began
    to watch (a drill never run is not overdue before a slot after it); ``triggers``: the
    ledger of the jobs run by triggers (changes not backed up, watches lost)."""
    exposures = assess(plan, facts, now, triggers)
    status = Status(now, exposures, overall(exposures), dict(windows(facts)))
    status.drills = drill_states(plan, last_drills or {}, now, since)
    readable = [f for f in facts if f.error is None]
    for name, job in plan.jobs.items():
        newest = {f.location: _newest(f, name, job) for f in readable}
        anywhere = max((t for t in newest.values() if t is not None), default=None)
        try:
            upcoming = job.schedule.next_runs(now, plan.job_timezone(job))
        except NeverFiresError:
            upcoming = []
        run = last_runs.get(name)
        status.jobs[name] = {
            "system": job.system,
            "type": job.type.value,
            "schedule": str(job.schedule),
            "newest": anywhere,
            "next_run": upcoming[0] if upcoming else None,
            "last_run": run,
            "failing": run is not None and run.status not in ("succeeded", "running"),
            "trigger": _trigger(job, (triggers or {}).get(name)),
        }
        # A lost watch: a change there would not be seen, so nothing would back it up.
        status.jobs[name]["at_risk"] = bool((status.jobs[name]["trigger"] or {}).get("lost"))
        for location in job.locations if job.type is not JobType.WAL else ():
            # (WAL reaches each location within seconds of the others: no lag to show)
            here = newest.get(location)
            if location in newest and anywhere is not None and (here is None or here < anywhere):
                lag = status.locations.setdefault(location, {}).setdefault("lagging", {})
                lag[name] = None if here is None else anywhere - here
    for f in facts:
        entry = status.locations.setdefault(f.location, {})
        entry["state"] = "unreachable" if f.error else ("lagging" if entry.get("lagging") else "ok")
        entry["error"] = f.error
        entry["snapshots"] = len(f.snapshots)
        entry["size"] = dict(f.sizes)
        entry["wal"] = {system: w.end for system, w in sorted(f.windows.items())}
        entry.setdefault("lagging", {})
    return status


def _trigger(job: Job, record: JobChanges | None) -> dict[str, Any] | None:
    """A triggered job's state: its event, the oldest change not backed up, lost watches."""
    if job.schedule.kind is not ScheduleKind.EVENT:
        return None
    lost = record.lost if record else {}
    return {
        "event": job.schedule.event,
        "unbacked_since": record.unbacked() if record else None,
        "lost": {path: {"since": w.since, "reason": w.reason} for path, w in lost.items()},
    }


def _newest(facts: LocationFacts, name: str, job: Job) -> datetime | None:
    """The newest backup of a job in a location: its newest snapshot, or for a wal job
    the end of the WAL archived there."""
    if job.type is JobType.WAL:
        window = facts.windows.get(job.system)
        return window.end if window is not None else None
    return max((s.time for s in facts.snapshots if s.job == name), default=None)


def _time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def as_json(status: Status) -> dict[str, Any]:
    """Times RFC 3339 UTC, durations in seconds: the shape of `drplan status --json`."""
    now = status.now

    def exposure(e: Exposure) -> dict[str, Any]:
        return {
            "data_class": e.data_class, "location": e.location, "status": e.status,
            "objective_seconds": _seconds(e.objective),
            "exposure_seconds": _seconds(e.exposure(now)),
            "newest_point": _time(e.newest), "source": e.source, "error": e.error,
        }  # fmt: skip

    return {
        "time": _time(now),
        "healthy": status.healthy,
        "data_classes": {name: exposure(e) for name, e in status.best.items()},
        "exposures": [exposure(e) for e in status.exposures],
        "windows": {
            system: {"oldest": _time(start), "newest": _time(end)}
            for system, (start, end) in status.windows.items()
        },
        "jobs": {name: _job_json(job) for name, job in status.jobs.items()},
        "drills": {name: _drill_json(d) for name, d in status.drills.items()},
        "locations": {
            name: {
                **loc,
                "lagging": {j: _seconds(lag) for j, lag in loc["lagging"].items()},
                "wal": {system: _time(end) for system, end in loc.get("wal", {}).items()},
            }
            for name, loc in status.locations.items()
        },
    }


def _drill_json(state: dict[str, Any]) -> dict[str, Any]:
    times = ("last_started", "next_run", "overdue_since")
    return {k: _time(v) if k in times else v for k, v in state.items()}


def _job_json(job: dict[str, Any]) -> dict[str, Any]:
    run: JobRun | None = job["last_run"]
    trigger = job.get("trigger")
    if trigger is not None:
        lost = {p: {"since": _time(w["since"]), "reason": w["reason"]}
                for p, w in trigger["lost"].items()}  # fmt: skip
        trigger = {**trigger, "unbacked_since": _time(trigger["unbacked_since"]), "lost": lost}
    return {
        **{k: v for k, v in job.items() if k not in ("newest", "next_run", "last_run", "trigger")},
        "trigger": trigger,
        "newest": _time(job["newest"]),
        "next_run": _time(job["next_run"]),
        "last_run": None
        if run is None
        else {"status": run.status, "ended_at": _time(run.ended_at), "error": run.error},
    }


__all__ = [
    "AT_RISK",
    "BREACHED",
    "OK",
    "UNKNOWN",
    "JobRun",
    "Status",
    "as_json",
    "build_status",
    "last_runs",
]

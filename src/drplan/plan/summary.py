"""What a plan implies, computed once for every view of it: next runs, recovery order, coverage.

``drplan plan show`` renders this as tables or JSON; later the daemon's status
page and the API show the same values, so they are computed here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drplan.clock import rfc3339
from drplan.plan.coverage import coverages
from drplan.plan.durations import seconds
from drplan.plan.model import Plan
from drplan.plan.references import recovery_order
from drplan.plan.schedule import NeverFiresError, Schedule


@dataclass(frozen=True)
class Timing:
    """When something scheduled runs next, and the longest it ever waits between runs."""

    next_runs: list[datetime]
    worst_gap: timedelta | None
    never_fires: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "next_runs": [rfc3339(t) for t in self.next_runs],
            "worst_gap": seconds(self.worst_gap) if self.worst_gap is not None else None,
            "never_fires": self.never_fires,
        }


def timing(schedule: Schedule | None, tz: str, now: datetime, count: int = 3) -> Timing:
    if schedule is None:  # a drill run only by hand
        return Timing([], None)
    try:
        return Timing(schedule.next_runs(now, tz, count), schedule.worst_gap(tz, now))
    except NeverFiresError:
        return Timing([], None, never_fires=True)


@dataclass(frozen=True)
class ClassCoverage:
    """How one data class of one system is protected."""

    system: str
    data_class: str
    rpo: timedelta
    jobs: list[str]
    locations: list[str]
    best_gap: timedelta | None

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "data_class": self.data_class,
            "rpo": seconds(self.rpo),
            "jobs": self.jobs,
            "locations": self.locations,
            "best_gap": seconds(self.best_gap) if self.best_gap is not None else None,
        }


@dataclass(frozen=True)
class PlanSummary:
    plan: Plan
    now: datetime
    jobs: dict[str, Timing]
    drills: dict[str, Timing]
    recovery_waves: list[list[str]]
    coverage: list[ClassCoverage]

    def as_json(self) -> dict[str, Any]:
        """The plan as JSON (durations in seconds) with a ``derived`` section of computed values."""
        data: dict[str, Any] = self.plan.model_dump(mode="json")
        data["derived"] = {
            "generated_at": rfc3339(self.now),
            "jobs": {name: t.as_json() for name, t in self.jobs.items()},
            "drills": {name: t.as_json() for name, t in self.drills.items()},
            "recovery_order": self.recovery_waves,
            "system_rto": {name: seconds(self.plan.rto_of(name)) for name in self.plan.systems},
            "coverage": [c.as_json() for c in self.coverage],
        }
        return data


def summarize(plan: Plan, now: datetime) -> PlanSummary:
    jobs = {n: timing(j.schedule, plan.job_timezone(j), now) for n, j in plan.jobs.items()}
    drills = {n: timing(d.schedule, plan.timezone, now) for n, d in plan.drills.items()}
    coverage = []
    for cov in coverages(plan):
        gaps = [g for name in cov.jobs if (g := jobs[name].worst_gap) is not None]
        coverage.append(
            ClassCoverage(
                cov.system,
                cov.data_class,
                plan.objectives.rpo[cov.data_class],
                sorted(cov.jobs),
                cov.locations,
                min(gaps) if gaps else None,
            )
        )
    return PlanSummary(plan, now, jobs, drills, recovery_order(plan), coverage)

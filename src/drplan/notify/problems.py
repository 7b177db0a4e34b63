"""Which problems the plan's state shows, with their severity (see drplan.notify)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from drplan.observability.rpo import AT_RISK, BREACHED, UNKNOWN
from drplan.observability.status import Status
from drplan.plan.model import Plan, Severity
from drplan.plan.model.objectives import Tier


@dataclass(frozen=True)
class Problem:
    key: str  # stable while the problem lasts
    severity: Severity
    summary: str  # one line a person reads first
    tier: Tier | None = None  # the most urgent tier of the systems concerned
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class JobFailures:
    """A job's failed runs in a row, and the last error."""

    count: int = 0
    error: str | None = None
    damaged: bool = False  # the last run found data damaged (exit 13): told at once


def _tier_of_class(plan: Plan, data_class: str) -> Tier | None:
    tiers = [s.tier for s in plan.systems.values() if data_class in s.data_classes]
    return min(tiers, key=lambda t: t.rank) if tiers else None


def problems(
    plan: Plan,
    status: Status | None,
    failures: dict[str, JobFailures],
    since: datetime | None = None,
    partials: dict[str, JobFailures] | None = None,
) -> list[Problem]:
    """The problems ``status`` and the jobs' failures show. With ``since`` (when the daemon
    began to watch), a class never backed up somewhere is judged as if its newest point
    were then: a daemon just started, or a location just added, is not an emergency
    before the jobs have had the class's RPO to run. ``partials``: jobs whose runs saved
    a snapshot but not everything (unreadable files, a location missed), in a row; a
    partial snapshot counts as a recoverable point, so without this a source that
    lost part of its data would look backed up."""
    found = _rpo_problems(plan, status, since) if status is not None else []
    found += _drill_problems(plan, status) if status is not None else []
    found += _failure_problems(plan, failures)
    found += _partial_problems(plan, partials or {})
    return found


def _rpo_problems(plan: Plan, status: Status, since: datetime | None) -> list[Problem]:
    found: list[Problem] = []
    for e in status.exposures:
        if e.newest is None and e.status == BREACHED and since is not None:
            waited = status.now - since
            if waited <= e.objective * plan.objectives.at_risk:
                continue
            if waited <= e.objective:
                e = replace(e, status=AT_RISK)  # noqa: PLW2901
        tier = _tier_of_class(plan, e.data_class)
        key = f"rpo:{e.data_class}:{e.location}"
        age = e.exposure(status.now)
        details = {
            "data class": e.data_class,
            "location": e.location,
            "objective": str(e.objective),
            "exposure": "never backed up" if age is None else str(age).split(".")[0],
            "newest point": e.newest.isoformat() if e.newest else "none",
        }
        if e.status == BREACHED:
            severity = Severity.CRITICAL if tier == Tier.CRITICAL else Severity.ERROR
            summary = (
                f"RPO breached: {e.data_class} in {e.location} can be restored to"
                f" {details['exposure']} ago; the objective is {e.objective}"
                if age is not None
                else f"RPO breached: {e.data_class} was never backed up to {e.location}"
            )
            found.append(Problem(key, severity, summary, tier, details))
        elif e.status == AT_RISK:
            summary = (
                f"RPO at risk: {e.data_class} in {e.location} is {details['exposure']}"
                f" behind, objective {e.objective}"
                if age is not None
                else f"RPO at risk: {e.data_class} has not been backed up to {e.location} yet"
            )
            found.append(Problem(key, Severity.WARNING, summary, tier, details))
        elif e.status == UNKNOWN:
            summary = f"location {e.location} cannot be read: {e.error}"
            found.append(
                Problem(key, Severity.ERROR, summary, tier, {**details, "error": e.error or ""})
            )
    return found


def _drill_problems(plan: Plan, status: Status) -> list[Problem]:
    """Drills the testing schedule says should have run and did not: like a failing backup,
    an untested recovery is a risk nobody sees until the day it is needed."""
    found = []
    for name, state in status.drills.items():
        if state["overdue_since"] is None:
            continue
        drill = plan.drills[name]
        tiers = [plan.systems[s].tier for s in drill.systems or plan.systems if s in plan.systems]
        tier = min(tiers, key=lambda t: t.rank) if tiers else None
        last = state["last_started"]
        summary = (f"drill {name} is overdue: its slot of {state['overdue_since'].isoformat()}"
                   f" ({state['schedule']}) passed without a run; last run"
                   f" {last.isoformat() if last else 'never'}")  # fmt: skip
        found.append(Problem(f"drill:{name}", Severity.ERROR, summary, tier,
                             {"drill": name, "schedule": state["schedule"]}))  # fmt: skip
    return found


def _failure_problems(plan: Plan, failures: dict[str, JobFailures]) -> list[Problem]:
    found: list[Problem] = []
    limit = plan.alerting.failures_before_alert
    for job_name, failed in failures.items():
        if job_name.startswith("drill:"):  # a failed drill is a finding, told at once
            summary = f"{job_name.replace(':', ' ', 1)} failed: {failed.error}"
            found.append(Problem(f"job:{job_name}", Severity.ERROR, summary, None,
                                 {"task": job_name, "error": failed.error or ""}))  # fmt: skip
            continue
        if failed.damaged:  # no retry mends damage: the sooner known, the more can be saved
            summary = f"{job_name} found damaged data: {failed.error}"
            found.append(Problem(f"job:{job_name}", Severity.CRITICAL, summary, None,
                                 {"task": job_name, "error": failed.error or ""}))  # fmt: skip
            continue
        if failed.count < limit:
            continue
        job = plan.jobs.get(job_name)
        if job is None:  # upkeep (forget:LOCATION, check:LOCATION): no system of its own
            summary = f"{job_name} failed {failed.count} runs in a row: {failed.error}"
            found.append(Problem(f"job:{job_name}", Severity.ERROR, summary, None,
                                 {"task": job_name, "error": failed.error or ""}))  # fmt: skip
            continue
        tier = plan.systems[job.system].tier if job.system in plan.systems else None
        severity = Severity.CRITICAL if tier == Tier.CRITICAL else Severity.ERROR
        summary = f"job {job_name} failed {failed.count} runs in a row: {failed.error}"
        found.append(Problem(f"job:{job_name}", severity, summary, tier,
                             {"job": job_name, "system": job.system, "error": failed.error or ""}))  # fmt: skip
    return found


def _partial_problems(plan: Plan, partials: dict[str, JobFailures]) -> list[Problem]:
    found: list[Problem] = []
    for job_name, partial in partials.items():
        if partial.count < plan.alerting.failures_before_alert:
            continue
        job = plan.jobs.get(job_name)
        tier = plan.systems[job.system].tier if job and job.system in plan.systems else None
        summary = (f"job {job_name} saved only part of what it should, {partial.count} runs"
                   f" in a row: {partial.error}")  # fmt: skip
        found.append(Problem(f"partial:{job_name}", Severity.WARNING, summary, tier,
                             {"job": job_name, "error": partial.error or ""}))  # fmt: skip
    return found

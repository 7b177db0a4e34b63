"""Rules about backup coverage: does each system's data reach enough places, often enough, for long enough?"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from drplan.plan.coverage import Coverage, coverages
from drplan.plan.durations import format_duration as fmt
from drplan.plan.lint.engine import Hit, LintContext
from drplan.plan.model import Job, Plan, Tier
from drplan.plan.schedule import NeverFiresError, Schedule, ScheduleKind
from drplan.plan.source import PathKey
from drplan.plan.wal_loss import Shortfall, shortfalls


def _gap(plan: Plan, job: Job, ctx: LintContext) -> timedelta | None:
    try:
        return job.schedule.worst_gap(plan.job_timezone(job), ctx.now)
    except NeverFiresError:
        return None  # reported by schedule_never_fires


def _tightest(plan: Plan, cov: Coverage, ctx: LintContext) -> tuple[str, timedelta] | None:
    """The job with the shortest worst-case gap, among jobs that run on a rhythm."""
    gaps = [(g, name) for name, job in cov.jobs.items() if (g := _gap(plan, job, ctx)) is not None]
    if not gaps:
        return None
    gap, name = min(gaps)
    return name, gap


def interval_exceeds_rpo(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        best = _tightest(plan, cov, ctx)
        rpo = plan.objectives.rpo[cov.data_class]
        if best and best[1] > rpo:
            name, gap = best
            yield Hit(
                ("jobs", name, "schedule"),
                f"job '{name}' runs every {fmt(gap)} at worst, longer than the {fmt(rpo)} RPO of"
                f" '{cov.data_class}' data on system '{cov.system}': up to {fmt(gap)} of changes can be lost",
                f"schedule it at least every {fmt(rpo)}, or add a more frequent job for '{cov.system}'",
            )


def interval_equals_rpo(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        best = _tightest(plan, cov, ctx)
        rpo = plan.objectives.rpo[cov.data_class]
        if best and best[1] == rpo:
            name, gap = best
            yield Hit(
                ("jobs", name, "schedule"),
                f"job '{name}' runs every {fmt(gap)}, exactly the {fmt(rpo)} RPO of '{cov.data_class}'"
                f" data: each run's own duration, and any failed run, breaches the objective",
                "run it more often than the RPO (for PostgreSQL, archive WAL continuously)",
            )


def wal_loss_exceeds_rpo(ctx: LintContext) -> Iterator[Hit]:
    """Complements DR001, which takes continuous WAL for no loss at all: how the WAL
    reaches the archive decides what a crash loses (drplan.plan.wal_loss)."""
    for short in shortfalls(ctx.plan, ctx.now):
        yield Hit(_wal_setting(ctx.plan, short), short.message, short.hint)


def _wal_setting(plan: Plan, short: Shortfall) -> PathKey:
    """Where the finding points: the setting that sets the bound, else the WAL job."""
    job = plan.jobs[short.job]
    if job.stream:
        return ("jobs", short.job, "partial_every" if job.partial_every else "stream")
    if job.archive_timeout:
        return ("jobs", short.job, "archive_timeout")
    return ("jobs", short.job)


def data_class_without_job(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        index = plan.systems[cov.system].data_classes.index(cov.data_class)
        if not cov.jobs:
            yield Hit(
                ("systems", cov.system, "data_classes", index),
                f"no job backs up the '{cov.data_class}' data of system '{cov.system}'",
                f"add a job with `system: {cov.system}` under `jobs`",
            )
        elif all(job.schedule.kind is ScheduleKind.MANUAL for job in cov.jobs.values()):
            yield Hit(
                ("systems", cov.system, "data_classes", index),
                f"the '{cov.data_class}' data of system '{cov.system}' is backed up only when someone"
                " remembers to (its jobs are manual)",
                "give one of its jobs a schedule",
            )


def no_offsite_copy(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        site = plan.systems[cov.system].site
        if cov.jobs and not any(plan.locations[loc].offsite_for(site) for loc in cov.locations):
            yield Hit(
                cov.where,
                f"the '{cov.data_class}' data of system '{cov.system}' is kept only on site"
                f" ({', '.join(cov.locations)}): losing the site loses every copy",
                "add a secondary, cloud or archive location to its jobs",
            )


def critical_single_location(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        if plan.systems[cov.system].tier is Tier.CRITICAL and cov.jobs and len(cov.locations) < 2:
            yield Hit(
                cov.where,
                f"critical system '{cov.system}' keeps its '{cov.data_class}' data in one location"
                f" ({cov.locations[0]}): one failure loses it",
                "add a second location to its jobs",
            )


def required_location_missing(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for cov in coverages(plan):
        spec = plan.data_classes.get(cov.data_class)
        missing = [loc for loc in (spec.locations if spec else []) if loc not in cov.locations]
        if cov.jobs and missing:
            yield Hit(
                cov.where,
                f"data class '{cov.data_class}' must reach {', '.join(spec.locations if spec else [])},"
                f" but no job of system '{cov.system}' writes to {', '.join(missing)}",
                f"add {', '.join(missing)} to the locations of a job of '{cov.system}'",
            )


def retention_below_requirement(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, job in plan.jobs.items():
        for cls in plan.job_data_classes(job):
            spec = plan.data_classes.get(cls)
            need = spec and (spec.retention.get(job.type) or spec.retention.get("any"))
            if not need:
                continue
            gap = _gap(plan, job, ctx)
            for loc in job.locations:
                policy = plan.locations[loc].retention or job.retention
                if policy is None or (policy.counts_only and gap is None):
                    continue  # keeps everything, or keeps N of an event-driven job: no span to judge
                kept = policy.span(gap)
                if kept < need:
                    where = (
                        ("locations", loc, "retention")
                        if plan.locations[loc].retention
                        else ("jobs", name, "retention")
                    )
                    yield Hit(
                        where,
                        f"job '{name}' keeps {job.type} backups for {fmt(kept)} in '{loc}', but"
                        f" '{cls}' data must be kept for {fmt(need)}",
                        f"keep at least {fmt(need)}, e.g. `keep_within: {fmt(need)}`",
                    )


def schedule_never_fires(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    items: list[tuple[tuple[str, str, str], Schedule | None, str]] = [
        (("jobs", n, "schedule"), j.schedule, plan.job_timezone(j)) for n, j in plan.jobs.items()
    ]
    items += [
        (("drills", n, "schedule"), d.schedule, plan.timezone) for n, d in plan.drills.items()
    ]
    items += [
        (("data_classes", n, "verify"), c.verify, plan.timezone)
        for n, c in plan.data_classes.items()
    ]
    for path, schedule, tz in items:
        if schedule is None or schedule.kind is not ScheduleKind.CRON:
            continue
        try:
            schedule.next_runs(ctx.now, tz)
        except NeverFiresError:
            yield Hit(
                path,
                f"schedule '{schedule}' matches no date and will never run",
                "check the day-of-month and month fields (e.g. there is no 30 February)",
            )


def location_unused(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    used = {loc for job in plan.jobs.values() for loc in job.locations}
    if plan.security.evidence is not None:  # evidence captures write there
        used.add(plan.security.evidence.location)
    for name in plan.locations:
        if name not in used:
            yield Hit(
                ("locations", name),
                f"no job writes to location '{name}'",
                "add it to a job's locations, or remove it",
            )

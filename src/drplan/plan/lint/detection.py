"""Rules about the detection window: an Object Lock shorter than the time a compromise may
go unnoticed protects nothing by the time anyone notices.

An attacker who got in at time T may delete, before being noticed at T + window, every
object whose lock ended by then: the backups from just before T included, which are the
ones a recovery needs. So a location's lock must last at least the plan's
``security.detection_window``. Where every immutable location of a job locks for less,
the job has no copy that outlasts a late-noticed breach: an error. A shorter lock on a
location beside one long enough (or that no job writes to) is a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from drplan.plan.durations import format_duration as fmt
from drplan.plan.lint.engine import Hit, LintContext
from drplan.plan.model import Plan


def lock_shorter_than_detection(ctx: LintContext) -> Iterator[Hit]:
    """DR025: locations that are the only immutable copies of a job, locked too briefly."""
    for name, (days, jobs) in _short_locks(ctx.plan).items():
        relied = [job for job, alone in jobs.items() if alone]
        if relied:
            yield _hit(ctx.plan, name, days, f"the only immutable copy of {_jobs(relied)}")


def shorter_lock_beside_longer(ctx: LintContext) -> Iterator[Hit]:
    """DR026: locations locked too briefly whose jobs have a longer-locked copy elsewhere."""
    for name, (days, jobs) in _short_locks(ctx.plan).items():
        if not any(jobs.values()):
            where = f"beside a longer lock for {_jobs(list(jobs))}" if jobs else "written by no job"
            yield _hit(ctx.plan, name, days, where)


def _short_locks(plan: Plan) -> dict[str, tuple[int, dict[str, bool]]]:
    """Per location locked for less than the detection window: its days, and each job
    writing there with whether no other location of that job locks long enough."""
    window = plan.security.detection_window
    if window is None:
        return {}
    days = {
        name: lock.days
        for name, location in plan.locations.items()
        if (lock := getattr(location, "immutability", None)) is not None
    }
    short = {name: d for name, d in days.items() if timedelta(days=d) < window}
    found: dict[str, tuple[int, dict[str, bool]]] = {name: (d, {}) for name, d in short.items()}
    for job_name, job in plan.jobs.items():
        covered = any(timedelta(days=days.get(loc, 0)) >= window for loc in job.locations)
        for loc in job.locations:
            if loc in short:
                found[loc][1][job_name] = not covered
    return found


def _hit(plan: Plan, name: str, days: int, why: str) -> Hit:
    window = plan.security.detection_window
    assert window is not None  # _short_locks found it
    return Hit(
        ("locations", name, "immutability", "days"),
        f"location '{name}' locks objects for {days}d, shorter than the {fmt(window)} detection"
        f" window ({why}): a breach noticed that late finds its backups deletable",
        f"raise `locations.{name}.immutability.days` to {_ceil_days(window)} or more",
    )


def _jobs(names: list[str]) -> str:
    return ("job " if len(names) == 1 else "jobs ") + ", ".join(f"'{n}'" for n in names)


def _ceil_days(window: timedelta) -> int:
    return -(-window // timedelta(days=1))

"""What the daemon runs: the plan's backup jobs, and the upkeep the plan implies.

* every backup job with a cron or interval schedule: ``drplan backup JOB``;
* every backup job scheduled ``on EVENT`` (``on change``, ``on deployment``): ``drplan
  backup JOB`` too, started when a trigger asks (:mod:`drplan.scheduler.triggers`);
* every ``wal`` job with ``stream: true``: ``drplan wal stream``, kept running
  (``continuous``: restarted with backoff when it ends, never scheduled);
* per location, daily (midnight in the plan's time zone): ``drplan forget --prune``,
  applying the retention the plan gives that location's jobs; not for S3 locations on
  an append-only backup host (``$DRPLAN_APPEND_ONLY``), where it could only fail: the
  privileged host does it (docs/operations.md, "An append-only backup host");
* per location that a data class with a ``verify`` schedule must be in, on the most
  frequent such schedule: ``drplan check --read-data-subset 5%``, so every pack is
  read back over twenty runs;
* every drill with a cron or interval schedule (the others run only by hand):
  ``drplan drill run DRILL``, not retried when it fails (a failed drill is a finding; it runs again at its next slot) unless it
  was refused because another drill of its systems ran;
* per pair of a job's first location and each of its others (jobs that replicate
  after each backup), every ``COPY_EVERY``: ``drplan copy --from FIRST --to OTHER --job
  JOB...``. Each backup copies its snapshot itself; this catches a location up on what
  it missed while it was unreachable, instead of leaving it behind until the job's
  next backup (a day, for a daily full).

The open incidents are not a task: ``serve`` drives them itself, the moment one changes
(:mod:`drplan.incidents.engine`).

Each is a ``Task``: a name (the job's, or ``forget:LOCATION``, ``check:LOCATION``), a
schedule and the command line of its runs. Forget and check take a location's exclusive lock,
so it waits while anything else works there, and the rest waits for it: a slot that
came meanwhile is run when the location is free (it stays due), not failed on a lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from drplan.errors import DrillRefusedError
from drplan.plan.model import Plan
from drplan.plan.model.storage import JobType
from drplan.plan.schedule import Schedule, ScheduleKind, parse_schedule
from drplan.plan.wal_loss import DEFAULT_PARTIAL_EVERY
from drplan.scheduler.triggers import debounce_of
from drplan.storage.registry import APPEND_ONLY_ENV

log = logging.getLogger("drplan.serve")

UPKEEP_SCHEDULE = parse_schedule("@daily")
COPY_EVERY = parse_schedule("15m")
# Past its budget a drill stops itself and tears down; the daemon kills it only later.
DRILL_TEARDOWN = timedelta(minutes=10)
CHECK_SUBSET = "5%"


@dataclass(frozen=True)
class Task:
    name: str
    schedule: Schedule
    timezone: str
    argv: tuple[str, ...]  # after `drplan --plan PLAN`
    timeout: timedelta | None = None
    job: str | None = None  # the backup job it runs, if it is one
    locations: tuple[str, ...] = ()  # where it works
    exclusive: bool = False  # forget and check: they lock a location for themselves
    retry_codes: tuple[int, ...] | None = None  # exit codes retried (None: every failure)
    waits_for: tuple[str, ...] = ()  # tasks it never runs beside (a copy: the jobs it copies,
    # whose own fan-out would send the same snapshot at the same time)
    debounce: timedelta | None = None  # a triggered task: how long it waits for quiet

    @property
    def triggered(self) -> bool:
        """Run when a trigger asks (``on EVENT``), not per slot."""
        return self.schedule.kind is ScheduleKind.EVENT

    @property
    def continuous(self) -> bool:
        """Kept running rather than run per slot (the WAL stream)."""
        return self.schedule.kind is ScheduleKind.CONTINUOUS


def conflicts(a: Task, b: Task) -> bool:
    """Whether ``a`` must wait while ``b`` runs: forget or check and anything else on one
    location.
    The WAL stream takes no lock (WAL objects are written whole, under names of their
    own), so it conflicts with nothing: upkeep cannot wait for it, it never ends."""
    if a.continuous or b.continuous:
        return False
    if a.name in b.waits_for or b.name in a.waits_for:
        return True
    return (a.exclusive or b.exclusive) and bool(set(a.locations) & set(b.locations))


def tasks(plan: Plan, env: Mapping[str, str] | None = None) -> list[Task]:
    """The daemon's tasks; ``env`` is the environment its runs get (default this process's)."""
    env = os.environ if env is None else env
    return _jobs(plan) + _upkeep(plan, env) + _drills(plan) + _copies(plan)


def _jobs(plan: Plan) -> list[Task]:
    found = [
        Task(name, job.schedule, plan.job_timezone(job), ("backup", name, "--json"),
             job.timeout, job=name, locations=tuple(job.locations))
        for name, job in plan.jobs.items()
        if job.schedule.kind in (ScheduleKind.CRON, ScheduleKind.INTERVAL)
    ]  # fmt: skip
    found += [
        Task(name, job.schedule, plan.job_timezone(job), ("backup", name, "--json"),
             job.timeout, job=name, locations=tuple(job.locations), debounce=debounce_of(job))
        for name, job in plan.jobs.items()
        if job.schedule.kind is ScheduleKind.EVENT and job.type is not JobType.WAL
    ]  # fmt: skip
    # The stream ships the segment being written as often as lint counts on (wal_loss).
    found += [
        Task(name, job.schedule, plan.job_timezone(job), ("wal", "stream", "--system", job.system,
             "--partial-every", f"{(job.partial_every or DEFAULT_PARTIAL_EVERY).total_seconds():g}"),
             job=name, locations=tuple(job.locations))
        for name, job in plan.jobs.items()
        if job.stream
    ]  # fmt: skip
    return found


def _upkeep(plan: Plan, env: Mapping[str, str]) -> list[Task]:
    found = []
    written = {loc for job in plan.jobs.values() for loc in job.locations}
    # Where forget may not delete, it stops at once with exit 26: a daily failing run
    # would only bury real failures. Said once per (re)load of the plan, not per day.
    # A value that is not a yes (even a bad one, which forget itself refuses) schedules it.
    append_only = env.get(APPEND_ONLY_ENV, "").strip().lower() in ("1", "true", "yes")
    skipped = [loc for loc, spec in plan.locations.items()
               if append_only and loc in written and spec.kind == "s3"]  # fmt: skip
    if skipped:
        log.info("no daily forget for %s: $%s says this host may not delete there; run"
                 " `drplan forget --repo LOCATION --prune` on the privileged host",
                 ", ".join(skipped), APPEND_ONLY_ENV)  # fmt: skip
    for location in plan.locations:
        if location in written and location not in skipped:
            found.append(Task(f"forget:{location}", UPKEEP_SCHEDULE, plan.timezone,
                              ("forget", "--repo", location, "--prune", "--json"),
                              locations=(location,), exclusive=True))  # fmt: skip
    checks: dict[str, Schedule] = {}
    for spec in plan.data_classes.values():
        if spec.verify is None:
            continue
        for location in spec.locations:
            held = checks.get(location)
            if held is None or _gap(spec.verify, plan.timezone) < _gap(held, plan.timezone):
                checks[location] = spec.verify
    for location, schedule in checks.items():
        found.append(Task(f"check:{location}", schedule, plan.timezone,
                          ("check", "--repo", location, "--read-data-subset", CHECK_SUBSET, "--json"),
                          locations=(location,), exclusive=True))  # fmt: skip
    return found


def _drills(plan: Plan) -> list[Task]:
    found = []
    for name, drill in plan.drills.items():
        if drill.schedule is not None and drill.scheduled:  # the others run by hand
            systems = plan.drilled_systems(name)
            budget = drill.budget or min((plan.rto_of(s) for s in systems), default=None)
            found.append(Task(f"drill:{name}", drill.schedule, plan.timezone,
                              ("drill", "run", name, "--json"),
                              timeout=budget + DRILL_TEARDOWN if budget else None,
                              retry_codes=(DrillRefusedError.exit_code,)))  # fmt: skip
    return found


def _copies(plan: Plan) -> list[Task]:
    found = []
    pairs: dict[tuple[str, str], list[str]] = {}
    for name, job in plan.jobs.items():
        if job.replicate == "after-backup":
            for target in job.locations[1:]:
                pairs.setdefault((job.locations[0], target), []).append(name)
    for (source, target), jobs in pairs.items():
        argv = ("copy", "--from", source, "--to", target,
                *(arg for job in jobs for arg in ("--job", job)), "--json")  # fmt: skip
        found.append(Task(f"copy:{source}:{target}", COPY_EVERY, plan.timezone, argv,
                          locations=(source, target), waits_for=tuple(jobs)))  # fmt: skip
    return found


def _gap(schedule: Schedule, tz: str) -> timedelta:
    return schedule.worst_gap(tz) or timedelta.max

"""Due slots, catch-up after downtime, and retry delays: pure functions of the schedule,
the last run and the clock, so the daemon's decisions are testable without waiting."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from drplan.plan.schedule import Schedule, ScheduleKind

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=30)
# Counting missed slots walks the schedule; past this many the count says "at least".
MISSED_COUNT_LIMIT = 1000


@dataclass(frozen=True)
class Due:
    slot: datetime  # the scheduled time this run is for (UTC)
    missed: int  # slots after the last run and before this one that were not run


def due(
    schedule: Schedule, tz: str, now: datetime, last_slot: datetime | None, since: datetime
) -> Due | None:
    """The run due now, if any. ``last_slot`` is the slot of the job's last run (None if it
    never ran); ``since`` is when the daemon first knew the job: a job that never ran
    waits for its first slot after that, as cron would, instead of firing on start."""
    if schedule.kind not in (ScheduleKind.CRON, ScheduleKind.INTERVAL):
        return None  # continuous work is supervised, events and manual runs are asked for
    slot = schedule.previous_run(now, tz)
    if slot is None:
        return None
    floor = last_slot if last_slot is not None else since
    if slot <= floor:
        return None
    return Due(slot, _slots_between(schedule, tz, floor, slot) if last_slot else 0)


def _slots_between(schedule: Schedule, tz: str, after: datetime, before: datetime) -> int:
    """Slots strictly between ``after`` and ``before`` (capped at MISSED_COUNT_LIMIT)."""
    if schedule.kind is ScheduleKind.INTERVAL:
        assert schedule.interval is not None
        between = int((before - after) / schedule.interval) - 1
        return max(0, min(between, MISSED_COUNT_LIMIT))
    count, at = 0, after
    while count < MISSED_COUNT_LIMIT:
        (at,) = schedule.next_runs(at, tz)
        if at >= before:
            break
        count += 1
    return count


def next_slot(schedule: Schedule, tz: str, after: datetime) -> datetime | None:
    """The first slot strictly after ``after``: when to wake up next for this job."""
    runs = schedule.next_runs(after, tz)
    return runs[0] if runs else None


def retry_delay(
    attempt: int,
    base: timedelta = RETRY_BASE,
    cap: timedelta = RETRY_CAP,
    rng: random.Random | None = None,
) -> timedelta:
    """How long to wait before retry number ``attempt`` (1 for the first): exponential
    with full jitter, so daemons retrying against one failed location spread out."""
    ceiling: timedelta = min(cap, base * (2 ** max(0, attempt - 1)))
    fraction: float = (rng or random).random()
    return ceiling * fraction

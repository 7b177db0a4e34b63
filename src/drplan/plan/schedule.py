"""When things run: cron expressions, fixed intervals, continuous streams and events.

A schedule is written as one string:

* a five-field cron expression (``*/15 * * * *``) or a macro (``@daily``),
  evaluated in the job's time zone, daylight-saving changes included;
* an interval (``15m``, ``every 4h``), firing at whole multiples of the interval
  since the Unix epoch in UTC, so a restarted daemon keeps the same rhythm;
* ``continuous`` for work that never stops (WAL streaming);
* ``on EVENT`` (``on deployment``) for work triggered from outside, by
  ``drplan backup JOB`` in a pipeline;
* ``manual`` for work only a person starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from drplan.plan.durations import parse_duration

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EXAMPLES = "e.g. '*/15 * * * *', '@daily', '15m', 'continuous' or 'on deployment'"
# How far ahead the worst gap between cron runs is looked for; a year covers every
# calendar pattern, the run cap bounds the work for minute-level expressions.
GAP_HORIZON = timedelta(days=400)
GAP_MAX_RUNS = 5000
_EVENT = re.compile(r"on\s+([a-z][a-z0-9_-]*)", re.IGNORECASE)


class ScheduleKind(StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    CONTINUOUS = "continuous"
    EVENT = "event"
    MANUAL = "manual"


class NeverFiresError(ValueError):
    """A syntactically valid cron expression that matches no date (``0 0 30 2 *``)."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; ``text`` is what the plan said, kept for display."""

    text: str
    kind: ScheduleKind
    interval: timedelta | None = None
    cron: str | None = None
    event: str | None = None

    def __str__(self) -> str:
        return self.text

    def next_runs(self, after: datetime, tz: str = "UTC", count: int = 1) -> list[datetime]:
        """The next ``count`` run times strictly after ``after``, in UTC.

        Raises NeverFiresError for a cron expression that matches no date.
        Event, manual and continuous schedules have no run times.
        """
        if self.kind is ScheduleKind.INTERVAL:
            assert self.interval is not None
            step = self.interval.total_seconds()
            first = (int(after.timestamp() // step) + 1) * step
            return [datetime.fromtimestamp(first + i * step, UTC) for i in range(count)]
        if self.kind is ScheduleKind.CRON:
            assert self.cron is not None
            return list(_cron_runs(self.cron, tz, after.astimezone(UTC), count))
        return []

    def previous_run(self, at_or_before: datetime, tz: str = "UTC") -> datetime | None:
        """The newest run time at or before ``at_or_before``, in UTC; None for schedules
        without run times, or a cron expression that never matched before then."""
        if self.kind is ScheduleKind.INTERVAL:
            assert self.interval is not None
            step = self.interval.total_seconds()
            return datetime.fromtimestamp(int(at_or_before.timestamp() // step) * step, UTC)
        if self.kind is ScheduleKind.CRON:
            assert self.cron is not None
            # croniter looks strictly before its start; cron fires on whole minutes.
            start = at_or_before.astimezone(ZoneInfo(tz)) + timedelta(seconds=1)
            try:
                found = croniter(self.cron, start).get_prev(datetime).astimezone(UTC)
            except CroniterBadDateError:
                return None
            return found if found <= at_or_before else None
        return None

    def worst_gap(self, tz: str = "UTC", now: datetime | None = None) -> timedelta | None:
        """The longest time between two runs: what the schedule adds to data loss.

        None for schedules without a rhythm (events, manual); zero for continuous.
        """
        if self.kind is ScheduleKind.INTERVAL:
            return self.interval
        if self.kind is ScheduleKind.CONTINUOUS:
            return timedelta(0)
        if self.kind is ScheduleKind.CRON:
            assert self.cron is not None
            start = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
            return _cron_worst_gap(self.cron, tz, start.replace(minute=0, hour=0))
        return None


@lru_cache(maxsize=1024)
def _cron_runs(expr: str, tz: str, after: datetime, count: int) -> tuple[datetime, ...]:
    # Cached: a plan repeats the same few expressions, and every view of it asks for
    # the runs after the same "now"; building a croniter costs about a third of a millisecond.
    local = after.astimezone(ZoneInfo(tz))
    try:
        it = croniter(expr, local)
        return tuple(it.get_next(datetime).astimezone(UTC) for _ in range(count))
    except CroniterBadDateError as exc:
        raise NeverFiresError(f"'{expr}' matches no date and can never run") from exc


@lru_cache(maxsize=256)
def _cron_worst_gap(expr: str, tz: str, start: datetime) -> timedelta:
    fields = croniter(expr).expanded
    special = any(isinstance(v, str) and v != "*" for field in fields for v in field)
    if special or croniter(expr).nth_weekday_of_month:
        return _iterated_gap(expr, tz, start)  # 'L', '#': let croniter walk the runs
    minutes, hours, doms, months, dows = fields
    times = sorted(h * 60 + m for h in _all(hours, 24) for m in minutes)
    within_day = max((b - a for a, b in pairwise(times)), default=0)
    fire_days = _fire_days(doms, months, dows, start.date())
    if len(fire_days) < 2:
        return _iterated_gap(expr, tz, start)
    zone = ZoneInfo(tz)
    first, last = times[0], times[-1]

    def at(day: date, minute: int) -> datetime:
        local = datetime.combine(day, datetime.min.time(), zone) + timedelta(minutes=minute)
        return local.astimezone(UTC)

    across = max(at(b, first) - at(a, last) for a, b in pairwise(fire_days))
    return max(across, timedelta(minutes=within_day))


def _all(values: list[int | str], size: int) -> list[int]:
    return list(range(size)) if values == ["*"] else [int(v) for v in values]


def _fire_days(
    doms: list[int | str], months: list[int | str], dows: list[int | str], start: date
) -> list[date]:
    """Days on which the expression fires, over a horizon long enough to see its pattern.

    Day of month and day of week combine as in Vixie cron: when both are restricted,
    a day matching either fires.
    """
    any_dom, any_dow = doms == ["*"], dows == ["*"]
    dom_set = set(_all(doms, 32))
    dow_set = {d % 7 for d in _all(dows, 7)}
    month_set = set(_all(months, 13))
    days: list[date] = []
    # A year shows every calendar pattern but 29 February, which needs a leap cycle.
    horizon = GAP_HORIZON.days if dom_set - {29} or any_dom else 8 * 366
    for offset in range(horizon):
        day = start + timedelta(days=offset)
        if day.month not in month_set:
            continue
        dom_ok, dow_ok = day.day in dom_set, (day.isoweekday() % 7) in dow_set
        if (any_dom or (any_dow and dom_ok)) and (any_dow or (any_dom and dow_ok)):
            days.append(day)
        elif not any_dom and not any_dow and (dom_ok or dow_ok):
            days.append(day)
    return days


def _iterated_gap(expr: str, tz: str, start: datetime) -> timedelta:
    runs = _cron_runs(expr, tz, start, 1)
    worst = timedelta(0)
    it = croniter(expr, runs[0].astimezone(ZoneInfo(tz)))
    previous = runs[0]
    for _ in range(GAP_MAX_RUNS):
        current = it.get_next(datetime).astimezone(UTC)
        worst = max(worst, current - previous)
        previous = current
        if current - runs[0] > GAP_HORIZON:
            break
    return worst


def clear_caches() -> None:
    """Forget cached cron evaluations (benchmarks measure cold runs, as a CLI call is)."""
    _cron_runs.cache_clear()
    _cron_worst_gap.cache_clear()


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string; raise ValueError with a message fit for a user."""
    raw = " ".join(text.split())
    lowered = raw.lower()
    if lowered == "continuous":
        return Schedule(raw, ScheduleKind.CONTINUOUS, interval=timedelta(0))
    if lowered == "manual":
        return Schedule(raw, ScheduleKind.MANUAL)
    if event := _EVENT.fullmatch(raw):
        return Schedule(raw, ScheduleKind.EVENT, event=event.group(1).lower())
    if lowered.startswith("@"):
        if lowered not in MACROS:
            raise ValueError(f"'{text}' is not a cron macro (one of {', '.join(MACROS)})")
        return Schedule(raw, ScheduleKind.CRON, cron=lowered)
    fields = raw.split(" ")
    if len(fields) == 5 and not _looks_like_interval(raw):
        try:
            croniter(raw)
        except (CroniterBadCronError, ValueError, KeyError) as exc:
            raise ValueError(f"'{text}' is not a valid cron expression: {exc}") from None
        return Schedule(raw, ScheduleKind.CRON, cron=raw)
    interval_text = raw[6:] if lowered.startswith("every ") else raw
    try:
        interval = parse_duration(interval_text)
    except ValueError:
        raise ValueError(f"'{text}' is not a cron expression or interval ({EXAMPLES})") from None
    if interval <= timedelta(0):
        raise ValueError(f"'{text}' is an interval of zero and would never run ({EXAMPLES})")
    return Schedule(raw, ScheduleKind.INTERVAL, interval=interval)


def _looks_like_interval(raw: str) -> bool:
    try:
        parse_duration(raw)
    except ValueError:
        return False
    return True


def _coerce(value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a schedule ({EXAMPLES})")
    return parse_schedule(value)


ScheduleField = Annotated[
    Schedule,
    PlainValidator(_coerce),
    PlainSerializer(lambda s: s.text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "examples": ["*/15 * * * *", "15m", "on deployment"]}),
]

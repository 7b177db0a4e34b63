"""When the daemon runs a job: on its slots, once after downtime however many slots
passed, never on start for a job that never ran, in the job's time zone; and retries
that spread out and stop growing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from drplan.plan.schedule import parse_schedule
from drplan.scheduler.timing import RETRY_BASE, RETRY_CAP, Due, due, next_slot, retry_delay


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


EVERY_15 = parse_schedule("*/15 * * * *")


def test_a_job_is_due_once_its_slot_has_come() -> None:
    last = at("2026-11-26T10:00:00+00:00")
    assert due(EVERY_15, "UTC", at("2026-11-26T10:14:59+00:00"), last, last) is None
    assert due(EVERY_15, "UTC", at("2026-11-26T10:15:00+00:00"), last, last) == Due(
        at("2026-11-26T10:15:00+00:00"), 0
    )
    # run for that slot: not due again until the next one
    ran = at("2026-11-26T10:15:00+00:00")
    assert due(EVERY_15, "UTC", at("2026-11-26T10:29:00+00:00"), ran, last) is None


def test_after_downtime_a_job_runs_once_for_the_newest_slot() -> None:
    last = at("2026-11-26T10:00:00+00:00")
    now = at("2026-11-26T13:07:00+00:00")  # down for three hours
    assert due(EVERY_15, "UTC", now, last, last) == Due(at("2026-11-26T13:00:00+00:00"), 11)


def test_a_job_that_never_ran_waits_for_its_first_slot() -> None:
    started = at("2026-11-26T10:05:00+00:00")
    assert due(EVERY_15, "UTC", at("2026-11-26T10:10:00+00:00"), None, started) is None
    assert due(EVERY_15, "UTC", at("2026-11-26T10:15:30+00:00"), None, started) == Due(
        at("2026-11-26T10:15:00+00:00"), 0
    )


def test_cron_slots_follow_the_jobs_time_zone_across_daylight_saving() -> None:
    daily = parse_schedule("0 1 * * *")  # 01:00 in Berlin: 00:00 UTC in winter
    last = at("2026-03-28T00:00:00+00:00")
    now = at("2026-03-29T00:30:00+00:00")
    assert due(daily, "Europe/Berlin", now, last, last) == Due(at("2026-03-29T00:00:00+00:00"), 0)
    # Berlin moves to summer time at 02:00 that night: the next 01:00 is 23:00 UTC.
    assert next_slot(daily, "Europe/Berlin", now) == at("2026-03-29T23:00:00+00:00")


def test_intervals_keep_the_epoch_rhythm() -> None:
    every_10m = parse_schedule("10m")
    last = at("2026-11-26T10:00:00+00:00")
    assert due(every_10m, "UTC", at("2026-11-26T10:35:00+00:00"), last, last) == Due(
        at("2026-11-26T10:30:00+00:00"), 2
    )
    assert next_slot(every_10m, "UTC", at("2026-11-26T10:35:00+00:00")) == at(
        "2026-11-26T10:40:00+00:00"
    )


@pytest.mark.parametrize("text", ["continuous", "manual", "on deployment"])
def test_schedules_without_slots_are_never_due(text: str) -> None:
    now = at("2026-11-26T10:00:00+00:00")
    assert due(parse_schedule(text), "UTC", now, None, now - timedelta(days=1)) is None


def test_a_clock_set_back_does_not_run_a_job_again() -> None:
    last = at("2026-11-26T10:15:00+00:00")
    back = at("2026-11-26T09:50:00+00:00")  # NTP stepped the clock back
    assert due(EVERY_15, "UTC", back, last, last) is None


def test_retries_back_off_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    delays = [[retry_delay(n, rng=rng) for _ in range(200)] for n in (1, 2, 3, 12)]
    assert all(timedelta(0) <= d <= RETRY_BASE for d in delays[0])
    assert all(d <= 2 * RETRY_BASE for d in delays[1])
    assert max(delays[2]) > 2 * RETRY_BASE  # it does grow
    assert all(d <= RETRY_CAP for d in delays[3])
    assert len(set(delays[3])) > 100  # spread out, not in lockstep

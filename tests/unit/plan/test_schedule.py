from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drplan.plan.schedule import (
    NeverFiresError,
    ScheduleKind,
    _cron_worst_gap,
    _iterated_gap,
    parse_schedule,
)

NOW = datetime(2026, 11, 26, 10, 7, tzinfo=UTC)


def test_cron_next_runs_are_in_utc_and_in_order() -> None:
    runs = parse_schedule("*/15 * * * *").next_runs(NOW, count=3)
    assert runs == [
        datetime(2026, 11, 26, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 26, 10, 30, tzinfo=UTC),
        datetime(2026, 11, 26, 10, 45, tzinfo=UTC),
    ]


def test_cron_honours_the_time_zone_across_daylight_saving() -> None:
    schedule = parse_schedule("0 2 * * *")
    # Berlin is UTC+1 in winter and UTC+2 in summer: 02:00 local moves in UTC.
    winter = schedule.next_runs(datetime(2026, 1, 10, tzinfo=UTC), "Europe/Berlin")[0]
    summer = schedule.next_runs(datetime(2026, 7, 10, tzinfo=UTC), "Europe/Berlin")[0]
    assert (winter.hour, summer.hour) == (1, 0)


def test_interval_fires_at_multiples_of_itself_since_the_epoch() -> None:
    schedule = parse_schedule("every 4h")
    assert schedule.kind is ScheduleKind.INTERVAL
    assert schedule.next_runs(NOW, count=2) == [
        datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 16, 0, tzinfo=UTC),
    ]
    assert schedule.worst_gap() == timedelta(hours=4)


@pytest.mark.parametrize(
    ("text", "gap"),
    [
        ("0 1 * * *", timedelta(days=1)),
        ("0 2 * * 1-5", timedelta(days=3)),  # Friday to Monday
        ("0 3 1 * *", timedelta(days=31)),
        ("0 4 1 1,4,7,10 *", timedelta(days=92)),
        ("continuous", timedelta(0)),
    ],
)
def test_worst_gap_is_the_longest_wait_between_runs(text: str, gap: timedelta) -> None:
    assert parse_schedule(text).worst_gap("UTC", NOW) == gap


@pytest.mark.parametrize("text", ["on deployment", "manual"])
def test_event_and_manual_schedules_have_no_rhythm(text: str) -> None:
    schedule = parse_schedule(text)
    assert schedule.next_runs(NOW) == []
    assert schedule.worst_gap() is None


def test_event_name_is_kept() -> None:
    assert parse_schedule("on Deployment").event == "deployment"


def test_impossible_date_is_valid_syntax_but_never_fires() -> None:
    schedule = parse_schedule("0 0 30 2 *")
    with pytest.raises(NeverFiresError):
        schedule.next_runs(NOW)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every 15 mins", "is not a cron expression or interval"),
        ("61 * * * *", "is not a valid cron expression"),
        ("@fortnightly", "is not a cron macro"),
        ("0s", "interval of zero"),
        ("* * * *", "is not a cron expression or interval"),
    ],
)
def test_rejects_bad_schedules_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


@pytest.mark.parametrize(
    "expr",
    [
        "*/15 * * * *",
        "0 2 * * 1-5",
        "0 3 1 * *",
        "0 0 29 2 *",
        "0 4 1 1,4,7,10 *",
        "0 9-17 * * *",
        "30 1,13 * * *",
        "0 0 1 * 0",  # day of month OR day of week
        "0 0 13 * 5",
        "5 4 * * 7",
    ],
)
def test_worst_gap_from_fields_equals_walking_every_run(expr: str) -> None:
    start = datetime(2026, 11, 26, tzinfo=UTC)
    assert _cron_worst_gap(expr, "UTC", start) == _iterated_gap(expr, "UTC", start)

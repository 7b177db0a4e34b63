from __future__ import annotations

from datetime import timedelta

import pytest

from drplan.plan.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("3mo", timedelta(days=90)),
        ("1y", timedelta(days=365)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("PT15M", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P1Y", timedelta(days=365)),
        ("P2W", timedelta(weeks=2)),
    ],
)
def test_parses_plan_and_iso_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15 mins", "4 hours", "h", "P", "PT", "1x", "-5m"])
def test_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (900, "15m"),
        (14400, "4h"),
        (86400, "1d"),
        (93600, "1d2h"),
        (31536000, "1y"),
        (0, "0s"),
        (61, "1m1s"),
    ],
)
def test_formats_in_the_largest_exact_units(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    if seconds:
        assert parse_duration(text) == timedelta(seconds=seconds)

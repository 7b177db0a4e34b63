"""What `--to` asks PostgreSQL for: a time target includes a commit at that very time,
except the incident's `before-incident`, which stops strictly before it."""

from __future__ import annotations

from datetime import UTC, datetime

from drplan.recovery.pitr import Target, parse_target, recovery_settings

T = datetime(2026, 12, 7, 3, 10, 0, 123456, tzinfo=UTC)


def test_a_time_target_is_inclusive_and_before_incident_is_not() -> None:
    inclusive = recovery_settings(parse_target("2026-12-07 03:10:00.123456+00"), "fetch %f %p")
    assert "recovery_target_time = '2026-12-07 03:10:00.123456+00'" in inclusive
    assert "recovery_target_inclusive" not in inclusive
    before = Target("time", "before-incident", T, inclusive=False)
    settings = recovery_settings(before, "fetch %f %p")
    assert "recovery_target_time = '2026-12-07 03:10:00.123456+00'" in settings
    assert "recovery_target_inclusive = 'off'" in settings
    assert before.describe() == "just before 2026-12-07 03:10:00.123456+00"

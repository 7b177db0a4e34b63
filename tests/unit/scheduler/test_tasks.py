"""Which tasks must wait for which: upkeep runs alone on its location, except beside
the WAL stream, which takes no lock and never ends."""

from __future__ import annotations

from drplan.plan.schedule import parse_schedule
from drplan.scheduler.tasks import UPKEEP_SCHEDULE, Task, conflicts

BACKUP = Task("web", parse_schedule("1h"), "UTC", ("backup", "web"), job="web",
              locations=("primary", "cloud"))  # fmt: skip
STREAM = Task("db-wal", parse_schedule("continuous"), "UTC", ("wal", "stream"), job="db-wal",
              locations=("primary",))  # fmt: skip
FORGET = Task("forget:primary", UPKEEP_SCHEDULE, "UTC", ("forget",), locations=("primary",))
CHECK_CLOUD = Task("check:cloud", UPKEEP_SCHEDULE, "UTC", ("check",), locations=("cloud",))


def test_upkeep_and_backups_on_one_location_wait_for_each_other() -> None:
    assert conflicts(FORGET, BACKUP)
    assert conflicts(BACKUP, FORGET)
    assert conflicts(CHECK_CLOUD, BACKUP)
    assert not conflicts(FORGET, CHECK_CLOUD)  # different locations
    assert not conflicts(BACKUP, STREAM)


def test_the_wal_stream_holds_nothing_up_and_waits_for_nothing() -> None:
    assert STREAM.continuous
    assert not BACKUP.continuous
    assert not conflicts(FORGET, STREAM)
    assert not conflicts(STREAM, FORGET)

"""Which tasks must wait for which: forget and check run alone on their location, except
beside the WAL stream, which takes no lock and never ends; a catch-up copy never runs
beside a backup of a job it copies."""

from __future__ import annotations

import logging

import pytest

from drplan.plan.loader import load_plan_text
from drplan.plan.schedule import parse_schedule
from drplan.scheduler.tasks import COPY_EVERY, UPKEEP_SCHEDULE, Task, conflicts, tasks
from testbed.plans import clean_plan
from tests.conftest import dump

BACKUP = Task("web", parse_schedule("1h"), "UTC", ("backup", "web"), job="web",
              locations=("primary", "cloud"))  # fmt: skip
STREAM = Task("db-wal", parse_schedule("continuous"), "UTC", ("wal", "stream"), job="db-wal",
              locations=("primary",))  # fmt: skip
FORGET = Task("forget:primary", UPKEEP_SCHEDULE, "UTC", ("forget",), locations=("primary",),
              exclusive=True)  # fmt: skip
CHECK_CLOUD = Task("check:cloud", UPKEEP_SCHEDULE, "UTC", ("check",), locations=("cloud",),
                   exclusive=True)  # fmt: skip
COPY = Task("copy:primary:cloud", COPY_EVERY, "UTC", ("copy",), locations=("primary", "cloud"),
            waits_for=("web",))  # fmt: skip
OTHER = Task("db", parse_schedule("1h"), "UTC", ("backup", "db"), job="db",
             locations=("primary", "cloud"))  # fmt: skip


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


def test_a_catch_up_copy_waits_for_the_jobs_it_copies_and_for_upkeep_only() -> None:
    assert conflicts(COPY, BACKUP)
    assert conflicts(BACKUP, COPY)
    assert conflicts(COPY, FORGET)
    assert conflicts(CHECK_CLOUD, COPY)
    assert not conflicts(COPY, OTHER)  # another job writes there too: locks allow it
    assert not conflicts(COPY, STREAM)


def test_the_stream_ships_the_segment_being_written_as_often_as_the_plan_says() -> None:
    data = clean_plan()
    data["jobs"]["db-wal"]["stream"] = True
    plan = load_plan_text(dump(data), "plan.yaml").plan
    (stream,) = [t for t in tasks(plan) if t.name == "db-wal"]
    assert stream.argv == ("wal", "stream", "--system", "db", "--partial-every", "10")
    data["jobs"]["db-wal"]["partial_every"] = "2.5s"
    plan = load_plan_text(dump(data), "plan.yaml").plan
    (stream,) = [t for t in tasks(plan) if t.name == "db-wal"]
    assert stream.argv[-2:] == ("--partial-every", "2.5")


def test_an_append_only_host_schedules_no_forget_on_s3_and_says_why_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = load_plan_text(dump(clean_plan()), "plan.yaml").plan  # local and cloud (S3)

    def upkeep(env: dict[str, str]) -> list[str]:
        return sorted(t.name for t in tasks(plan, env) if t.name.startswith("forget:"))

    assert upkeep({}) == ["forget:cloud", "forget:local"]
    assert upkeep({"DRPLAN_APPEND_ONLY": "0"}) == ["forget:cloud", "forget:local"]
    assert not caplog.records
    with caplog.at_level(logging.INFO, logger="drplan.serve"):
        assert upkeep({"DRPLAN_APPEND_ONLY": "1"}) == ["forget:local"]  # local may delete
    (said,) = caplog.records
    assert said.getMessage().startswith(
        "no daily forget for cloud: $DRPLAN_APPEND_ONLY says this host may not delete there"
    )

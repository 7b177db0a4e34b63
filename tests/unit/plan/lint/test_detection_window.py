"""The detection window against each location's Object Lock: which location, both durations
and the fix in one line; an error where a job has no lock long enough, else a warning."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from drplan.errors import PlanInvalidError
from drplan.plan.lint import RULES, LintContext, run_lint
from drplan.plan.loader import load_plan_text
from testbed.plans import clean_plan
from tests.conftest import dump

NOW = dt.datetime.now(dt.UTC)


def detection(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    plan = load_plan_text(dump(data), "plan.yaml").plan
    return [
        (f.rule, f.where, f.message, f.hint)
        for f in run_lint(LintContext(plan, NOW), RULES)
        if f.rule in ("DR025", "DR026")
    ]


def plan(window: str | None, **locks: int) -> dict[str, Any]:
    """The clean plan with ``security.detection_window`` and S3 locations locked as given
    (``cloud`` is the clean plan's own), every job writing to all of them."""
    data = clean_plan()
    if window is not None:
        data["security"] = {"detection_window": window}
    for name, days in locks.items():
        data["locations"][name] = {
            "role": "cloud",
            "kind": "s3",
            "bucket": f"dr-{name}",
            "immutability": {"days": days},
        }
        for job in data["jobs"].values():
            if name not in job["locations"]:
                job["locations"].append(name)
    return data


def test_without_a_detection_window_nothing_is_said() -> None:
    assert detection(plan(None, cloud=1)) == []


def test_a_lock_as_long_as_the_window_is_enough() -> None:
    assert detection(plan("30d", cloud=30)) == []
    assert detection(plan("4w", cloud=28)) == []


def test_the_only_lock_too_short_is_an_error_naming_location_durations_and_fix() -> None:
    [(rule, where, message, hint)] = detection(plan("45d", cloud=30))
    assert (rule, where) == ("DR025", "locations.cloud.immutability.days")
    assert message == (
        "location 'cloud' locks objects for 30d, shorter than the 45d detection window (the"
        " only immutable copy of jobs 'db-full', 'db-wal', 'web'): a breach noticed that late"
        " finds its backups deletable"
    )
    assert hint == "raise `locations.cloud.immutability.days` to 45 or more"
    assert "\n" not in message + hint


def test_a_window_of_part_days_asks_for_whole_days_above_it() -> None:
    [(_, _, _, hint)] = detection(plan("30d12h", cloud=30))
    assert hint == "raise `locations.cloud.immutability.days` to 31 or more"


def test_a_short_lock_beside_a_long_enough_one_is_a_warning() -> None:
    found = detection(plan("60d", cloud=30, vault=90))
    assert [(rule, where) for rule, where, _, _ in found] == [
        ("DR026", "locations.cloud.immutability.days")
    ]
    assert "beside a longer lock for jobs 'db-full', 'db-wal', 'web'" in found[0][2]


def test_each_job_is_judged_by_its_own_locations_and_the_error_wins() -> None:
    data = plan("60d", cloud=30, vault=90)
    data["jobs"]["web"]["locations"] = ["local", "cloud"]  # web has no lock long enough
    found = detection(data)
    assert [(rule, where) for rule, where, _, _ in found] == [
        ("DR025", "locations.cloud.immutability.days")  # one finding per location
    ]
    assert "the only immutable copy of job 'web'" in found[0][2]


def test_a_short_lock_no_job_writes_to_is_a_warning() -> None:
    data = plan("60d", spare=7)
    for job in data["jobs"].values():
        job["locations"].remove("spare")
    [(rule, where, message, _)] = [f for f in detection(data) if "spare" in f[1]]
    assert (rule, where) == ("DR026", "locations.spare.immutability.days")
    assert "written by no job" in message


def test_the_window_is_a_duration() -> None:
    with pytest.raises(PlanInvalidError, match="detection_window"):
        load_plan_text(dump(plan("a month", cloud=30)), "plan.yaml")

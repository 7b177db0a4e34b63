"""The testing schedule kept or not: a drill whose slot passed (with its budget and a
grace) without a run is overdue, and that is a problem told like a failing backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from drplan.drills.schedule import drill_states
from drplan.notify.problems import JobFailures, problems
from drplan.observability.status import as_json, build_status
from drplan.plan.model import Plan
from drplan.plan.model.alerting import Severity
from drplan.scheduler.tasks import tasks
from testbed.plans import clean_plan

SLOT = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # "0 3 1 * *"


def monthly_plan() -> Plan:
    raw = clean_plan()
    raw["drills"] = {"monthly-database": {"kind": "database", "systems": ["db"],
                                          "schedule": "0 3 1 * *", "budget": "1h"}}  # fmt: skip
    return Plan.model_validate(raw)


def ran(at: datetime, passed: bool = True) -> dict[str, Any]:
    return {"started_at": at, "passed": int(passed), "rto_seconds": 61.0, "rpo_seconds": 2.0}


def test_a_drill_is_overdue_once_its_slot_budget_and_grace_have_passed_without_a_run() -> None:
    plan = monthly_plan()
    last = {"monthly-database": ran(SLOT - timedelta(days=31))}

    def overdue(now: datetime, history: dict[str, Any] = last) -> Any:
        return drill_states(plan, history, now)["monthly-database"]["overdue_since"]

    assert overdue(SLOT + timedelta(minutes=70)) is None  # it may still be running
    assert overdue(SLOT + timedelta(minutes=76)) == SLOT
    assert overdue(SLOT + timedelta(days=2), {"monthly-database": ran(SLOT)}) is None
    # A failed run is not an overdue one: it ran (the failure is told on its own).
    assert overdue(SLOT + timedelta(days=2), {"monthly-database": ran(SLOT, False)}) is None
    # Never run: overdue only for a slot after the daemon began to watch.
    fresh = drill_states(plan, {}, SLOT + timedelta(days=2), since=SLOT - timedelta(hours=1))
    assert fresh["monthly-database"]["overdue_since"] == SLOT
    later = drill_states(plan, {}, SLOT + timedelta(days=2), since=SLOT + timedelta(hours=1))
    assert later["monthly-database"]["overdue_since"] is None


def test_an_overdue_drill_is_a_problem_and_a_scheduled_drill_is_a_daemon_task() -> None:
    plan = monthly_plan()
    now = SLOT + timedelta(days=3)
    status = build_status(plan, [], now, {}, {"monthly-database": ran(SLOT - timedelta(days=31))})
    (found,) = [p for p in problems(plan, status, {}) if p.key == "drill:monthly-database"]
    assert found.severity is Severity.ERROR
    assert "drill monthly-database is overdue" in found.summary
    failed = {"drill:monthly-database": JobFailures(1, "db: RTO 5000s is over its objective")}
    (told,) = [p for p in problems(plan, None, failed) if p.key == "job:drill:monthly-database"]
    assert "RTO 5000s is over its objective" in told.summary  # at its first failure
    (task,) = [t for t in tasks(plan) if t.name == "drill:monthly-database"]
    assert task.argv == ("drill", "run", "monthly-database", "--json")
    assert task.timeout == timedelta(hours=1, minutes=10)
    assert task.retry_codes == (22,)


def test_a_drill_run_only_by_hand_is_never_overdue_nor_a_daemon_task() -> None:
    raw = clean_plan()
    raw["drills"]["db-by-hand"] = {"kind": "database", "systems": ["db"]}  # no schedule
    raw["drills"]["db-after-changes"] = {"kind": "database", "systems": ["db"],
                                         "schedule": "on major-change"}  # fmt: skip
    plan = Plan.model_validate(raw)
    now = SLOT + timedelta(days=400)
    watched_since = SLOT - timedelta(days=400)  # a year of slots passed, had there been any
    states = drill_states(plan, {}, now, since=watched_since)
    assert states["db-by-hand"] == {
        "kind": "database", "schedule": None, "last_started": None, "last_passed": None,
        "last_rto_seconds": None, "last_rpo_seconds": None, "next_run": None,
        "overdue_since": None,
    }  # fmt: skip
    assert states["db-after-changes"]["overdue_since"] is None
    status = build_status(plan, [], now, {}, {}, since=watched_since)
    assert as_json(status)["drills"]["db-by-hand"]["schedule"] is None
    drills_told = [p.key for p in problems(plan, status, {}) if "drill" in p.key]
    assert drills_told == ["drill:quarterly"]  # the scheduled one, never run: overdue
    assert sorted(t.name for t in tasks(plan) if t.name.startswith("drill:")) == ["drill:quarterly"]

"""Triggers coalesce into one pending run per job, debounced for `on change`; the ledger
keeps the oldest change not backed up; events reach the jobs that listen to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drplan.errors import UsageError
from drplan.plan.loader import load_plan_text
from drplan.plan.model import Plan
from drplan.scheduler.ledger import JobChanges, Ledger
from drplan.scheduler.triggers import BURST_FACTOR, Trigger, TriggerQueue, jobs_for, pushed_jobs
from tests.conftest import dump

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_flood_is_one_pending_run_and_what_comes_after_its_start_is_the_next() -> None:
    queue = TriggerQueue()
    for i in range(50):
        queue.add("web", Trigger("deployment", "api", at(i / 100)))
    pending = queue.ready("web", at(1), None)
    assert pending is not None
    assert pending.count == 50
    assert pending.record()["sources"] == ["api"]
    queue.add("web", Trigger("deployment", "cli", at(1.5)))  # read before the run took it
    queue.taken("web", pending)
    assert queue.pending() == {}
    queue.add("web", Trigger("deployment", "cli", at(2)))  # during the run: one more after it
    queue.add("web", Trigger("deployment", "cli", at(3)))
    (behind,) = queue.pending().values()
    assert behind.count == 2
    assert behind.first.at == at(2)


def test_a_change_waits_for_quiet_or_at_most_ten_debounces() -> None:
    queue = TriggerQueue()
    debounce = 10 * SECOND
    queue.add("web", Trigger("change", "watch", at(0)))
    assert queue.ready("web", at(9), debounce) is None
    assert queue.ready("web", at(10), debounce) is not None
    # A path that never rests: a change every 5 s keeps it busy, the cap runs it anyway.
    for i in range(1, 30):
        queue.add("web", Trigger("change", "watch", at(5 * i)))
    assert queue.ready("web", at(99), debounce) is None
    assert queue.wake("web", debounce) == at(0) + debounce * BURST_FACTOR
    assert queue.ready("web", at(100), debounce) is not None


def test_the_ledger_keeps_the_oldest_change_of_each_span_and_forgets_what_was_backed_up(
    tmp_path: Path,
) -> None:
    ledger = Ledger(str(tmp_path))
    for seconds in (10, 20, 30):
        ledger.changed("web", at(seconds))
    assert ledger.read()["web"].changes == [at(10)]  # one span: only its oldest counts
    ledger.started("web", at(40))
    ledger.changed("web", at(50))
    ledger.changed("web", at(60))
    assert ledger.read()["web"].changes == [at(10), at(50)]
    record = ledger.read()["web"]
    assert record.after(at(40)) == at(50)  # a snapshot taken at 40 misses what changed at 50
    assert record.after(at(5)) == at(10)
    ledger.succeeded("web", at(40))
    assert ledger.read()["web"].changes == [at(50)]
    ledger.lost("web", "/srv", at(70), "it does not exist")
    assert ledger.read()["web"].unbacked() == at(50)
    assert ledger.read()["web"].after(at(80)) == at(80)  # unseen since then: counts from it
    assert ledger.rearmed("web", "/srv") == at(70)
    assert ledger.read()["web"].lost == {}


def test_a_ledger_that_cannot_be_read_is_empty_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "triggers.json").write_text("{not json")
    assert Ledger(str(tmp_path)).read() == {}
    assert JobChanges().unbacked() is None


def plan_with(plan_data: dict[str, Any], jobs: dict[str, Any], **systems: Any) -> Plan:
    plan_data["systems"].update(systems)
    plan_data["jobs"].update(jobs)
    return load_plan_text(dump(plan_data), "plan.yaml").plan


def test_events_reach_the_jobs_that_listen_and_an_unknown_one_names_those_heard(
    plan_data: dict[str, Any],
) -> None:
    base = plan_data["jobs"]["web"]
    plan = plan_with(plan_data, {"web": {**base, "schedule": "on deployment"},
                                 "web2": {**base, "schedule": "on change"}})  # fmt: skip
    assert jobs_for(plan, "Deployment") == ["web"]
    assert jobs_for(plan, "deployment", "web") == ["web"]
    with pytest.raises(UsageError) as unknown:
        jobs_for(plan, "release")
    assert unknown.value.exit_code == 2
    assert unknown.value.hint == "events the plan's jobs listen to: change, deployment"
    with pytest.raises(UsageError, match="does not listen"):
        jobs_for(plan, "deployment", "web2")


def test_a_push_fires_the_jobs_of_the_images_systems_that_back_it_up(
    plan_data: dict[str, Any],
) -> None:
    base = plan_data["jobs"]["web"]
    images = {"tier": plan_data["systems"]["web"]["tier"], "data_classes":
              plan_data["systems"]["web"]["data_classes"], "kind": "images",
              "registry": "http://127.0.0.1:5000"}  # fmt: skip
    plan = plan_with(
        plan_data,
        {"api": {**base, "system": "api", "type": "images", "schedule": "on deployment"},
         "pinned": {**base, "system": "pinned", "type": "images", "schedule": "on push"},
         "nightly": {**base, "system": "api", "type": "images", "schedule": "@daily"}},
        api={**images, "images": ["shop/api:v*", "shop/web"]},
        pinned={**images, "images": ["shop/db@sha256:" + "a" * 64]},
    )  # fmt: skip
    assert pushed_jobs(plan, "shop/api", "v2", "sha256:" + "b" * 64) == ["api"]
    assert pushed_jobs(plan, "shop/api", "latest", "sha256:" + "b" * 64) == []
    assert pushed_jobs(plan, "shop/web", "anything", "") == ["api"]
    assert pushed_jobs(plan, "shop/db", "v1", "sha256:" + "a" * 64) == ["pinned"]
    assert pushed_jobs(plan, "shop/other", "v1", "") == []

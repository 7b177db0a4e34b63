"""Real incidents in the recovery KPIs beside the drills, and open incidents on /metrics:
a system recovered by an incident within its objectives counts as met, one waived as
missed; a rehearsal is not counted twice; an open incident shows its time left and its
overrun phases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from drplan import clock
from drplan.observability.metrics import DaemonCollector, registry
from drplan.observability.status import Status
from drplan.scheduler.service import open_incidents_status
from testbed.plans import clean_plan
from tests.conftest import Result, minutes_ago, shifted

Run = Callable[..., Result]


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    raw = clean_plan()
    raw["runbooks"]["rb"]["phases"][0]["steps"].append(
        {"title": "Rebuild web", "owner": "ic", "recovers": ["web"]}
    )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("DRPLAN_PLAN", str(path))
    return path


def declare(run: Run, since: str, *more: str) -> str:
    done = run("incident", "declare", "db-loss", "--since", since, "--json", *more)
    assert done.code == 0, done.err
    return str(json.loads(done.out)["id"])


def kpis(run: Run) -> dict[str, Any]:
    done = run("report", "--format", "json")
    assert done.code == 0, done.err
    table: dict[str, Any] = json.loads(done.out)["kpis"]["30d"]
    return table


def test_an_incident_that_is_over_counts_in_the_kpis_beside_the_drills(
    run: Run, plan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = minutes_ago(90)
    inc = declare(run, since)
    assert run("incident", "step", inc, "1.1", "done").code == 0
    monkeypatch.setenv("DRPLAN_NOW", shifted(since, 30))
    assert run("incident", "step", inc, "1.2", "done").code == 0  # web back after 30 min
    monkeypatch.delenv("DRPLAN_NOW")
    assert "source:incident" not in kpis(run)  # still open: it counts once it is over
    assert run("incident", "resolve", inc, "--waive", "db=rebuilt by hand").code == 0
    rehearsal = declare(run, minutes_ago(5), "--rehearsal")
    assert run("incident", "resolve", rehearsal, "--waive", "db=game day",
               "--waive", "web=game day").code == 0  # fmt: skip
    table = kpis(run)
    mine = table["source:incident"]
    assert mine["recoveries"] == 2  # web met its 8h, db was waived: met nothing
    assert (mine["within_rto"], mine["integrity"]) == (0.5, 0.5)
    assert mine["within_rpo"] == 0.0  # web's loss cannot be told (files): not proven
    drilled = table["source:drill"]
    assert drilled["recoveries"] == 2  # the rehearsal, recorded as a drill of two systems
    assert drilled["within_rto"] == 0.0
    assert table["all"]["recoveries"] == 4  # together
    assert table["tier:important"]["recoveries"] == 2  # web: the incident's, the rehearsal's


def test_open_incidents_are_on_metrics_with_their_time_left_and_overruns(
    run: Run, plan: Path
) -> None:
    late = declare(run, minutes_ago(5 * 60))  # past phase 1 and 2's windows and db's 4h
    fresh = declare(run, minutes_ago(10), "--rehearsal")
    now = clock.now()
    status = Status(now=now, exposures=[], best={}, windows={},
                    incidents=open_incidents_status(None, now))  # fmt: skip
    text = generate_latest(registry(DaemonCollector(dict, lambda: status, set))).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    opened = (("rehearsal", "false"), ("scenario", "db-loss"), ("tier", "1"))
    assert samples[("drplan_incidents_open", opened)] == 1
    assert samples[("drplan_incidents_open", (("rehearsal", "true"), *opened[1:]))] == 1
    left = samples[("drplan_incident_rto_remaining_seconds",
                    (("incident", late), ("scenario", "db-loss"), ("system", "db")))]  # fmt: skip
    assert left == pytest.approx(-timedelta(hours=1).total_seconds(), abs=120)  # 1h late
    assert samples[("drplan_incident_phases_overrun",
                    (("incident", late), ("scenario", "db-loss")))] == 2  # fmt: skip
    assert samples[("drplan_incident_phases_overrun",
                    (("incident", fresh), ("scenario", "db-loss")))] == 0  # fmt: skip

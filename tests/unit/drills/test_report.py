"""The drill report: KPIs over rolling windows against the success criteria, restore-time
trends per system, in Markdown, HTML and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drplan.drills.report import as_html, markdown, report
from drplan.plan.model import Plan
from testbed.plans import clean_plan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def run_row(tmp_path: Path, days_ago: int, rto: float, *, rpo_met: bool = True,
            intact: bool = True) -> dict[str, Any]:  # fmt: skip
    started = NOW - timedelta(days=days_ago)
    system = {"system": "db", "stage": "recovery", "error": None,
              "rto": {"seconds": rto, "met": rto <= 14400},
              "rpo": {"seconds": 3.0 if rpo_met else 4000.0, "met": rpo_met},
              "validations": [{"name": "pg_amcheck", "outcome": "passed" if intact else "failed"}]}  # fmt: skip
    damaged = {**system, "stage": "corruption"}  # a later stage: not a second recovery
    evidence = tmp_path / f"run-{days_ago}.json"
    evidence.write_text(json.dumps({"systems": [system, damaged]}))
    return {"drill": "monthly", "started_at": started, "passed": int(rpo_met and intact),
            "rto_seconds": rto, "rpo_seconds": 3.0, "summary": "", "evidence": str(evidence),
            "sha256": "ab" * 32, "rto_met": 1, "rpo_met": int(rpo_met), "integrity": int(intact)}  # fmt: skip


def test_kpis_per_window_tier_and_class_against_the_success_criteria(tmp_path: Path) -> None:
    plan = Plan.model_validate(clean_plan())  # rto 95%, rpo 99%, integrity 100%
    rows = [run_row(tmp_path, 200, 100.0, rpo_met=False), run_row(tmp_path, 60, 90.0),
            run_row(tmp_path, 20, 80.0), run_row(tmp_path, 5, 120.0, intact=False)]  # fmt: skip
    data = report(plan, rows, NOW)
    last30 = data["kpis"]["30d"]
    assert last30["all"]["recoveries"] == 2
    assert last30["all"]["integrity"] == 0.5
    assert last30["all"]["met"] == {"rto_achievement": True, "rpo_achievement": True,
                                    "data_integrity": False}  # fmt: skip
    assert last30["tier:critical"]["recoveries"] == 2
    assert last30["class:database"]["within_rpo"] == 1.0
    year = data["kpis"]["365d"]["all"]
    assert year["recoveries"] == 4
    assert year["within_rpo"] == 0.75
    assert year["met"]["rpo_achievement"] is False
    trend = data["trends"]["db"]
    assert trend["rto_seconds"] == [100.0, 90.0, 80.0, 120.0]  # oldest first
    assert trend["change_from_median"] == 0.333  # 120 against the median of 100, 90, 80

    md = markdown(data)
    assert "| 30d | all | 2 | 100% | 100% | 50% | no: data_integrity |" in md
    assert "| db | 4 | 95.0s | 120.0s | +33% | 100.0s, 90.0s, 80.0s, 120.0s |" in md
    page = as_html(data)
    assert page.startswith("<!doctype html>")
    assert "<td>no: data_integrity</td>" in page
    assert "<script" not in page


def test_a_stored_result_drplan_did_not_write_counts_by_the_rows_own_figures() -> None:
    """A catalog row whose result was altered (systems a mapping, a list of words) is
    counted as one recovery from the row's own columns, not an internal error."""
    from drplan.drills.report import recoveries  # noqa: PLC0415

    base = {"drill": "monthly", "started_at": NOW, "rto_seconds": 60.0, "rpo_seconds": 3.0,
            "rto_met": 1, "rpo_met": 0, "integrity": 1}  # fmt: skip
    altered: list[Any] = [{"systems": {"db": {}}}, {"systems": ["db"]}, {"systems": None}, ["x"]]
    for result in altered:
        (found,) = recoveries([{**base, "result": json.dumps(result)}])
        assert (found.system, found.rto_met, found.rpo_met) == ("?", True, False)

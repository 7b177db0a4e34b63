"""The incidents' unit tests' fixture: a plan with a one-phase runbook of the test's
steps, an incident declared on it, and its commands run in-process."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.plans import clean_plan
from tests.conftest import Result, minutes_ago

Run = Callable[..., Result]
SINCE = minutes_ago(20)
SECRET = "db-pass-SENTINEL-9"


@pytest.fixture
def incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run) -> Any:
    """A plan whose runbook is ``steps`` (one phase), and the incident commands on it."""
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TEST_DB_PASSWORD", SECRET)
    plan_path = tmp_path / "plan.yaml"

    def declare(*steps: dict[str, Any], plan: dict[str, Any] | None = None) -> str:
        raw = copy.deepcopy(plan) if plan is not None else clean_plan()
        raw["roles"]["dba"] = {"title": "DBA", "holder": "Database Administrator"}
        raw["runbooks"]["rb"]["phases"] = [{"name": "Recover", "window": "0-4h",
                                            "steps": list(steps)}]  # fmt: skip
        plan_path.write_text(yaml.safe_dump(raw))
        done = run("--plan", str(plan_path), "incident", "declare", "db-loss", "--since", SINCE,
                   "--commander", "ic", "--json")  # fmt: skip
        assert done.code == 0, done.err
        return str(json.loads(done.out)["id"])

    def cli(*args: str) -> Result:
        return run("incident", *args)

    def steps(inc: str) -> dict[str, dict[str, Any]]:
        status = json.loads(cli("status", inc, "--json").out)
        return {s["id"]: s for p in status["phases"] for s in p["steps"]}

    return type("Incident", (), {"declare": staticmethod(declare), "cli": staticmethod(cli),
                                 "steps": staticmethod(steps), "plan": plan_path})  # fmt: skip

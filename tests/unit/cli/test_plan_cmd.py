"""``drplan plan validate|lint|show`` as a user runs them: exit codes, output, JSON, secrets kept secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.plan.lint.rules import RULES
from tests.conftest import SMARTWATTS, SMARTWATTS_SECRETS, Result

Run = Callable[..., Result]


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SMARTWATTS_SECRETS.items():
        monkeypatch.setenv(name, value)


def _no_secret_in(*texts: str) -> None:
    for value in SMARTWATTS_SECRETS.values():
        for text in texts:
            assert value not in text


@pytest.mark.usefixtures("secrets_set")
def test_validate_smartwatts(run: Run) -> None:
    result = run("plan", "validate", str(SMARTWATTS))
    assert result.code == 0, result.err
    assert "valid plan 'SmartWatts Energy Monitoring Platform': 10 systems, 13 jobs" in result.out
    assert "6 secret references set" in result.out


def test_validate_names_every_unset_secret_variable(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SMARTWATTS_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "x")
    result = run("plan", "validate", str(SMARTWATTS))
    assert result.code == 5
    assert result.err.count("\n") == 1
    assert "PAGERDUTY_ROUTING_KEY (used by channels.pagerduty.routing_key)" in result.err
    assert "SLACK_WEBHOOK_URL" not in result.err
    assert "pass --no-env" in result.err
    assert run("plan", "validate", "--no-env", str(SMARTWATTS)).code == 0


@pytest.mark.usefixtures("secrets_set")
def test_validate_json(run: Run) -> None:
    result = run("plan", "validate", "--json", str(SMARTWATTS))
    data = json.loads(result.out)
    assert data["valid"] is True
    assert data["counts"]["systems"] == 10
    assert data["secrets"]["missing"] == []
    assert "SLACK_WEBHOOK_URL" in data["secrets"]["referenced"]


def test_invalid_plan_exit_code_and_located_message(
    run: Run, write_plan: Callable[..., Path]
) -> None:
    path = write_plan("version: 1\nname: x\nobjectives: {rto: {critical: 4h}}\n")
    result = run("plan", "validate", str(path))
    assert result.code == 4
    lines = result.err.splitlines()
    assert lines[0] == f"{path}:1:1: missing required key 'systems'"
    assert f"{path}:3:14: objectives.rto: missing required key 'important'" in lines
    assert lines[-1].startswith("drplan: ")
    assert "problems in the plan" in lines[-1]
    assert "Traceback" not in result.err


def test_invalid_plan_json(run: Run, write_plan: Callable[..., Path]) -> None:
    path = write_plan("version: 2\n")
    result = run("plan", "validate", "--json", str(path))
    assert result.code == 4
    problems = json.loads(result.out)["problems"]
    version = next(p for p in problems if p["path"] == "version")
    assert (version["line"], version["column"]) == (1, 10)
    assert version["message"] == "2 is not allowed (expected 1)"


def test_missing_plan_file(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    result = run("plan", "show")
    assert result.code == 3
    assert result.err == (
        "drplan: no plan given and no drplan.yaml in the current directory;"
        " pass --plan FILE, set $DRPLAN_PLAN, or create one with `drplan init`\n"
    )


def test_plan_from_option_and_environment(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    assert run("--plan", str(SMARTWATTS), "plan", "validate", "--no-env").code == 0
    monkeypatch.setenv("DRPLAN_PLAN", str(SMARTWATTS))
    assert run("plan", "validate", "--no-env").code == 0


def test_lint_smartwatts_reports_its_own_gaps(run: Run) -> None:
    result = run("plan", "lint", str(SMARTWATTS))
    assert result.code == 6
    assert f"{SMARTWATTS}:" in result.out
    assert "error DR001 interval-exceeds-rpo: job 'secrets' runs every 1d" in result.out
    assert "hint: schedule it at least every 4h" in result.out
    assert "lint failed with 2 finding(s) at error level" in result.err


def test_lint_clean_plan_passes_and_strict_fails_on_warnings(
    run: Run, write_plan: Callable[..., Path], plan_data: dict[str, Any]
) -> None:
    path = write_plan(plan_data)
    assert run("plan", "lint", str(path)).code == 0
    plan_data["review"]["next_review"] = plan_data["review"]["last_updated"]
    path = write_plan(plan_data)
    assert run("plan", "lint", str(path)).code == 0
    strict = run("plan", "lint", "--strict", str(path))
    assert strict.code == 6
    assert "DR009" in strict.out
    assert run("plan", "lint", "--strict", "--ignore", "DR009", str(path)).code == 0


def test_lint_json_and_rule_list(run: Run) -> None:
    data = json.loads(run("plan", "lint", "--json", str(SMARTWATTS)).out)
    assert data["passed"] is False
    assert data["counts"]["error"] == 2
    first = data["findings"][0]
    assert set(first) == {"rule", "name", "severity", "path", "message", "hint", "line", "column"}
    rules = json.loads(run("plan", "lint", "--list-rules", "--json").out)
    assert [r["rule"] for r in rules] == [r.id for r in RULES]
    assert len(rules) >= 26


def test_lint_unknown_rule_is_a_usage_error(run: Run) -> None:
    result = run("plan", "lint", "--ignore", "DR999", str(SMARTWATTS))
    assert result.code == 2
    assert "DR999: no such rule" in result.err


@pytest.mark.usefixtures("secrets_set")
def test_show_renders_every_section_without_secrets(run: Run) -> None:
    result = run("plan", "show", str(SMARTWATTS))
    assert result.code == 0
    for title in (
        "Objectives",
        "Systems",
        "Jobs",
        "Locations",
        "Disaster scenarios",
        "Drills",
        "Success criteria",
    ):
        assert title in result.out
    assert "db-incremental" in result.out
    assert "*/15 * * * *" in result.out
    _no_secret_in(result.out, result.err)


@pytest.mark.usefixtures("secrets_set")
def test_show_json_is_in_seconds_and_keeps_secret_references(run: Run) -> None:
    result = run("plan", "show", "--json", str(SMARTWATTS))
    data = json.loads(result.out)
    assert data["objectives"]["rpo"] == {
        "database": 900,
        "application": 3600,
        "configuration": 14400,
        "logs_metrics": 86400,
    }
    assert data["jobs"]["db-full"]["retention"]["keep_within"] == 31536000
    assert data["channels"]["slack-incident"]["webhook_url"] == "${SLACK_WEBHOOK_URL}"
    assert data["runbooks"]["recovery"]["phases"][3]["window"] == {"start": 28800, "end": 43200}
    _no_secret_in(result.out)


def test_show_yaml_round_trips(run: Run, write_plan: Callable[..., Path]) -> None:
    exported = run("plan", "show", "--yaml", str(SMARTWATTS)).out
    path = write_plan(exported)
    assert run("plan", "validate", "--no-env", str(path)).code == 0
    assert run("plan", "show", "--yaml", "--json", str(SMARTWATTS)).code == 2


def test_a_plan_whose_drills_all_run_by_hand_validates_shows_and_lints_the_gap(
    run: Run,
    write_plan: Callable[..., Path],
    plan_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_DB_PASSWORD", "not-used")
    plan_data["drills"] = {"db-by-hand": {"kind": "database", "systems": ["db"]}}
    path = write_plan(plan_data)
    validated = run("plan", "validate", str(path))
    assert validated.code == 0, validated.out + validated.err

    table = run("plan", "show", str(path))
    assert table.code == 0, table.err
    (row,) = [line for line in table.out.splitlines() if "db-by-hand" in line]
    assert "by hand" in row
    data = json.loads(run("plan", "show", "--json", str(path)).out)
    assert data["drills"]["db-by-hand"]["schedule"] is None
    assert data["derived"]["drills"]["db-by-hand"]["next_runs"] == []
    exported = run("plan", "show", "--yaml", str(path)).out
    assert "schedule" not in yaml.safe_load(exported)["drills"]["db-by-hand"]
    assert run("plan", "validate", "--no-env", str(write_plan(exported))).code == 0

    linted = run("plan", "lint", str(path))
    assert linted.code == 0  # warnings: the plan is usable, its testing schedule is not kept
    assert "warning DR021 system-drilled-only-by-hand: critical system 'db'" in linted.out
    assert "hint: give drill 'db-by-hand' a schedule" in linted.out


def test_console_script_has_no_traceback_for_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "plan.yaml"
    bad.write_text("version: 1\nname: [unclosed\n")
    drplan = Path(sys.executable).parent / "drplan"
    env = {k: v for k, v in os.environ.items() if k != "DRPLAN_PLAN"}
    proc = subprocess.run(
        [str(drplan), "plan", "validate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 4
    assert "YAML syntax error" in proc.stderr
    assert "Traceback" not in proc.stderr
    version = subprocess.run([str(drplan), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("drplan, version ")


def test_usage_error_exit_code(run: Run) -> None:
    result = run("plan", "show", "--no-such-flag")
    assert result.code == 2
    assert "No such option" in result.err

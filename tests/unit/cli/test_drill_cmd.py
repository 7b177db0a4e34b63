"""``drplan drill run|list`` as a user runs them: a drill run only by hand (no schedule) on a
files system, recovered from a local repository; how the data lost is explained."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drplan.cli.drill_cmd import explain_rpo
from drplan.drills.results import SystemResult
from testbed.plans import clean_plan
from tests.conftest import Result

Run = Callable[..., Result]
DISASTER = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def by_hand(
    tmp_path: Path, write_plan: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, run: Run
) -> str:
    """A plan whose only drill has no schedule, with a backup of its files system taken."""
    monkeypatch.setenv("DRPLAN_PASSWORD", "correct horse battery staple")
    monkeypatch.setenv("TEST_DB_PASSWORD", "not-used")
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))  # catalog, evidence
    monkeypatch.delenv("DRPLAN_CATALOG", raising=False)
    source = tmp_path / "site"
    source.mkdir()
    (source / "index.html").write_text("<p>hello</p>\n")
    plan = clean_plan()
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["locations"] = {
        "local": {"role": "primary", "kind": "local", "path": str(tmp_path / "repo")}
    }
    plan["data_classes"]["database"]["locations"] = ["local"]
    for job in plan["jobs"].values():
        job["locations"] = ["local"]
    plan["drills"] = {"web-by-hand": {"kind": "service", "systems": ["web"],
                                      "scratch_dir": str(tmp_path / "scratch")}}  # fmt: skip
    path = str(write_plan(plan))
    made = run("--plan", path, "repo", "init", "local", "--kdf-memory", "1024", "--kdf-time", "1")
    assert made.code == 0, made.err
    saved = run("--plan", path, "backup", "web")
    assert saved.code == 0, saved.err
    return path


def test_a_drill_without_a_schedule_runs_by_hand_and_is_listed_as_such(
    run: Run, by_hand: str
) -> None:
    never = run("--plan", by_hand, "drill", "list")
    assert never.code == 0, never.err
    (row,) = [line for line in never.out.splitlines() if "web-by-hand" in line]
    assert "by hand" in row
    assert "never" in row

    done = run("--plan", by_hand, "drill", "run", "web-by-hand")
    assert done.code == 0, done.out + done.err
    assert "drill web-by-hand (service): passed" in done.out
    (rpo,) = [line for line in done.out.splitlines() if line.startswith("RPO ")]
    # A files system: the data lost is what was written after the snapshot restored.
    assert re.search(r"\(the recovered copy holds the writes up to \S+Z, [0-9.]+s before the"
                     r" disaster\)$", rpo), rpo  # fmt: skip
    assert "sentinel" not in done.out

    (listed,) = json.loads(run("--plan", by_hand, "drill", "list", "--json").out)
    assert listed["schedule"] is None
    assert listed["last_run"]["passed"] is True


def _system(found: bool, rpo: float) -> SystemResult:
    return SystemResult("db", DISASTER, rpo_seconds=rpo, sentinel_found=found)


def test_the_data_lost_is_told_in_the_users_terms() -> None:
    assert explain_rpo(_system(True, 0.0)) == (
        "nothing lost: the marker row the drill wrote at the disaster moment was recovered"
    )
    assert explain_rpo(_system(False, 3.3)) == (
        "the last 3.3s of writes before the disaster were not recovered: the marker row the"
        " drill wrote at the disaster moment is missing from the recovered copy"
    )

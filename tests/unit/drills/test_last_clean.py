"""What judges a point clean (the security checks, with a database drill's own checks),
which commits a search bisects past the second, and how it tells what it found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from drplan.cli.actions import action_problem
from drplan.drills.commits import Commit
from drplan.drills.last_clean import judge_of, separating, summary
from drplan.drills.last_good import Probe, Search
from drplan.errors import UsageError
from drplan.plan.loader import load_plan_text
from drplan.plan.model import Plan
from drplan.recovery.pitr import Target

CHECK = {
    "name": "no rogue admin",
    "query": "select count(*) = 0 from app_users where role = 'admin'",
}
T = datetime(2026, 12, 7, 22, 49, 32, tzinfo=UTC)


def plan_of(data: dict[str, Any]) -> Plan:
    return load_plan_text(yaml.safe_dump(data), "plan.yaml").plan


def test_a_system_without_security_checks_is_refused_with_what_to_add(
    plan_data: dict[str, Any],
) -> None:
    with pytest.raises(UsageError) as refused:
        judge_of(plan_of(plan_data), "db")
    assert refused.value.message == (
        "--to last-clean needs security checks of db: SQL that holds at a point clean of the breach"
    )
    assert refused.value.hint is not None
    assert refused.value.hint.startswith("add security_checks to systems.db")


def test_without_a_drill_the_security_checks_alone_judge(plan_data: dict[str, Any]) -> None:
    plan_data["systems"]["db"]["security_checks"] = [CHECK]
    judge = judge_of(plan_of(plan_data), "db")
    assert judge.drill_name is None
    assert judge.scratch_name == "last-clean"
    assert [c.name for c in judge.drill.validations.sql] == ["security: no rogue admin"]
    assert not judge.drill.validations.amcheck
    assert not judge.drill.validations.checksums
    assert not judge.drill.sentinel
    assert judge.candidates == ["local", "cloud"]  # the system's job locations
    assert judge_of(plan_of(plan_data), "db", ["cloud"]).candidates == ["cloud"]


def test_with_a_database_drill_its_own_checks_judge_too(plan_data: dict[str, Any]) -> None:
    plan_data["systems"]["db"]["security_checks"] = [CHECK]
    plan_data["drills"]["db-check"] = {
        "kind": "database", "systems": ["db"], "from_location": "cloud",
        "validations": {"amcheck": True, "sql": [{"name": "rows", "query": "select true"}],
                        "tables": [{"table": "public.meters"}]},
    }  # fmt: skip
    judge = judge_of(plan_of(plan_data), "db")
    assert judge.drill_name == "db-check"
    assert [c.name for c in judge.drill.validations.sql] == ["security: no rogue admin", "rows"]
    assert judge.drill.validations.amcheck
    assert judge.candidates == ["cloud"]
    assert judge.checks == "the security checks (with drill db-check's)"


def test_last_clean_is_a_runbook_action() -> None:
    assert action_problem("restore postgres smartwatts-db --to last-clean") is None


def probe(target: Target, last: datetime | None = None) -> Probe:
    return Probe(target.describe(), True, "", 0.0, target, "0/3000000", last)


def commit(xid: int, seconds: float) -> Commit:
    return Commit(xid, f"0/{xid:X}", T + timedelta(seconds=seconds))


def test_the_commits_bisected_are_those_between_the_passing_and_the_failing_point() -> None:
    listed = [commit(1, 0.0), commit(2, 0.2), commit(3, 0.2), commit(4, 0.7), commit(5, 1.0),
              commit(6, 1.5)]  # fmt: skip
    passing = probe(Target("time", "last-clean", T))
    failing = probe(Target("time", "last-clean", T + timedelta(seconds=1)))
    # after the passing point, up to the failing one (inclusive); one per time
    assert [c.xid for c in separating(listed, passing, failing, T)] == [2, 4, 5]
    before = probe(Target("time", "last-clean", T + timedelta(seconds=1), inclusive=False))
    assert [c.xid for c in separating(listed, passing, before, T)] == [2, 4]
    # the newest point (all WAL) bounds nothing; a base backup passes up to its last commit
    base = probe(Target("snapshot", "c6df4b6a"), T + timedelta(seconds=0.5))
    assert [c.xid for c in separating(listed, base, probe(Target("latest")), T)] == [4, 5, 6]


def test_what_was_found_is_told_in_a_line() -> None:
    search = Search(None, (T, T + timedelta(seconds=2)))
    search.probes.append(probe(Target("latest")))
    search.found = Target("latest")
    assert summary("db", search).startswith(
        "last-clean: the newest point of db (latest) passes every check, so it is restored:"
        " clean as far as the checks can tell"
    )
    search.probes[0].good = False
    search.found = Target("time", "last-clean", T + timedelta(seconds=0.5))
    search.first_failing = commit(948, 0.7)
    assert summary("db", search) == (
        "last-clean: the last clean point of db is 2026-12-07 22:49:32.500000+00; the checks"
        " fail from transaction 948 on (committed 2026-12-07 22:49:32.700000+00, LSN 0/3B4)"
    )

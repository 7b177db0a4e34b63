"""Where evidence may go (the plan's location, --unlocked, allow_unlocked), what a system's
evidence is, the lint rule that refuses an evidence location anyone could empty, and
retention that never lets evidence go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drplan.errors import UsageError
from drplan.plan.lint import RULES, LintContext, run_lint
from drplan.plan.loader import load_plan_text
from drplan.plan.model import Plan
from drplan.repo.retention import Policy, decide
from drplan.repo.snapshot import Snapshot
from drplan.security.evidence import source_of, target
from testbed.plans import clean_plan
from tests.conftest import dump


def plan_with(**changes: Any) -> Plan:
    data = clean_plan()
    data["locations"]["governed"] = {**data["locations"]["cloud"],
                                     "immutability": {"mode": "governance", "days": 7}}  # fmt: skip
    data.update(changes)
    return load_plan_text(dump(data), "plan.yaml").plan


def dr024(**changes: Any) -> list[tuple[str, str]]:
    found = run_lint(LintContext(plan_with(**changes), datetime.now(UTC)), RULES)
    return [(f.where, f.message) for f in found if f.rule == "DR024"]


def test_only_compliance_mode_is_immutable_enough_without_saying_so() -> None:
    plan = plan_with(security={"evidence": {"location": "cloud"}})
    assert target(plan, None, unlocked=False).immutable
    for name, said in (("local", "has no Object Lock"), ("governed", "locks in governance")):
        with pytest.raises(UsageError) as refused:
            target(plan, name, unlocked=False)
        assert f"location {name} {said}" in refused.value.message
        assert "--unlocked" in (refused.value.hint or "")
        chosen = target(plan, name, unlocked=True)
        assert not chosen.immutable
    assert target(plan, "governed", unlocked=True).mode == "governance"


def test_the_plan_may_accept_its_own_unlocked_location_and_only_that_one() -> None:
    plan = plan_with(security={"evidence": {"location": "local", "allow_unlocked": True}})
    assert target(plan, None, unlocked=False).location == "local"
    with pytest.raises(UsageError):
        target(plan, "governed", unlocked=False)


def test_no_location_named_or_an_unknown_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="names no evidence location"):
        target(plan_with(), None, unlocked=True)
    with pytest.raises(UsageError, match="'nowhere' is not a location"):
        target(plan_with(), "nowhere", unlocked=True)


def test_lint_refuses_an_evidence_location_anyone_can_empty() -> None:
    assert dr024(security={"evidence": {"location": "cloud"}}) == []
    assert dr024(security={"evidence": {"location": "local", "allow_unlocked": True}}) == []
    [(where, message)] = dr024(security={"evidence": {"location": "governed"}})
    assert where == "security.evidence.location"
    assert "no Object Lock in compliance mode" in message


def test_lint_holds_a_runbook_step_to_the_same_rule() -> None:
    def steps(action: str, **changes: Any) -> list[tuple[str, str]]:
        data = clean_plan()
        data["runbooks"]["rb"]["phases"][0]["steps"].append({"title": "Keep", "action": action})
        return dr024(runbooks=data["runbooks"], **changes)

    [(where, message)] = steps("evidence capture web")
    assert where == "runbooks.rb.phases[0].steps[1].action"
    assert "names no evidence location" in message
    assert steps("evidence capture web --location cloud") == []
    assert steps("evidence capture web --location=local --unlocked") == []
    assert [w for w, _ in steps("evidence capture web --location local")] == [where]
    assert steps("evidence capture web", security={"evidence": {"location": "cloud"}}) == []


def test_a_systems_evidence_is_its_paths_or_its_data_directory(tmp_path: Path) -> None:
    data_dir, wal, space = tmp_path / "data", tmp_path / "wal", tmp_path / "space"
    for path in (data_dir / "pg_tblspc", wal, space):
        path.mkdir(parents=True)
    (data_dir / "pg_wal").symlink_to(wal)
    (data_dir / "pg_tblspc" / "16384").symlink_to("../../space")  # relative, as allowed
    (data_dir / "postmaster.pid").write_text("4242\n/srv/data\n")
    data = clean_plan()
    data["systems"]["db"]["data_dir"] = str(data_dir)
    plan = load_plan_text(dump(data), "plan.yaml").plan
    found = source_of(plan, "db")
    assert found.paths == [str(data_dir), str(wal), str(space)]
    assert found.details["linked"] == {"pg_wal": str(wal), "pg_tblspc/16384": str(space)}
    assert found.details["postmaster_pid"] == "4242"
    assert source_of(plan, "web").paths == ["/etc/web"]
    with pytest.raises(UsageError, match="'nope' is not a system"):
        source_of(plan, "nope")
    del data["systems"]["db"]["data_dir"]
    with pytest.raises(UsageError, match="has no data_dir"):
        source_of(load_plan_text(dump(data), "plan.yaml").plan, "db")


def test_retention_never_lets_evidence_go() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def snap(i: int, **kw: Any) -> Snapshot:
        return Snapshot(time=start + timedelta(hours=i), tree=b"", paths=["/x"], host="h",
                        user="u", id=f"{i:064x}", **kw)  # fmt: skip

    snapshots = [snap(0, tags=["evidence"]), snap(1, source={"kind": "evidence"}), snap(2), snap(3)]
    decisions = {int(d.snapshot.id, 16): d for d in decide(snapshots, {None: Policy(last=1)}, ())}
    assert [i for i, d in sorted(decisions.items()) if d.keep] == [0, 1, 3]
    assert decisions[0].reasons == ["evidence: never forgotten"]

"""The SmartWatts plan: every figure of the written plan, a faithful round trip, and only its own gaps linted."""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta

from drplan.plan.export import to_yaml
from drplan.plan.lint import RULES, LintContext, run_lint
from drplan.plan.loader import load_plan, load_plan_text
from drplan.plan.model import S3Location
from drplan.plan.summary import summarize
from tests.conftest import SMARTWATTS

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_objectives_are_the_written_plans() -> None:
    plan = load_plan(SMARTWATTS).plan
    rto, rpo = plan.objectives.rto, plan.objectives.rpo
    assert (rto.critical, rto.important, rto.non_critical, rto.full_platform) == (
        timedelta(hours=4),
        timedelta(hours=8),
        timedelta(hours=24),
        timedelta(hours=12),
    )
    assert rpo == {
        "database": timedelta(minutes=15),
        "application": timedelta(hours=1),
        "configuration": timedelta(hours=4),
        "logs_metrics": timedelta(hours=24),
    }


def test_backup_strategy_figures() -> None:
    plan = load_plan(SMARTWATTS).plan
    gap = {name: job.schedule.worst_gap("UTC", NOW) for name, job in plan.jobs.items()}
    # Database: incremental every 15 minutes, full daily; 30 days / 1 year retention.
    assert gap["db-incremental"] == timedelta(minutes=15)
    assert gap["db-full"] == timedelta(days=1)
    assert plan.jobs["db-incremental"].retention.keep_within == timedelta(days=30)  # type: ignore[union-attr]
    assert plan.jobs["db-full"].retention.keep_within == timedelta(days=365)  # type: ignore[union-attr]
    # Primary + secondary + cloud, and a Glacier archive.
    assert plan.jobs["db-full"].locations == ["primary", "secondary", "cloud"]
    assert plan.locations["archive"].storage_class == "GLACIER"  # type: ignore[union-attr]
    assert plan.repository.encryption == "aes-256-gcm"
    assert all(
        loc.server_side_encryption == "SSE-S3"
        for loc in plan.locations.values()
        if isinstance(loc, S3Location)
    )
    # Application and infrastructure frequencies.
    assert gap["app-config"] == gap["k8s-state"] == gap["logs"] == timedelta(hours=4)
    assert gap["secrets"] == gap["certificates"] == gap["monitoring"] == timedelta(days=1)
    # "Code: every deployment", "Docker Images: every deployment", manifests at every change:
    # real sources, not helper programs.
    assert (
        str(plan.jobs["app-images"].schedule)
        == str(plan.jobs["app-code"].schedule)
        == "on deployment"
    )
    assert str(plan.jobs["k8s-manifests"].schedule) == "on change"
    kinds = {n: plan.systems[j.system].kind for n, j in plan.jobs.items()}
    assert (kinds["app-images"], kinds["app-code"], kinds["k8s-manifests"], kinds["k8s-state"]) == (
        "images",
        "git",
        "git",
        "etcd",
    )


def test_recovery_procedure_has_the_four_timed_phases() -> None:
    plan = load_plan(SMARTWATTS).plan
    phases = plan.runbooks["recovery"].phases
    assert [(p.name, str(p.window)) for p in phases] == [
        ("Immediate Response", "0-1h"),
        ("Recovery Planning", "1h-2h"),
        ("System Recovery", "2h-8h"),
        ("Validation and Testing", "8h-12h"),
    ]
    # The written plan's three steps of each phase, in its order; drplan adds the platform's
    # images and code between the database and the applications that run from them.
    written = [[s.title for s in p.steps if s.title != "Container Images and Code"] for p in phases]
    assert all(len(titles) == 3 for titles in written)
    assert [s.title for s in phases[2].steps] == [
        "Infrastructure Recovery",
        "Database Recovery",
        "Container Images and Code",
        "Application Recovery",
    ]


def test_scenarios_tiers_testing_people_and_review() -> None:
    plan = load_plan(SMARTWATTS).plan
    tiers = {tier: sum(1 for s in plan.scenarios.values() if s.tier == tier) for tier in (1, 2, 3)}
    assert tiers == {1: 4, 2: 4, 3: 4}
    gaps = {n: d.schedule.worst_gap("UTC", NOW) for n, d in plan.drills.items() if d.schedule}
    assert gaps["database-recovery"] == timedelta(days=31)  # monthly
    assert gaps["full-dr-drill"] == timedelta(days=92)  # quarterly
    assert gaps["platform-recovery"] in (timedelta(days=365), timedelta(days=366))  # annually
    assert str(plan.drills["service-recovery"].schedule) == "on major-change"  # ad hoc
    assert plan.roles["incident-commander"].holder == "CTO"
    assert plan.roles["incident-commander"].phone == "+1-555-0001"
    assert plan.communication is not None
    assert plan.communication.public == "status-page"
    criteria = plan.success_criteria
    assert (criteria.rto_achievement, criteria.rpo_achievement, criteria.data_integrity) == (
        0.95,
        0.99,
        1.0,
    )
    assert plan.review is not None
    assert plan.review.every == timedelta(days=90)
    assert plan.sites["secondary-site"].capacity == 0.5


def test_round_trip_through_plan_yaml_is_lossless() -> None:
    plan = load_plan(SMARTWATTS).plan
    again = load_plan_text(to_yaml(plan), "exported.yaml").plan
    assert again == plan
    assert to_yaml(again) == to_yaml(plan)


def test_json_summary_gives_the_figures_in_seconds() -> None:
    data = summarize(load_plan(SMARTWATTS).plan, NOW).as_json()
    assert data["objectives"]["rto"] == {
        "critical": 14400,
        "important": 28800,
        "non_critical": 86400,
        "full_platform": 43200,
    }
    assert data["derived"]["jobs"]["db-incremental"]["worst_gap"] == 900
    assert data["derived"]["jobs"]["db-incremental"]["next_runs"][0] == "2026-11-26T12:15:00Z"
    # The platform's order: etcd, images, git, the database, then files.
    assert data["derived"]["recovery_order"] == [
        ["kubernetes"],
        ["api"],
        ["api-source", "k8s-manifests"],
        ["smartwatts-db"],
        ["app-config", "certificates", "secrets", "monitoring", "logs"],
    ]


def test_lint_finds_exactly_what_the_plan_comments_explain() -> None:
    """Every finding sits just below a `LINT DRnnn` comment naming its rule, and every comment is used."""
    loaded = load_plan(SMARTWATTS)
    lines = SMARTWATTS.read_text().splitlines()
    comments = [
        (number, match.group(1))
        for number, line in enumerate(lines, start=1)
        if (match := re.search(r"# LINT (DR\d{3})", line))
    ]
    found = run_lint(LintContext(loaded.plan, NOW), RULES)
    assert found, "the written plan has gaps lint must report"
    used = set()
    for finding in found:
        line = loaded.source.locate(finding.path).line
        near = [(n, rule) for n, rule in comments if rule == finding.rule and 0 < line - n <= 15]
        assert near, (
            f"{finding.rule} at line {line} has no LINT comment above it: {finding.message}"
        )
        used.update(near)
    assert used == set(comments)

"""Every lint rule: a plan that triggers it, and the same plan just inside the line, which does not."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from drplan.plan.lint import RULES, LintContext, failing, run_lint
from drplan.plan.loader import load_plan_text
from testbed.plans import clean_plan
from tests.conftest import dump

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
Mutation = Callable[[dict[str, Any]], None]


def findings(data: dict[str, Any]) -> list[tuple[str, str]]:
    plan = load_plan_text(dump(data), "plan.yaml").plan
    return [(f.rule, f.where) for f in run_lint(LintContext(plan, NOW), RULES)]


def fired(mutate: Mutation) -> list[tuple[str, str]]:
    data = clean_plan()
    mutate(data)
    return findings(data)


def test_the_clean_plan_has_no_findings() -> None:
    assert findings(clean_plan()) == []


def test_rule_ids_are_unique_and_stable() -> None:
    ids = [rule.id for rule in RULES]
    assert ids == sorted(set(ids))
    assert ids[0] == "DR001"


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value

    return mutate


def _with_vault(data: dict[str, Any]) -> None:
    """A second S3 location, locked 90 days, that every job also writes to."""
    data["locations"]["vault"] = {
        "role": "cloud",
        "kind": "s3",
        "bucket": "dr-vault",
        "immutability": {"days": 90},
    }
    for job in data["jobs"].values():
        job["locations"].append("vault")


def _all(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for m in mutations:
            m(data)

    return mutate


def _drop_wal(data: dict[str, Any]) -> None:
    del data["jobs"]["db-wal"]


def _phases(restore: dict[str, Any]) -> list[dict[str, Any]]:
    """The clean plan's runbook with ``restore`` in its recovery step."""
    phases: list[dict[str, Any]] = clean_plan()["runbooks"]["rb"]["phases"]
    phases[1]["steps"][0].update(restore)
    return phases


_DB_DRILL = {"kind": "database", "systems": ["db"]}
_WEB_ON_SCHEDULE = _set(
    "drills.quarterly", {"kind": "service", "systems": ["web"], "schedule": "@monthly"}
)

# rule id, mutation that triggers it, where the finding points, mutation just inside the line
CASES: list[tuple[str, Mutation, str, Mutation]] = [
    (
        "DR001",  # web data (configuration, RPO 4h) backed up every 5h
        _set("jobs.web.schedule", "5h"),
        "jobs.web.schedule",
        _set("jobs.web.schedule", "3h"),
    ),
    (
        "DR002",  # exactly the RPO
        _set("jobs.web.schedule", "4h"),
        "jobs.web.schedule",
        _set("jobs.web.schedule", "0 */3 * * *"),
    ),
    (
        "DR003",
        _set("jobs.web", None),
        "systems.web.data_classes[0]",
        _set("jobs.web.schedule", "1h"),
    ),
    (
        "DR004",
        _all(_set("jobs.web.locations", ["local"])),
        "jobs.web.locations",
        _set("jobs.web.locations", ["cloud"]),
    ),
    (
        "DR005",  # critical db in one (off-site, required) location only
        _all(
            _set("data_classes.database.locations", ["cloud"]),
            _set("jobs.db-full.locations", ["cloud"]),
            _set("jobs.db-wal.locations", ["cloud"]),
        ),
        "jobs.db-full.locations",
        _all(
            _set("data_classes.database.locations", ["cloud"]),
            _set("jobs.db-full.locations", ["cloud"]),
        ),
    ),
    (
        "DR006",  # critical db depends on important web
        _all(_set("systems.web.depends_on", None), _set("systems.db.depends_on", ["web"])),
        "systems.db.depends_on[0]",
        _all(
            _set("systems.web.depends_on", None),
            _set("systems.db.depends_on", ["web"]),
            _set("systems.web.tier", "critical"),
        ),
    ),
    (
        "DR007",  # 29 days kept, 30 required
        _set("jobs.db-full.retention", {"keep_within": "29d"}),
        "jobs.db-full.retention",
        _set("jobs.db-full.retention", {"keep_daily": 30}),
    ),
    (
        "DR008",  # only the critical system is drilled; the important tier is not
        _set("drills.quarterly", {"kind": "database", "systems": ["db"], "schedule": "@monthly"}),
        "drills",
        _set(
            "drills.quarterly",
            {"kind": "service", "systems": ["db", "web"], "schedule": "@monthly"},
        ),
    ),
    (
        "DR009",
        _set("review.next_review", str(TODAY - dt.timedelta(days=1))),
        "review.next_review",
        _set("review.next_review", str(TODAY)),
    ),
    (
        "DR010",
        _set("systems.db.rto", "5h"),
        "systems.db.rto",
        _set("systems.db.rto", "4h"),
    ),
    (
        "DR011",
        _set("jobs.db-full.schedule", "0 1 30 2 *"),
        "jobs.db-full.schedule",
        _set("jobs.db-full.schedule", "0 1 29 2 *"),
    ),
    (
        "DR012",  # db (RTO 4h) recovered in a phase ending at 5h
        _set(
            "runbooks.rb.phases",
            [
                {
                    "name": "Recover",
                    "window": "1-5h",
                    "steps": [{"title": "Restore", "recovers": ["db"]}],
                }
            ],
        ),
        "runbooks.rb.phases[0].window",
        _set(
            "runbooks.rb.phases",
            [
                {
                    "name": "Recover",
                    "window": "1-4h",
                    "steps": [{"title": "Restore", "recovers": ["db"]}],
                }
            ],
        ),
    ),
    (
        "DR013",
        _set("locations.cloud.immutability", None),
        "locations",
        _set("locations.cloud.immutability", {"mode": "governance", "days": 7}),
    ),
    (
        "DR014",
        _set("locations.spare", {"role": "secondary", "kind": "local", "path": "/mnt/spare"}),
        "locations.spare",
        _all(
            _set("locations.spare", {"role": "secondary", "kind": "local", "path": "/mnt/spare"}),
            _set("jobs.web.locations", ["local", "cloud", "spare"]),
        ),
    ),
    (
        "DR015",
        _set("roles.ic", {"title": "Incident Commander", "holder": "CTO"}),
        "roles.ic",
        _set(
            "roles.ic", {"title": "Incident Commander", "holder": "CTO", "email": "cto@example.com"}
        ),
    ),
    (
        "DR016",
        _set("scenarios.db-loss.runbook", None),
        "scenarios.db-loss",
        _set("scenarios.db-loss.runbook", "rb"),
    ),
    (
        "DR017",
        _set("drills.quarterly.budget", "13h"),
        "drills.quarterly.budget",
        _set("drills.quarterly.budget", "12h"),
    ),
    (
        "DR018",
        _set("objectives.rto.non_critical", "24h"),
        "objectives.rto.non_critical",
        _set("objectives.rto.non_critical", "12h"),
    ),
    (
        "DR019",  # database must reach local and cloud; the jobs stop reaching local
        _all(
            _set("jobs.db-full.locations", ["cloud"]),
            _set("jobs.db-wal.locations", ["cloud"]),
            _set("systems.db.tier", "important"),
            _set("drills.quarterly.kind", "full_platform"),
        ),
        "jobs.db-full.locations",
        _set("jobs.db-wal.locations", ["cloud"]),
    ),
    (
        "DR020",
        _set("drills.quarterly.from_location", "spare"),
        "drills.quarterly.from_location",
        _set("drills.quarterly.from_location", "cloud"),
    ),
    (
        "DR021",  # the critical db is drilled only by hand; the scheduled drill covers web
        _all(_WEB_ON_SCHEDULE, _set("drills.db-by-hand", _DB_DRILL)),
        "drills.db-by-hand",
        _all(_WEB_ON_SCHEDULE, _set("drills.db-by-hand", {**_DB_DRILL, "schedule": "@monthly"})),
    ),
    (
        "DR022",  # archive_timeout equal to the 15m RPO: the push comes on top
        _set("jobs.db-wal.archive_timeout", "15m"),
        "jobs.db-wal.archive_timeout",
        _set("jobs.db-wal.archive_timeout", "14m"),
    ),
    (
        "DR023",  # the database restored into production at nobody's word
        _set("runbooks.rb.phases", _phases({"action": "restore postgres db --to latest"})),
        "runbooks.rb.phases[1].steps[0]",
        _set(
            "runbooks.rb.phases",
            _phases({"action": "restore postgres db --to latest", "approve": "ic"}),
        ),
    ),
    (
        "DR024",  # evidence where whoever holds the credentials can delete it
        _set("security", {"evidence": {"location": "local"}}),
        "security.evidence.location",
        _set("security", {"evidence": {"location": "cloud"}}),
    ),
    (
        "DR025",  # the only Object Lock ends before a breach is noticed
        _set("security", {"detection_window": "60d"}),
        "locations.cloud.immutability.days",
        _set("security", {"detection_window": "30d"}),
    ),
    (
        "DR026",  # a shorter lock beside a long enough one
        _all(_set("security", {"detection_window": "60d"}), _with_vault),
        "locations.cloud.immutability.days",
        _all(_set("security", {"detection_window": "30d"}), _with_vault),
    ),
]


def test_production_writes_without_approval_are_told_unless_the_plan_says_so() -> None:
    def dr023(*steps: dict[str, Any]) -> list[str]:
        data = clean_plan()
        data["runbooks"]["rb"]["phases"][1]["steps"] = list(steps)
        plan = load_plan_text(dump(data), "plan.yaml").plan
        return [f.message for f in run_lint(LintContext(plan, NOW), RULES) if f.rule == "DR023"]

    assert dr023({"title": "Deploy", "recovers": ["web"], "run": "deploy.sh"}) == [
        "step 'Deploy' recovers web without an approval gate"
    ]
    assert dr023({"title": "Restore", "action": "restore postgres db --production"}) == [
        "step 'Restore' restores into production without an approval gate"
    ]
    assert dr023({"title": "Deploy", "recovers": ["web"], "run": "deploy.sh",
                  "unattended": True}) == []  # fmt: skip
    assert dr023({"title": "Copy", "action": "restore postgres db --target-dir /srv/copy"}) == []
    assert dr023({"title": "By hand", "recovers": ["db"]}) == []  # a person does it


def _with_spare(mutation: Mutation) -> Mutation:
    """DR020 needs a location that exists but holds nothing."""

    def mutate(data: dict[str, Any]) -> None:
        data["locations"]["spare"] = {"role": "secondary", "kind": "local", "path": "/mnt/spare"}
        mutation(data)

    return mutate


@pytest.mark.parametrize(("rule", "trigger", "where", "inside"), CASES, ids=[c[0] for c in CASES])
def test_rule_fires_and_stays_quiet(
    rule: str, trigger: Mutation, where: str, inside: Mutation
) -> None:
    if rule == "DR020":
        trigger, inside = _with_spare(trigger), _with_spare(inside)
    hits = fired(trigger)
    assert (rule, where) in hits, hits
    quiet = [h for h in fired(inside) if h[0] == rule]
    assert quiet == [], quiet


def test_every_rule_has_a_case() -> None:
    assert sorted(c[0] for c in CASES) == [r.id for r in RULES]


def test_gap_of_a_weekday_cron_counts_the_weekend() -> None:
    # Every weekday at 02:00 leaves Friday to Monday uncovered: 3 days against a 1 day RPO.
    def mutate(data: dict[str, Any]) -> None:
        data["objectives"]["rpo"]["configuration"] = "1d"
        data["jobs"]["web"]["schedule"] = "0 2 * * 1-5"

    assert ("DR001", "jobs.web.schedule") in fired(mutate)


def test_only_the_tightest_job_of_a_data_class_counts() -> None:
    # A daily full next to continuous WAL archiving meets a 15 minute RPO.
    data = clean_plan()
    assert all(rule != "DR001" for rule, _ in findings(data))
    _drop_wal(data)
    assert ("DR001", "jobs.db-full.schedule") in findings(data)


def test_review_later_than_the_cadence_allows() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["review"]["next_review"] = str(TODAY + dt.timedelta(days=400))

    assert ("DR009", "review.next_review") in fired(mutate)


def test_manual_only_backups_and_site_aware_offsite() -> None:
    def manual(data: dict[str, Any]) -> None:
        data["jobs"]["web"]["schedule"] = "manual"

    assert ("DR003", "systems.web.data_classes[0]") in fired(manual)

    def same_site(data: dict[str, Any]) -> None:
        data["sites"] = {"dc1": {}}
        data["systems"]["web"]["site"] = "dc1"
        data["locations"]["local"]["site"] = "dc1"
        data["locations"]["cloud"]["site"] = (
            "dc1"  # a "cloud" role in the same site is not off-site
        )

    assert ("DR004", "jobs.web.locations") in fired(same_site)


def test_dependency_on_a_slower_system_of_the_same_tier() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["systems"]["db"]["rto"] = "1h"
        data["systems"]["web"]["tier"] = "critical"
        del data["systems"]["web"]["depends_on"]
        data["systems"]["db"]["depends_on"] = ["web"]

    assert ("DR006", "systems.db.depends_on[0]") in fired(mutate)


def test_keep_last_of_an_event_job_is_not_judged_by_time() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["jobs"]["db-full"]["schedule"] = "on deployment"
        data["jobs"]["db-full"]["retention"] = {"keep_last": 5}

    assert all(rule != "DR007" for rule, _ in fired(mutate))


def test_failing_depends_on_strictness() -> None:
    data = clean_plan()
    data["review"]["next_review"] = str(TODAY - dt.timedelta(days=5))  # past due: a warning
    plan = load_plan_text(dump(data), "plan.yaml").plan
    found = run_lint(LintContext(plan, NOW), RULES)
    assert failing(found, strict=False) == []
    assert [f.rule for f in failing(found, strict=True)] == ["DR009"]


def test_a_system_drilled_only_by_hand_is_named_with_what_to_schedule() -> None:
    data = clean_plan()
    data["drills"] = {
        "web-quarterly": {"kind": "service", "systems": ["web"], "schedule": "0 3 1 1,4,7,10 *"},
        "db-by-hand": {"kind": "database", "systems": ["db"]},  # no schedule: run by hand
        "db-after-changes": {"kind": "database", "systems": ["db"], "schedule": "on major-change"},
    }
    plan = load_plan_text(dump(data), "plan.yaml").plan
    (found,) = [f for f in run_lint(LintContext(plan, NOW), RULES) if f.rule == "DR021"]
    assert found.severity.value == "warning"
    assert found.message == (
        "critical system 'db' is recovered only by drills run by hand (db-by-hand,"
        " db-after-changes): no drill on the plan's testing schedule measures its 4h RTO"
    )
    assert found.hint == (
        "give drill 'db-by-hand' a schedule (e.g. `schedule: \"0 3 1 * *\"`, monthly), or add"
        " a scheduled database drill with `systems: [db]`"
    )
    # A scheduled full-platform drill recovers every system: hand-run drills beside it are fine.
    data["drills"]["platform"] = {"kind": "full_platform", "schedule": "0 4 1 1,4,7,10 *"}
    plan = load_plan_text(dump(data), "plan.yaml").plan
    assert [f for f in run_lint(LintContext(plan, NOW), RULES) if f.rule == "DR021"] == []


def _wal_only(data: dict[str, Any], rpo: str, **wal: Any) -> list[Any]:
    """The database's DR022 findings with an RPO of ``rpo`` and ``wal`` as the WAL job."""
    data["objectives"]["rpo"]["database"] = rpo
    data["jobs"]["db-wal"] = {"system": "db", "type": "wal", "schedule": "continuous",
                              "locations": ["local", "cloud"], **wal}  # fmt: skip
    plan = load_plan_text(dump(data), "plan.yaml").plan
    return [f for f in run_lint(LintContext(plan, NOW), RULES) if f.rule == "DR022"]


def test_archive_command_alone_cannot_promise_a_one_minute_rpo() -> None:
    # The setup: WAL through archive_command, no streaming, no archive_timeout;
    # a kill -9 lost 61 s to 2 min 46 s of commits against a 1 minute RPO.
    (found,) = _wal_only(clean_plan(), "1m")
    assert found.severity.value == "error"
    assert found.where == "jobs.db-wal"
    assert found.message == (
        "system 'db': its WAL reaches the archive only through archive_command, a 16 MB"
        " segment at a time when one fills up, and the plan declares no archive_timeout: on"
        " a quiet server nothing bounds the commits a crash loses; base backups alone bound"
        " it to 1d, against the 1m RPO of 'database' data"
    )
    assert found.hint == (
        "set `stream: true` on job 'db-wal' (`drplan serve` then ships the segment being"
        " written every 10s), or set archive_timeout = '20s' on the server (a reload is"
        " enough) and `archive_timeout: 20s` on job 'db-wal' (each switch closes a whole 16 MB"
        " segment, a quiet server's compressing to about 1 KB: up to 4,320 a day)"
    )
    # Either way out meets it: streaming (every 10s), or a declared archive_timeout.
    assert _wal_only(clean_plan(), "1m", stream=True) == []
    assert _wal_only(clean_plan(), "1m", archive_timeout="20s") == []
    # So do base backups more frequent than the RPO, whatever WAL adds.
    data = clean_plan()
    data["jobs"]["db-full"]["schedule"] = "30s"
    assert _wal_only(data, "1m") == []


def test_a_stream_shipping_less_often_than_the_rpo_is_named_at_partial_every() -> None:
    (found,) = _wal_only(clean_plan(), "30s", stream=True, partial_every="30s")
    assert found.where == "jobs.db-wal.partial_every"
    assert "the stream ships the segment being written every 30s (partial_every)" in found.message
    assert found.hint.startswith("set `partial_every: 10s` on job 'db-wal', well under the 30s RPO")
    assert _wal_only(clean_plan(), "30s", stream=True, partial_every="29s") == []
    # Below the default's reach, the stream alone is not the way out the hint names.
    (found,) = _wal_only(clean_plan(), "6s")
    assert found.hint.startswith(
        "set `stream: true` and `partial_every: 2s` on job 'db-wal' (`drplan serve` then ships"
        " the segment being written every 2s), or set archive_timeout = '2s' on the server"
    )

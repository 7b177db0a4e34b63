"""Malformed plans: each error names the exact place (file:line:column and key path) and says what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drplan.errors import PlanInvalidError, PlanNotFoundError
from drplan.plan.loader import load_plan, load_plan_text, resolve_plan_path
from testbed.plans import clean_plan
from tests.conftest import dump

BASE = dump(clean_plan())


def position_of(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column where ``needle`` starts (its n-th occurrence)."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def errors_of(text: str) -> list[str]:
    with pytest.raises(PlanInvalidError) as info:
        load_plan_text(text, "plan.yaml")
    return [str(p) for p in info.value.problems]


def replace_once(old: str, new: str) -> str:
    assert BASE.count(old) >= 1, old
    return BASE.replace(old, new, 1)


# (id, broken text, where the error points (needle in the broken text), key path, wording)
CASES = [
    (
        "schedule-not-cron-or-interval",
        replace_once("schedule: 1h", "schedule: every 15 mins"),
        "every 15 mins",
        "jobs.web.schedule",
        r"'every 15 mins' is not a cron expression or interval \(e\.g\. '\*/15 \* \* \* \*'.*'15m'",
    ),
    (
        "unknown-key-with-suggestion",
        replace_once("    schedule: 1h\n", "    schedule: 1h\n    retension: {keep_last: 3}\n"),
        "retension",
        "jobs.web.retension",
        r"unknown key 'retension' \(did you mean 'retention'\? allowed: archive_timeout, compression_level, .*\)",
    ),
    (
        "unknown-top-level-section",
        BASE + "backups: {}\n",
        "backups: {}",
        "backups",
        r"unknown key 'backups' \(allowed: alerting, channels, communication, ",
    ),
    (
        "missing-required-key",
        replace_once("    tier: important\n", ""),
        "web:",
        "systems.web",
        r"missing required key 'tier'",
    ),
    (
        "bad-enum-value",
        replace_once("tier: important", "tier: medium"),
        "medium",
        "systems.web.tier",
        r"'medium' is not allowed \(expected 'critical', 'important' or 'non_critical'\)",
    ),
    (
        "unknown-location-kind",
        replace_once("kind: local", "kind: ftp"),
        "ftp",
        "locations.local.kind",
        r"kind 'ftp' is not one of 'local', 's3'",
    ),
    (
        "missing-kind",
        replace_once("    kind: local\n", ""),
        "local:\n",
        "locations.local",
        r"missing required key 'kind'",
    ),
    (
        "duration-without-unit",
        replace_once("critical: 4h", "critical: 4"),
        "4\n",
        "objectives.rto.critical",
        r"4 has no unit \(e\.g\. '15m'",
    ),
    (
        "duration-in-words",
        replace_once("database: 15m", "database: 15 minutes"),
        "15 minutes",
        "objectives.rpo.database",
        r"'15 minutes' is not a duration",
    ),
    (
        "unknown-system-reference",
        replace_once("system: web", "system: wbe"),
        "wbe",
        "jobs.web.system",
        r"unknown system 'wbe' \(defined: db, web\); did you mean 'web'\?",
    ),
    (
        "unknown-location-in-list",
        replace_once(
            "keep_within: 30d\n    locations:\n    - local\n    - cloud\n",
            "keep_within: 30d\n    locations:\n    - local\n    - clod\n",
        ),
        "clod",
        "jobs.db-full.locations[1]",
        r"unknown location 'clod' \(defined: cloud, local\); did you mean 'cloud'\?",
    ),
    (
        "literal-secret",
        replace_once("${TEST_DB_PASSWORD}", "hunter2-literal"),
        "hunter2-literal",
        "systems.db.password",
        r"secrets are not written into the plan; use a reference like",
    ),
    (
        "bad-time-zone",
        BASE.replace("name: Test Platform\n", "name: Test Platform\ntimezone: Mars/Olympus\n"),
        "Mars/Olympus",
        "timezone",
        r"unknown time zone 'Mars/Olympus'",
    ),
    (
        "bad-name",
        replace_once("  db-full:\n", "  DB Full:\n"),
        "DB Full",
        "jobs.DB Full",
        r"name 'DB Full' must be lowercase letters, digits",
    ),
    (
        "dependency-cycle",
        replace_once("    kind: postgres\n", "    kind: postgres\n    depends_on: [web]\n"),
        "depends_on: [web]",
        "systems.db.depends_on",
        r"dependency cycle: db -> web -> db",
    ),
    (
        "job-type-wrong-for-system",
        replace_once("type: files", "type: full"),
        "full\n    schedule: 1h",
        "jobs.web.type",
        r"a files system cannot run a 'full' job \(allowed: files\)",
    ),
    (
        "stream-on-a-files-job",
        replace_once("type: files", "type: files\n    stream: true"),
        "true\n    schedule",
        "jobs.web.stream",
        r"only a wal job with schedule `continuous` can stream",
    ),
    (
        "on-change-where-nothing-watches",
        replace_once("schedule: 0 1 * * *", "schedule: on change"),
        "on change",
        "jobs.db-full.schedule",
        r"nothing watches a postgres system for changes",
    ),
    (
        "debounce-on-a-job-that-is-not-on-change",
        replace_once("type: files", "type: files\n    debounce: 10s"),
        "10s\n    schedule: 1h",
        "jobs.web.debounce",
        r"only an `on change` job waits for its paths to be quiet",
    ),
    (
        "partial-every-without-the-stream",
        replace_once("archive_timeout: 1m", "partial_every: 5s"),
        "5s",
        "jobs.db-wal.partial_every",
        r"only a job with `stream: true` ships a partial segment",
    ),
    (
        "partial-every-faster-than-the-stream-can",
        replace_once("archive_timeout: 1m", "stream: true\n    partial_every: 0.1s"),
        "0.1s",
        "jobs.db-wal.partial_every",
        r"at least 0\.5s",
    ),
    (
        "archive-timeout-on-a-files-job",
        replace_once("type: files", "type: files\n    archive_timeout: 1m"),
        "1m\n    schedule: 1h",
        "jobs.web.archive_timeout",
        r"only a wal job relies on the server's archive_timeout",
    ),
    (
        "archive-timeout-in-fractions-of-a-second",
        replace_once("archive_timeout: 1m", "archive_timeout: 1.5s"),
        "1.5s",
        "jobs.db-wal.archive_timeout",
        r"whole seconds: the server's archive_timeout has no less",
    ),
    (
        "percentage-out-of-range",
        BASE + "success_criteria: {rto_achievement: 150%}\n",
        "150%",
        "success_criteria.rto_achievement",
        r"'150%' is outside 0%\.\.100%",
    ),
    (
        "window-backwards",
        replace_once("window: 1-4h", "window: 4-1h"),
        "4-1h",
        "runbooks.rb.phases[1].window",
        r"window '4-1h' ends before it starts",
    ),
    (
        "expected-mapping-got-list",
        replace_once(
            "  rto:\n    critical: 4h\n    important: 8h\n    non_critical: 12h\n    full_platform: 12h\n",
            "  rto: [4h]\n",
        ),
        "rto: [4h]",
        "objectives.rto",
        r"expected a mapping of keys, got a list",
    ),
    (
        "yaml-syntax-unclosed-quote",
        replace_once("name: Test Platform", 'name: "Test Platform'),
        '"Test Platform',
        "",
        r"YAML syntax error: found unexpected end of stream \(while scanning a quoted scalar\)",
    ),
    (
        "duplicate-job",
        BASE.replace("  web:\n    system: web", "  db-full:\n    system: web"),
        "db-full:\n    system: web",
        "jobs.db-full",
        r"duplicate key 'db-full' \(first at line \d+\)",
    ),
    (
        "empty-retention",
        replace_once("retention:\n      keep_within: 30d", "retention: {}"),
        "retention: {}",
        "jobs.db-full.retention",
        r"retention keeps nothing; set at least one keep_\* rule",
    ),
    (
        "drill-without-systems",
        replace_once("kind: full_platform", "kind: database"),
        "quarterly:",
        "drills.quarterly",
        r"a database drill names the systems it recovers in `systems`",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "needle", "path", "wording"), CASES, ids=[c[0] for c in CASES]
)
def test_error_location_and_wording(
    case: str, text: str, needle: str, path: str, wording: str
) -> None:
    problems = errors_of(text)
    assert len(problems) == 1, problems
    problem = problems[0]
    line, column = position_of(text, needle)
    prefix = f"plan.yaml:{line}:{column}: {path}: " if path else f"plan.yaml:{line}:{column}: "
    assert problem.startswith(prefix), f"{problem!r} does not start with {prefix!r}"
    assert re.search(wording, problem), problem


def test_literal_secret_value_is_never_echoed() -> None:
    problems = errors_of(replace_once("${TEST_DB_PASSWORD}", "hunter2-literal"))
    assert not any("hunter2" in p for p in problems)


@pytest.mark.parametrize(
    "connection",
    [
        "host=db1 user=drplan password=hunter2x",
        "postgresql://drplan:hunter2x@db1/postgres",
        "postgresql://db1/postgres?password=hunter2x",
        "postgresql://db1/postgres?sslmode=require&password=hunter2x",
    ],
)
def test_a_password_in_the_connection_is_refused_and_never_echoed(connection: str) -> None:
    problems = errors_of(replace_once("host=127.0.0.1 port=5432 user=drplan", connection))
    assert any("the connection holds a password" in p for p in problems)
    assert not any("hunter2x" in p for p in problems)


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = replace_once("tier: important", "tier: medium").replace("critical: 4h", "critical: 4")
    problems = errors_of(text)
    assert [p.split(": ")[1] for p in problems] == ["objectives.rto.critical", "systems.web.tier"]


def test_the_clean_plan_loads() -> None:
    assert load_plan_text(BASE, "plan.yaml").plan.name == "Test Platform"


def test_x_keys_hold_shared_blocks_and_are_ignored() -> None:
    text = "x-step: &s {title: Shared, owner: ic}\n" + BASE.replace(
        "      - title: Assess\n", "      - *s\n      - title: Assess\n"
    )
    plan = load_plan_text(text, "plan.yaml").plan
    assert plan.runbooks["rb"].phases[0].steps[0].title == "Shared"


def test_not_a_mapping() -> None:
    assert errors_of("- a\n- b\n") == [
        "plan.yaml:1:1: a plan is a mapping of sections (version, name, objectives, ...)"
    ]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(PlanInvalidError, match="not UTF-8"):
        load_plan(path)


def test_plan_file_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    with pytest.raises(PlanNotFoundError, match=r"no plan given and no drplan\.yaml"):
        resolve_plan_path(None)
    (tmp_path / "drplan.yaml").write_text(BASE)
    assert resolve_plan_path(None).name == "drplan.yaml"
    with pytest.raises(PlanNotFoundError, match=r"from \$DRPLAN_PLAN\) does not exist"):
        resolve_plan_path(str(tmp_path / "elsewhere.yaml"), "$DRPLAN_PLAN")
    with pytest.raises(PlanNotFoundError, match=r"from --plan\) does not exist"):
        resolve_plan_path("missing.yaml")
    with pytest.raises(PlanNotFoundError, match=r"is a directory"):
        resolve_plan_path(str(tmp_path))

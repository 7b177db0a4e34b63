"""Alerts reach people in each provider's documented format, against local receivers:
a breach triggers PagerDuty once and resolves it under the same dedup_key, Slack and a
signed webhook hear of it, e-mail goes over STARTTLS with a login; 429 and 500 are
retried; a flood is rate-limited; every message is logged; no secret leaks."""

from __future__ import annotations

import copy
import functools
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import Catalog
from drplan.notify.channels import send
from drplan.notify.notifier import Notifier
from drplan.notify.problems import JobFailures, Problem, problems
from drplan.observability.rpo import LocationFacts
from drplan.observability.status import build_status
from drplan.plan.model import Plan, Severity
from drplan.plan.model.objectives import Tier
from testbed.plans import clean_plan
from tests.fixtures.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, MailServer

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are
HOOK_TOKEN = "T0KEN-in-the-webhook-url"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, receiver: HttpReceiver) -> None:
    monkeypatch.setenv("SLACK_URL", f"{receiver.url}/slack/{HOOK_TOKEN}")
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/webhook?token={HOOK_TOKEN}")
    monkeypatch.setenv("HOOK_SECRET", "hmac-secret")
    monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
    receiver.webhook_secret = "hmac-secret"


def alert_plan(receiver: HttpReceiver, **alerting: Any) -> Plan:
    raw = copy.deepcopy(clean_plan())
    raw["channels"] = {
        "slack": {"kind": "slack", "webhook_url": "${SLACK_URL}", "channel": "#incident-response"},
        "pager": {"kind": "pagerduty", "routing_key": "${PD_KEY}",
                  "events_url": f"{receiver.url}/pagerduty"},
        "hook": {"kind": "webhook", "url": "${HOOK_URL}", "signing_secret": "${HOOK_SECRET}"},
    }  # fmt: skip
    raw["alerting"] = {
        "routes": [
            {"channels": ["pager"], "min_severity": "critical", "tiers": ["critical"]},
            {"channels": ["slack", "hook"], "min_severity": "warning"},
        ],
        **alerting,
    }
    return Plan.model_validate(raw)


def breach(plan: Plan, minutes: int) -> list[Problem]:
    """The database (critical tier, RPO 15m) last backed up ``minutes`` ago in local."""
    from drplan.repo.snapshot import Snapshot  # noqa: PLC0415

    when = NOW - timedelta(minutes=minutes)
    snap = Snapshot(time=when, tree=b"\0" * 32, paths=["x"], host="h", user="u", job="db-full",
                    system="db", source={"kind": "postgres", "stop_time": when.isoformat()},
                    id="ab" * 32)  # fmt: skip
    facts = [LocationFacts("local", snapshots=[snap]), LocationFacts("cloud", snapshots=[snap])]
    status = build_status(plan, facts, NOW, {})
    return [p for p in problems(plan, status, {}) if p.key.startswith("rpo:database")]


def test_a_breach_pages_once_and_resolves_under_the_same_key(
    receiver: HttpReceiver, secrets: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    plan = alert_plan(receiver)
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    clock = [NOW]
    notifier = Notifier(lambda: plan, catalog, lambda: clock[0], "db1.example")
    found = breach(plan, 40)
    assert {p.key for p in found} == {"rpo:database:local", "rpo:database:cloud"}
    assert {p.severity for p in found} == {Severity.CRITICAL}
    notifier.update(found)
    notifier.update(found)  # still breached: nothing new to say
    notifier.flush()
    pages = receiver.bodies("/pagerduty")
    assert [(b["event_action"], b["dedup_key"]) for b in pages] == [
        ("trigger", "rpo:database:local"), ("trigger", "rpo:database:cloud")]  # fmt: skip
    assert pages[0]["payload"]["severity"] == "critical"
    assert "RPO breached: database in local" in pages[0]["payload"]["summary"]
    assert len([r for r in receiver.requests if r.path.startswith("/slack")]) == 2
    assert len([r for r in receiver.requests if r.path.startswith("/webhook")]) == 2

    clock[0] = NOW + timedelta(minutes=5)
    notifier.update([])  # backed up again: resolved
    notifier.flush()
    pages = receiver.bodies("/pagerduty")
    assert [(b["event_action"], b["dedup_key"]) for b in pages[2:]] == [
        ("resolve", "rpo:database:local"), ("resolve", "rpo:database:cloud")]  # fmt: skip
    slack = [r.body for r in receiver.requests if r.path.startswith("/slack")]
    assert slack[-1]["text"].startswith("Resolved: RPO breached")
    assert receiver.violations == []

    logged = catalog.notifications(100)
    assert len(logged) == 12  # 4 events x 3 channels
    assert {row["status"] for row in logged} == {"sent"}
    for text in (str(logged), caplog.text):
        assert ROUTING_KEY not in text
        assert HOOK_TOKEN not in text
        assert "hmac-secret" not in text


def test_429_and_500_are_retried_and_a_flood_is_suppressed(
    receiver: HttpReceiver, secrets: None, tmp_path: Path
) -> None:
    plan = alert_plan(receiver, max_per_hour=2)
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    receiver.script[f"/slack/{HOOK_TOKEN}"] = [(429, {"Retry-After": "1"}), (500, {})]
    notifier = Notifier(lambda: plan, catalog, lambda: NOW, "db1")
    warnings = [Problem(f"job:j{i}", Severity.WARNING, f"job j{i} failing", Tier.IMPORTANT)
                for i in range(3)]  # fmt: skip
    notifier.update(warnings)
    notifier.flush(60)
    slack = [r for r in receiver.requests if r.path.startswith("/slack")]
    assert len(slack) == 4  # 429, 500, then delivered; then the second problem; no third
    by_status: dict[tuple[str, str], list[str]] = {}
    for row in catalog.notifications(100):
        by_status.setdefault((row["channel"], row["status"]), []).append(row["problem"])
    assert sorted(by_status[("slack", "sent")]) == ["job:j0", "job:j1"]
    assert by_status[("slack", "suppressed")] == ["job:j2"]
    assert receiver.violations == []


def test_a_failing_endpoint_is_logged_and_the_others_still_hear(
    receiver: HttpReceiver, secrets: None, tmp_path: Path
) -> None:
    plan = alert_plan(receiver)
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    receiver.script[f"/slack/{HOOK_TOKEN}"] = [(500, {})] * 3
    notifier = Notifier(lambda: plan, catalog, lambda: NOW, "db1")
    notifier.update([Problem("job:x", Severity.ERROR, "job x failing", Tier.IMPORTANT)])
    notifier.flush(60)
    rows = {row["channel"]: row for row in catalog.notifications(10)}
    assert rows["slack"]["status"] == "failed"
    assert "HTTP 500" in rows["slack"]["detail"]
    assert HOOK_TOKEN not in rows["slack"]["detail"]
    assert rows["hook"]["status"] == "sent"


def test_job_failures_become_a_problem_only_after_the_plans_count(receiver: HttpReceiver) -> None:
    plan = alert_plan(receiver, failures_before_alert=3)
    assert problems(plan, None, {"db-full": JobFailures(2, "no space left")}) == []
    (found,) = problems(plan, None, {"db-full": JobFailures(3, "no space left")})
    assert (found.key, found.severity) == ("job:db-full", Severity.CRITICAL)  # db is critical
    assert "no space left" in found.summary


def test_email_goes_over_starttls_with_a_login(
    mail_server: MailServer, receiver: HttpReceiver, secrets: None, tmp_path: Path
) -> None:
    raw = copy.deepcopy(clean_plan())
    raw["channels"] = {"mail": {
        "kind": "email", "smtp_host": mail_server.host, "smtp_port": mail_server.port,
        "sender": "drplan@example.com", "to": ["oncall@example.com"],
        "username": SMTP_USER, "password": "${SMTP_PW}",
    }}  # fmt: skip
    raw["alerting"] = {"routes": [{"channels": ["mail"], "min_severity": "error"}]}
    plan = Plan.model_validate(raw)
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    notifier = Notifier(lambda: plan, catalog, lambda: NOW, "db1")
    failing = Problem("job:x", Severity.ERROR, "job x failed 2 runs in a row", None, {"job": "x"})
    notifier.update([failing, Problem("job:y", Severity.WARNING, "below the route's severity")])
    notifier.flush(60)
    assert [row["status"] for row in catalog.notifications(10)] == ["sent"]
    (message,) = mail_server.messages
    assert message["Subject"] == "[drplan] ERROR: job x failed 2 runs in a row"
    assert message["To"] == "oncall@example.com"
    assert "job: x" in message.get_payload()
    assert mail_server.logins == [SMTP_USER]
    assert mail_server.tls_sessions == 1
    assert SMTP_PASSWORD not in str(catalog.notifications(10))


def test_a_channel_that_hangs_holds_up_nothing_but_its_own_message(
    receiver: HttpReceiver, secrets: None, tmp_path: Path
) -> None:
    plan = alert_plan(receiver)
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    receiver.hang.set()  # every endpoint accepts and never answers
    notifier = Notifier(lambda: plan, catalog, lambda: NOW, "db1",
                        sender=functools.partial(send, timeout=0.5))  # fmt: skip
    started = time.monotonic()
    notifier.update([Problem("job:x", Severity.ERROR, "job x failing", Tier.IMPORTANT)])
    assert time.monotonic() - started < 0.5  # the caller (the daemon's watch) moves on
    notifier.flush(60)
    rows = {row["channel"]: row for row in catalog.notifications(10)}
    assert rows["slack"]["status"] == "failed"
    assert "timed out" in rows["slack"]["detail"]
    assert rows["hook"]["status"] == "failed"
    assert HOOK_TOKEN not in str(rows)

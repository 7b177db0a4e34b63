"""Telling people during an incident, through real receivers on loopback that check each
provider's documented format: the initial notification at declaration, updates to each
audience, the fall-back from a channel that is down to the next, a phone call left as a
task, the resolution; every delivery and failure in the timeline, no secret in any."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from testbed.plans import clean_plan
from tests.conftest import Result, wait_until
from tests.fixtures.receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    STATUSPAGE_KEY,
    HttpReceiver,
    MailServer,
)

Run = Callable[..., Result]
TOKEN = "T0KEN-in-the-webhook-url"
SINCE = "2026-12-07T03:10:00Z"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture
def told(
    run: Run, receiver: HttpReceiver, mail_server: MailServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:  # fmt: skip
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T03:40:00Z")
    monkeypatch.setenv("SLACK_URL", f"{receiver.url}/slack/{TOKEN}")
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/webhook?token={TOKEN}")
    monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("SP_KEY", STATUSPAGE_KEY)
    raw = copy.deepcopy(clean_plan())
    raw["roles"]["dba"] = {"title": "DBA", "holder": "Dana", "phone": "+1-555-0101"}
    raw["channels"] = {
        "slack": {"kind": "slack", "webhook_url": "${SLACK_URL}", "channel": "#incident-response"},
        "mail": {"kind": "email", "smtp_host": mail_server.host, "smtp_port": mail_server.port,
                 "sender": "drplan@example.com", "to": ["dr-team@example.com"],
                 "username": SMTP_USER, "password": "${SMTP_PW}"},
        "hook": {"kind": "webhook", "url": "${HOOK_URL}"},
        "phone-tree": {"kind": "phone", "call": ["ic", "dba"]},
        "pager": {"kind": "pagerduty", "routing_key": "${PD_KEY}",
                  "events_url": f"{receiver.url}/pagerduty"},
        "status": {"kind": "status_page", "api_url": f"{receiver.url}/statuspage",
                   "page_id": "smartwatts", "api_key": "${SP_KEY}",
                   "components": ["cmp-api", "cmp-db"]},
    }  # fmt: skip
    raw["communication"] = {
        "primary": "slack", "secondary": "mail", "emergency": "phone-tree",
        "audiences": {"partners": {"channels": ["mail"]}, "customers": {"channels": ["hook"]}},
    }  # fmt: skip
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw))

    class Told:
        receiver_ = receiver
        mail = mail_server
        plan_ = plan

        @staticmethod
        def cli(*args: str) -> Result:
            return run("--plan", str(plan), "incident", *args)

        @staticmethod
        def timeline(inc: str) -> list[dict[str, Any]]:
            out = run("incident", "timeline", inc, "--json").out
            return [json.loads(line) for line in out.splitlines()]

    yield Told
    assert receiver.violations == []  # every request in its provider's format


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["kind"] == "message"]


def test_the_declaration_tells_the_responders_first(told: Any) -> None:
    done = told.cli("declare", "db-loss", "--since", SINCE, "--note", "rows deleted",
                    "--commander", "ic", "--json")  # fmt: skip
    assert done.code == 0, done.err
    inc = json.loads(done.out)["id"]
    (slack,) = told.receiver_.bodies(f"/slack/{TOKEN}")
    assert slack["text"] == f"Incident {inc} declared: Database loss (tier 1)"
    section = slack["blocks"][1]["text"]["text"]
    assert "A database loss began at 2026-12-07T03:10:00Z." in section
    assert "db (back by 2026-12-07T07:10:00Z)" in section
    assert "rows deleted" in section
    assert "Incident commander: ic." in section
    (sent,) = messages(told.timeline(inc))
    assert (sent["audience"], sent["kind"], sent["channel"], sent["delivered"]) == (
        "internal", "initial", "slack", True)  # fmt: skip
    assert told.mail.messages == []  # the primary delivered: nothing further down the chain
    assert TOKEN not in json.dumps(told.timeline(inc)) + done.out + done.err


def test_a_channel_that_is_down_falls_back_to_the_next_and_the_failure_is_kept(
    told: Any,
) -> None:
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    told.receiver_.script[f"/slack/{TOKEN}"] = [(503, {})] * 3  # down for every retry
    done = told.cli("notify", inc, "--message", "Restore under way, ETA 40 minutes")
    assert done.code == 0, done.err
    assert "warning: channel slack: HTTP 503" in done.err
    (mail,) = told.mail.messages
    assert mail["Subject"] == f"[drplan] Incident {inc} update: Database loss"
    assert "Restore under way, ETA 40 minutes" in mail.get_payload()
    assert "db: 3h30m left to its deadline 2026-12-07T07:10:00Z" in mail.get_payload()
    updates = [m for m in messages(told.timeline(inc)) if m["kind"] == "update"]
    assert [(m["channel"], m["delivered"]) for m in updates] == [("slack", False), ("mail", True)]
    assert updates[0]["error"] == "channel slack: HTTP 503 Service Unavailable"


def test_each_audience_is_told_on_its_own_channels(told: Any) -> None:
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    assert told.cli("notify", inc, "--audience", "partners", "--message", "API degraded").code == 0
    assert told.cli("notify", inc, "--audience", "customers", "--message", "We are on it").code == 0
    (hook,) = told.receiver_.bodies(f"/webhook?token={TOKEN}")
    assert (hook["event"], hook["key"]) == ("message", inc)
    assert "We are on it" in hook["text"]
    (mail,) = told.mail.messages
    assert "API degraded" in mail.get_payload()
    unknown = told.cli("notify", inc, "--audience", "press", "--message", "x")
    assert unknown.code == 2
    assert (
        "no audience 'press' in the plan; its audiences: internal, customers, partners"
        in unknown.err
    )


def test_when_every_channel_fails_the_calls_become_a_task(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    told.receiver_.script[f"/slack/{TOKEN}"] = [(503, {})] * 3
    monkeypatch.setenv("SMTP_PW", "wrong")  # the mail server refuses the login
    done = told.cli("notify", inc, "--message", "Escalating")
    assert done.code == 1
    assert "no channel delivered the update to internal" in done.err
    update = [m for m in messages(told.timeline(inc)) if m["kind"] == "update"]
    assert [m["channel"] for m in update] == ["slack", "mail", "phone-tree"]
    assert update[-1]["call_task"] == [
        {"role": "ic", "holder": "CTO", "phone": "+1-555-0001"},
        {"role": "dba", "holder": "Dana", "phone": "+1-555-0101"},
    ]
    lines = told.cli("timeline", inc).out
    assert (
        "call task for internal (update): call CTO (ic) +1-555-0001, Dana (dba) +1-555-0101"
        in lines
    )
    assert "wrong" not in lines
    assert SMTP_PASSWORD not in lines


def test_a_phone_channel_with_a_call_service_has_it_place_the_calls(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["channels"]["phone-tree"]["webhook_url"] = "${CALLS_URL}"
    told.plan_.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("CALLS_URL", f"{told.receiver_.url}/calls?token={TOKEN}")
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    told.receiver_.script[f"/slack/{TOKEN}"] = [(503, {})] * 3
    monkeypatch.setenv("SMTP_PW", "wrong")  # the mail server refuses the login
    done = told.cli("notify", inc, "--message", "Escalating")
    assert done.code == 0, done.err  # the call service took it
    (call,) = told.receiver_.bodies(f"/calls?token={TOKEN}")
    assert (call["event"], call["key"]) == ("call", inc)
    assert [c["phone"] for c in call["calls"]] == ["+1-555-0001", "+1-555-0101"]  # in order
    assert "Escalating" in call["text"]
    update = [m for m in messages(told.timeline(inc)) if m["kind"] == "update"]
    assert [(m["channel"], m["delivered"]) for m in update] == [
        ("slack", False), ("mail", False), ("phone-tree", True)]  # fmt: skip
    told.receiver_.script[f"/slack/{TOKEN}"] = [(503, {})] * 3
    told.receiver_.script[f"/calls?token={TOKEN}"] = [(503, {})] * 3  # the service down too
    assert told.cli("notify", inc, "--message", "Still escalating").code == 1
    last = [m for m in messages(told.timeline(inc)) if m["kind"] == "update"][-1]
    assert last["call_task"][0]["phone"] == "+1-555-0001"  # the calls fall to a person
    assert TOKEN not in json.dumps(told.timeline(inc))


def test_the_resolution_is_told_and_a_plan_may_write_its_own_messages(told: Any) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["communication"]["templates"] = {
        "initial": "SmartWatts {{ incident.id }}: {{ incident.title }} since {{ incident.since }}",
    }
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    assert (
        told.cli("resolve", inc, "--waive", "db=restored by hand", "--waive", "web=fine").code == 0
    )
    first, last = told.receiver_.bodies(f"/slack/{TOKEN}")
    assert first["text"] == f"SmartWatts {inc}: Database loss since 2026-12-07T03:10:00Z"
    assert last["text"] == f"Incident {inc} resolved: Database loss"
    assert "db: not recovered" in last["blocks"][1]["text"]["text"]
    raw["communication"]["templates"] = {"update": "{% if %}"}
    told.plan_.write_text(yaml.safe_dump(raw))
    invalid = told.cli("declare", "db-loss")
    assert invalid.code == 4
    assert "template update: line 1" in invalid.err
    raw["communication"]["templates"] = {"initial": "{{ incident.nonsense }}"}
    told.plan_.write_text(yaml.safe_dump(raw))
    done = told.cli("declare", "db-loss", "--json")
    assert done.code == 0  # the incident is declared; the message that failed is said
    assert "a message template failed" in done.err


def test_a_phase_past_its_window_pages_the_owner_then_the_deputy_then_the_commander(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["roles"]["dba"]["deputy"] = "ops"
    raw["roles"]["ops"] = {"title": "Operations", "holder": "Omar", "phone": "+1-555-0102"}
    raw["runbooks"]["rb"]["phases"][0]["steps"][0]["owner"] = "dba"
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--commander", "ic",
                              "--json").out)["id"]  # fmt: skip

    def run_at(moment: str) -> list[dict[str, Any]]:
        monkeypatch.setenv("DRPLAN_NOW", moment)
        assert told.cli("run", inc).code == 0
        pages: list[dict[str, Any]] = told.receiver_.bodies("/pagerduty")
        return pages

    assert run_at("2026-12-07T04:05:00Z") == []  # phase 1's window (0-1h) is not over
    (page,) = run_at("2026-12-07T04:11:00Z")
    assert (page["event_action"], page["dedup_key"]) == ("trigger", f"{inc}:phase-1")
    assert page["payload"]["severity"] == "critical"  # tier 1
    assert page["payload"]["custom_details"]["role"] == "dba"
    assert (
        "phase 1 Respond is past its window with step 1.1 Assess open" in page["payload"]["summary"]
    )
    assert len(run_at("2026-12-07T04:20:00Z")) == 1  # within 15 minutes: nobody else yet
    pages = run_at("2026-12-07T04:27:00Z")
    assert [p["payload"]["custom_details"]["role"] for p in pages] == ["dba", "ops"]
    pages = run_at("2026-12-07T04:43:00Z")
    assert [p["payload"]["custom_details"]["role"] for p in pages] == ["dba", "ops", "ic"]
    assert all(p["dedup_key"] == f"{inc}:phase-1" for p in pages)  # one PagerDuty incident
    acked = told.cli("ack", inc, "--as", "ic")
    assert acked.code == 0, acked.err
    pages = run_at("2026-12-07T05:30:00Z")  # acknowledged: the chain stops
    assert [p["event_action"] for p in pages] == ["trigger", "trigger", "trigger", "acknowledge"]
    assert pages[-1]["dedup_key"] == f"{inc}:phase-1"  # PagerDuty is told too
    assert told.cli("ack", inc).code == 2  # nothing left to acknowledge
    assert told.cli("resolve", inc, "--waive", "db=by hand", "--waive", "web=fine").code == 0
    last = told.receiver_.bodies("/pagerduty")[-1]
    assert (last["event_action"], last["dedup_key"]) == ("resolve", f"{inc}:phase-1")
    lines = told.cli("timeline", inc).out
    assert "escalated (phase-1, level 1) to ops" in lines
    assert "acknowledged: phase-1" in lines
    assert ROUTING_KEY not in lines


def test_when_no_role_acknowledges_the_plans_escalation_contacts_are_told(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["runbooks"]["rb"]["phases"][0]["steps"][0]["owner"] = "dba"
    raw["contacts"] = {"db-vendor": {"name": "Database Vendor", "category": "vendor",
                                     "email": "support@vendor.example", "phone": "+1-555-0199"}}  # fmt: skip
    raw["communication"]["escalation_contacts"] = ["db-vendor"]
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--commander", "ic",
                              "--json").out)["id"]  # fmt: skip

    def run_at(moment: str) -> None:
        monkeypatch.setenv("DRPLAN_NOW", moment)
        assert told.cli("run", inc).code == 0

    run_at("2026-12-07T04:11:00Z")  # the owner (dba)
    run_at("2026-12-07T04:27:00Z")  # the commander (ic)
    assert told.mail.messages == []
    run_at("2026-12-07T04:43:00Z")  # nobody acknowledged: the vendor
    (mail,) = told.mail.messages
    assert mail["To"] == "support@vendor.example"
    assert mail["Subject"] == f"[drplan] Incident {inc} escalated to Database Vendor"
    assert "phase 1 Respond is past its window" in mail.get_payload(decode=True).decode()
    run_at("2026-12-07T05:30:00Z")  # the end of the chain: nobody else
    assert len(told.mail.messages) == 1
    pages = told.receiver_.bodies("/pagerduty")
    assert [p["payload"]["custom_details"]["role"] for p in pages] == ["dba", "ic"]
    lines = " ".join(told.cli("timeline", inc).out.split())  # as one line, unwrapped
    assert ("escalated (phase-1, level 2) to contact:db-vendor: phase 1 Respond is past its"
            " window with step 1.1 Assess open; e-mailed on mail (sent); call Database Vendor"
            " at +1-555-0199") in lines  # fmt: skip
    raw["communication"]["escalation_contacts"] = ["nobody"]
    told.plan_.write_text(yaml.safe_dump(raw))
    refused = told.cli("declare", "db-loss")
    assert refused.code == 4  # an invalid plan
    assert "communication.escalation_contacts" in refused.err
    assert "contact 'nobody' (defined: db-vendor)" in refused.err


def test_a_step_that_outlasts_its_phase_window_is_escalated_while_it_runs(
    told: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = tmp_path / "restored"
    raw = yaml.safe_load(told.plan_.read_text())
    raw["runbooks"]["rb"]["phases"][0]["steps"] = [{
        "title": "Long restore", "owner": "dba", "timeout": "10m",
        "run": f"while [ ! -e {gate} ]; do sleep 0.05; done",
    }]  # fmt: skip
    told.plan_.write_text(yaml.safe_dump(raw))
    monkeypatch.delenv("DRPLAN_NOW")  # the real clock: phase 1 (0-1h) ends 3 s from now
    since = clock.rfc3339(datetime.now(UTC) - timedelta(seconds=3600 - 3))
    inc = json.loads(told.cli("declare", "db-loss", "--since", since, "--json").out)["id"]
    driver = subprocess.Popen([sys.executable, "-m", "drplan", "--plan", str(told.plan_),
                               "incident", "run", inc], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_until(lambda: told.receiver_.bodies("/pagerduty"), "the page", timeout=30)
        assert driver.poll() is None  # paged while the step still runs
    finally:
        gate.touch()
        out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 0, out
    (page,) = told.receiver_.bodies("/pagerduty")
    assert page["payload"]["custom_details"]["role"] == "dba"
    assert (
        "phase 1 Respond is past its window with step 1.1 Long restore open"
        in (page["payload"]["summary"])
    )
    assert "step 1.1 Long restore: done" in out
    kinds = [e["kind"] for e in told.timeline(inc)]
    assert kinds.index("step_started") < kinds.index("escalated") < kinds.index("step")


def test_customers_follow_the_incident_on_the_status_page_until_it_is_resolved(
    told: Any,
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["communication"]["audiences"]["customers"]["channels"] = ["status"]
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    for text in ("We are investigating slow readings", "Restore under way, ETA 40 minutes"):
        done = told.cli("notify", inc, "--audience", "customers", "--message", text)
        assert done.code == 0, done.err
    assert told.cli("resolve", inc, "--waive", "db=by hand", "--waive", "web=fine").code == 0
    calls = [(r.method, r.path) for r in told.receiver_.requests
             if r.path.startswith("/statuspage")]  # fmt: skip
    (page_id,) = told.receiver_.pages
    base = "/statuspage/v1/pages/smartwatts/incidents"
    assert calls == [("POST", base), ("PATCH", f"{base}/{page_id}"), ("PATCH", f"{base}/{page_id}")]
    first, second, last = (r.body["incident"] for r in told.receiver_.requests
                           if r.path.startswith("/statuspage"))  # fmt: skip
    assert (first["status"], first["impact_override"]) == ("investigating", "critical")  # tier 1
    assert first["components"] == {"cmp-api": "major_outage", "cmp-db": "major_outage"}
    assert "We are investigating slow readings" in first["body"]
    assert second["status"] == "identified"
    assert "ETA 40 minutes" in second["body"]
    assert last["status"] == "resolved"
    assert last["components"] == {"cmp-api": "operational", "cmp-db": "operational"}
    sent = [m for m in messages(told.timeline(inc)) if m["audience"] == "customers"]
    assert [(m["kind"], m["remote_id"]) for m in sent] == [
        ("update", page_id), ("update", page_id), ("resolution", page_id)]  # fmt: skip
    assert STATUSPAGE_KEY not in json.dumps(told.timeline(inc))


def test_responders_get_tactical_and_executives_executive_updates_at_each_phase_and_interval(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["communication"]["audiences"]["executives"] = {"channels": ["mail"]}
    raw["communication"] |= {"executive": ["executives"], "update_every": "30m"}
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--commander", "ic",
                              "--json").out)["id"]  # fmt: skip
    slack = f"/slack/{TOKEN}"
    assert len(told.receiver_.bodies(slack)) == 1  # the initial message
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T03:45:00Z")
    done = told.cli("step", inc, "1.1", "done", "--as", "ic")  # phase 1 settled
    assert done.code == 0, done.err
    tactical = told.receiver_.bodies(slack)[-1]
    assert tactical["text"] == f"Incident {inc} tactical update: phase 2 Recover"
    section = tactical["blocks"][1]["text"]["text"]
    assert "Done: 1.1 Assess (ic (" in section
    assert "Next: 2.1 Restore db (ic)." in section
    assert "db: 3h25m left to 2026-12-07T07:10:00Z, never drilled by its drills" in section
    (executive,) = told.mail.messages
    assert executive["Subject"] == f"[drplan] Incident {inc} executive update: Database loss"
    body = executive.get_payload(decode=True).decode()
    assert "Impact: db down, web down since 2026-12-07T03:10:00Z (tier 1)." in body
    assert ("db: ETA unknown (never drilled), deadline 2026-12-07T07:10:00Z; data loss at most"
            " 15m00s.") in body  # fmt: skip
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T04:10:00Z")
    assert told.cli("run", inc).code == 0  # no phase settled, 25 minutes: nothing due
    assert (len(told.receiver_.bodies(slack)), len(told.mail.messages)) == (2, 1)
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T04:16:00Z")
    assert told.cli("run", inc).code == 0  # 31 minutes since the last: due
    assert (len(told.receiver_.bodies(slack)), len(told.mail.messages)) == (3, 2)
    assert "tactical update: phase 2 Recover" in told.receiver_.bodies(slack)[-1]["text"]
    kinds = [(m["audience"], m["kind"], m.get("phase")) for m in messages(told.timeline(inc))]
    assert kinds == [("internal", "initial", None), ("internal", "tactical", 2),
                     ("executives", "executive", 2), ("internal", "tactical", 2),
                     ("executives", "executive", 2)]  # fmt: skip


def test_a_regulators_notice_is_tracked_against_its_deadline_and_escalated_when_late(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["communication"]["audiences"]["regulators"] = {"channels": ["mail"], "deadline": "72h"}
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--commander", "ic",
                              "--json").out)["id"]  # declared at 03:40 (DRPLAN_NOW)  # fmt: skip
    (notice,) = json.loads(told.cli("status", inc, "--json").out)["notices"]
    assert (notice["audience"], notice["due"], notice["told_at"]) == (
        "regulators", "2026-12-10T03:40:00Z", None)  # fmt: skip
    shown = told.cli("status", inc).out
    assert "notice to regulators: due 2026-12-10T03:40:00Z, 72h00m left" in shown
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-10T03:41:00Z")  # a minute late
    assert told.cli("run", inc).code == 0
    page = next(p for p in told.receiver_.bodies("/pagerduty")
                if p["dedup_key"] == f"{inc}:notice-regulators")  # fmt: skip
    assert page["payload"]["custom_details"]["role"] == "ic"
    assert "the regulators notice was due 2026-12-10T03:40:00Z and is not sent" in (
        page["payload"]["summary"])  # fmt: skip
    assert "OVERDUE: not told" in told.cli("status", inc).out
    sent = told.cli("notify", inc, "--audience", "regulators", "--message", "Breach notice")
    assert sent.code == 0, sent.err
    (notice,) = json.loads(told.cli("status", inc, "--json").out)["notices"]
    assert (notice["told_at"], notice["in_time"]) == ("2026-12-10T03:41:00Z", False)
    report = told.cli("report", inc).out
    assert "- notice to regulators: due 2026-12-10T03:40:00Z, told 2026-12-10T03:41:00Z (late)" \
        in report  # fmt: skip
    assert "the notice to regulators was late (due 2026-12-10T03:40:00Z)" in report


def test_an_audience_outside_is_told_the_services_eta_and_data_to_resend_never_the_insides(
    told: Any,
) -> None:
    """Customers read the status page's names for what is down, since when, until when
    (the RTO clock's deadline, never drilled), which readings to send again: never a
    system, a role, a phase or a drplan command. Executives, like responders, get those."""
    raw = yaml.safe_load(told.plan_.read_text())
    raw["status_page"] = {"title": "Test status", "components": {
        "api": {"title": "Meter ingestion API", "systems": ["db"]}}}  # fmt: skip
    raw["communication"]["audiences"]["executives"] = {"channels": ["mail"]}
    raw["communication"]["audiences"]["customers"]["channels"] = ["hook", "mail"]
    raw["communication"]["executive"] = ["executives"]
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--commander", "ic",
                              "--json").out)["id"]  # fmt: skip
    assert told.cli("notify", inc, "--audience", "customers", "--message", "On it").code == 0
    (hook,) = told.receiver_.bodies(f"/webhook?token={TOKEN}")
    assert hook["subject"] == "Update: Meter ingestion API"
    assert hook["text"].splitlines()[1:] == [
        "On it",
        "We are restoring Meter ingestion API, expected back by 07:10 UTC.",
        "Data sent since 02:55 UTC may have to be sent again.",
    ]  # fmt: skip
    for inside in (inc, "db", "ic", "Database loss", "phase", "drplan", "tier"):
        assert inside not in hook["text"].replace("Meter ingestion API", "")
    assert told.cli("notify", inc, "--audience", "executives", "--message", "On it").code == 0
    to_executives = told.mail.messages[-1].get_payload(decode=True).decode()
    assert "db: 3h30m left to its deadline 2026-12-07T07:10:00Z" in to_executives

    # The status page's audience hears of each phase change, in the public words.
    raw["status_page"]["audience"] = "customers"
    told.plan_.write_text(yaml.safe_dump(raw))
    other = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    assert told.cli("step", other, "1.1", "done", "--as", "ic").code == 0  # phase 1 settled
    _, update = told.receiver_.bodies(f"/webhook?token={TOKEN}")  # the first: the notify
    assert update["subject"] == "Update: Meter ingestion API"
    assert "We are restoring Meter ingestion API, expected back by 07:10 UTC." in update["text"]
    sent = [(m["channel"], m["phase"], m["delivered"]) for m in messages(told.timeline(other))
            if m["audience"] == "customers"]  # fmt: skip
    assert sent == [("hook", 2, True), ("mail", 2, True)]


def test_a_runbook_step_tells_an_audience_of_the_incident_it_runs_in(told: Any) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["runbooks"]["rb"]["phases"][0]["steps"][0] = {
        "title": "Tell customers", "owner": "ic",
        "action": "incident notify --audience customers --message 'We are restoring service'",
    }  # fmt: skip
    told.plan_.write_text(yaml.safe_dump(raw))
    assert told.cli("notify", "--message", "x").code == 2  # outside a step: which incident?
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    done = told.cli("run", inc)
    assert done.code == 0, done.err
    (hook,) = told.receiver_.bodies(f"/webhook?token={TOKEN}")
    assert (hook["key"], hook["subject"]) == (inc, "Update: our service")
    assert "We are restoring service" in hook["text"]
    (sent,) = [m for m in messages(told.timeline(inc)) if m["audience"] == "customers"]
    assert sent["delivered"] is True


def test_the_review_says_how_fast_people_were_told(told: Any) -> None:
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    told.receiver_.script[f"/webhook?token={TOKEN}"] = [(503, {})] * 3  # customers: down
    assert told.cli("notify", inc, "--audience", "customers", "--message", "On it").code == 1
    assert told.cli("notify", inc, "--message", "Restore under way").code == 0
    report = json.loads(told.cli("report", inc, "--format", "json").out)
    comm = report["communication"]
    first, update = comm["first_notification"], comm["first_update"]
    assert (first["audience"], first["channel"]) == ("internal", "slack")
    assert first["after_declaration_seconds"] < 2  # the declaration told them at once
    assert first["after_disaster_seconds"] == pytest.approx(30 * 60, abs=2)  # DRPLAN_NOW
    assert (update["audience"], update["channel"]) == ("internal", "slack")
    assert comm["audiences"] == {"internal": {"delivered": 2, "failed": 0},
                                 "customers": {"delivered": 0, "failed": 1}}  # fmt: skip
    text = told.cli("report", inc).out
    assert "- First notification: 0.0s after the declaration (30m00s after the disaster)," \
        " to internal on slack" in text  # fmt: skip
    assert "- customers: 0 delivered, 1 failed" in text


def test_a_rehearsal_is_marked_tells_only_the_responders_and_pages_nobody(
    told: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = told.cli("declare", "db-loss", "--since", SINCE, "--rehearsal", "--json")
    assert done.code == 0, done.err
    inc = json.loads(done.out)["id"]
    (slack,) = told.receiver_.bodies(f"/slack/{TOKEN}")
    assert slack["text"] == f"[REHEARSAL] Incident {inc} declared: Database loss (tier 1)"
    assert "This is a rehearsal: nothing in production is down." in json.dumps(slack)
    refused = told.cli("notify", inc, "--audience", "customers", "--message", "We are on it")
    assert refused.code == 2
    assert "a rehearsal tells only the internal audience" in refused.err
    assert told.receiver_.bodies(f"/webhook?token={TOKEN}") == []  # customers never told
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T04:11:00Z")  # phase 1 is past its window
    assert told.cli("run", inc).code == 0
    assert told.receiver_.bodies("/pagerduty") == []  # nobody woken for a game day
    escalated = [e for e in told.timeline(inc) if e["kind"] == "escalated"]
    assert [p["pages"] for p in (e["data"] for e in escalated)] == [[]]
    internal = told.receiver_.bodies(f"/slack/{TOKEN}")[-1]
    assert internal["text"] == f"[REHEARSAL] Incident {inc} update: Database loss"
    assert "phase 1 Respond is past its window" in json.dumps(internal)


def test_an_audience_channel_that_is_down_does_not_keep_the_others_from_being_told(
    told: Any,
) -> None:
    raw = yaml.safe_load(told.plan_.read_text())
    raw["communication"]["audiences"]["partners"]["channels"] = ["hook", "mail"]
    told.plan_.write_text(yaml.safe_dump(raw))
    inc = json.loads(told.cli("declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    told.receiver_.script[f"/webhook?token={TOKEN}"] = [(503, {})] * 3  # down for every retry
    done = told.cli("notify", inc, "--audience", "partners", "--message", "API degraded")
    assert done.code == 0, done.err  # one channel delivered
    assert "warning: channel hook: HTTP 503" in done.err
    (mail,) = told.mail.messages
    assert "API degraded" in mail.get_payload()
    sent = [(m["channel"], m["delivered"]) for m in messages(told.timeline(inc))
            if m["audience"] == "partners"]  # fmt: skip
    assert sent == [("hook", False), ("mail", True)]

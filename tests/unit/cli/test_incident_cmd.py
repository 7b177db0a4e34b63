"""`drplan incident`: declaring on the SmartWatts plan starts the RTO clock from the
disaster moment; steps are recorded in the runbook's order; the incident keeps the plan
it began with; the timeline survives an unreachable catalog and betrays tampering."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.incidents.journal import Journal
from drplan.incidents.points import INCIDENT_ENV, incident_locations
from drplan.incidents.predict import AT_RISK, NEVER_DRILLED, ON_TRACK, WILL_MISS, predict
from drplan.incidents.service import Incidents
from drplan.plan.loader import load_plan
from tests.conftest import SMARTWATTS, SMARTWATTS_SECRETS, Result

Run = Callable[..., Result]

SINCE = "2026-12-07T03:10:00Z"
NOW = "2026-12-07T03:40:00Z"


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run) -> Any:
    for name, value in SMARTWATTS_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRPLAN_NOW", NOW)
    plan = tmp_path / "plan.yaml"
    # The plan's channels name hosts that are not on loopback: nothing is sent from these
    # tests (tests/integration/test_incident_messages.py sends to local receivers).
    raw = yaml.safe_load(SMARTWATTS.read_text())
    raw.pop("communication")
    raw["status_page"].pop("audience")  # an audience of the communication just dropped
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))

    def _sw(*args: str) -> Result:
        return run("--plan", str(plan), "incident", *args)

    _sw.plan = plan  # type: ignore[attr-defined]
    _sw.state = tmp_path / "state"  # type: ignore[attr-defined]
    return _sw


def declared(sw: Any, *args: str) -> dict[str, Any]:
    done = sw("declare", *args, "--json")
    assert done.code == 0, done.err
    data: dict[str, Any] = json.loads(done.out)
    return data


def test_a_declaration_starts_the_rto_clock_from_the_disaster_moment(sw: Any) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE, "--note", "rows deleted")
    assert inc["id"].startswith("INC-")
    assert len(inc["id"]) == 8
    assert (inc["scenario"], inc["tier"], inc["status"]) == ("database-corruption", 1, "open")
    assert inc["plan"]["sha256"] == hashlib.sha256(sw.plan.read_bytes()).hexdigest()
    (db,) = inc["clock"]["systems"]
    assert db["system"] == "smartwatts-db"
    assert (db["rto_seconds"], db["rpo_seconds"]) == (4 * 3600, 15 * 60)  # critical; database
    assert db["deadline"] == "2026-12-07T07:10:00Z"
    assert db["remaining_seconds"] == 3.5 * 3600  # 30 min gone at NOW
    assert db["prediction"]["verdict"] == NEVER_DRILLED  # said plainly: a finding
    assert inc["clock"]["full_platform"] is None  # one system down, not the platform
    windows = [(p["name"], p["window"]["start"], p["window"]["end"]) for p in inc["phases"]]
    assert windows == [
        ("Immediate Actions", "2026-12-07T03:10:00Z", "2026-12-07T04:10:00Z"),
        ("Recovery Steps", "2026-12-07T04:10:00Z", "2026-12-07T07:10:00Z"),
        ("Validation", "2026-12-07T07:10:00Z", "2026-12-07T11:10:00Z"),
    ]
    assert inc["current_phase"] == 1
    assert inc["commander"] == "incident-commander"

    shown = sw("status", inc["id"])
    assert shown.code == 0, shown.err
    assert "2026-12-07T07:10:00Z" in shown.out
    assert "3h30m" in shown.out
    assert "never drilled" in shown.out
    for value in SMARTWATTS_SECRETS.values():
        assert value not in shown.out + json.dumps(inc)


def test_a_whole_platform_scenario_has_every_system_and_the_platform_deadline(sw: Any) -> None:
    inc = declared(sw, "data-center-failure", "--since", SINCE)
    names = [s["system"] for s in inc["clock"]["systems"]]
    assert "smartwatts-db" in names
    assert "logs" in names
    assert len(names) == 10  # every system of the plan
    logs = next(s for s in inc["clock"]["systems"] if s["system"] == "logs")
    assert logs["deadline"] == "2026-12-08T03:10:00Z"  # non-critical: 24h
    assert inc["clock"]["full_platform"]["deadline"] == "2026-12-07T15:10:00Z"  # 12h
    chosen = declared(sw, "data-center-failure", "--systems", "api,kubernetes", "--since", SINCE)
    assert [s["system"] for s in chosen["clock"]["systems"]] == ["api", "kubernetes"]
    assert chosen["clock"]["full_platform"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["databse-corruption"], "no scenario 'databse-corruption' in the plan; the plan's"
                                 " scenarios: configuration-errors, data-center-failure"),
        (["database-corruption", "--since", "2026-12-07T05:00:00Z"],
         "--since 2026-12-07T05:00:00Z is in the future (it is 2026-12-07T03:40:00Z)"),
        (["database-corruption", "--since", "yesterday"], "--since: 'yesterday' is not an RFC 3339"),
        (["database-corruption", "--systems", "db"], "no system 'db' in the plan; the plan's systems:"),
        (["database-corruption", "--commander", "cto"], "no role 'cto' in the plan; the plan's roles:"),
        (["database-corruption", "--as", "ceo"], "no role 'ceo' in the plan"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_refused_with_what_is_known(
    sw: Any, args: list[str], expected: str
) -> None:
    done = sw("declare", *args)
    assert done.code == 2
    (line,) = done.err.strip().splitlines()
    assert expected in line
    assert not (sw.state / "incidents").exists() or not any((sw.state / "incidents").iterdir())


def test_steps_are_taken_in_order_and_each_is_recorded(sw: Any) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE)["id"]
    early = sw("step", inc, "2.1", "done")
    assert early.code == 24
    assert "step 2.1 comes after 1.1, still open" in early.err
    assert sw("step", inc, "1.1", "done", "--item", "4").code == 2  # it has 3 items
    assert sw("step", inc, "1.1", "done", "--item", "1").code == 0
    done = sw("step", inc, "contain-the-corruption", "done", "--as", "database-team",
              "--note", "writes stopped")  # fmt: skip
    assert done.code == 0, done.err
    again = sw("step", inc, "1.1", "skip")
    assert again.code == 24
    assert "is done already" in again.err
    unknown = sw("step", inc, "9.9", "done")
    assert unknown.code == 2
    assert (
        "its steps: 1.1 contain-the-corruption, 2.1 restore-from-last-known-good-backup"
        in unknown.err
    )
    assert sw("step", inc, "3.1", "fail", "--out-of-order").code == 0

    status = json.loads(sw("status", inc, "--json").out)
    steps = {s["id"]: s for p in status["phases"] for s in p["steps"]}
    assert steps["1.1"]["status"] == "done"
    assert steps["1.1"]["actor"].startswith("database-team (")
    assert steps["1.1"]["note"] == "writes stopped"
    assert [c["done"] for c in steps["1.1"]["checklist"]] == [True, False, False]
    assert (steps["2.1"]["status"], steps["3.1"]["status"]) == ("pending", "failed")
    assert status["current_phase"] == 2
    lines = sw("timeline", inc).out.strip().splitlines()
    assert len(lines) == 4
    assert "step 3.1 fail (out of order)" in lines[-1]
    assert "database-team (" in lines[2]
    assert "step 1.1 done: writes stopped" in lines[2]


def test_a_phase_past_its_window_with_steps_open_is_an_overrun(
    sw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE)["id"]
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T04:11:00Z")
    status = json.loads(sw("status", inc, "--json").out)
    assert [p["overrun"] for p in status["phases"]] == [True, False, False]
    assert "OVERRUN" in sw("status", inc).out
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T07:20:00Z")
    (db,) = json.loads(sw("status", inc, "--json").out)["clock"]["systems"]
    assert db["remaining_seconds"] == -600
    assert "missed by 10m00s" in sw("status", inc).out


def test_an_incident_keeps_the_plan_it_began_with(sw: Any) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE)
    text = sw.plan.read_text().replace("Contain the corruption", "Stop the bleeding")
    text = text.replace("critical: 4h", "critical: 2h")
    sw.plan.write_text(text)
    later = json.loads(sw("status", inc["id"], "--json").out)
    assert later["phases"][0]["steps"][0]["title"] == "Contain the corruption"
    assert later["clock"]["systems"][0]["deadline"] == "2026-12-07T07:10:00Z"
    assert later["plan"]["sha256"] == inc["plan"]["sha256"]
    assert declared(sw, "database-corruption")["clock"]["systems"][0]["rto_seconds"] == 7200


def test_a_second_incident_on_the_same_systems_is_warned(sw: Any) -> None:
    first = declared(sw, "database-corruption", "--since", SINCE)["id"]
    done = sw("declare", "data-center-failure")
    assert done.code == 0
    assert (
        f"warning: incident {first} (database-corruption) is open on smartwatts-db too" in done.err
    )
    listed = json.loads(sw("list", "--json").out)
    assert [i["scenario"] for i in listed] == ["database-corruption", "data-center-failure"]


def test_the_journal_keeps_events_while_the_catalog_is_down_and_syncs_after(
    sw: Any, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    down = f"sqlite:///{blocked}/catalog.db"
    done = sw("declare", "database-corruption", "--since", SINCE, "--catalog", down, "--json")
    assert done.code == 0, done.err
    assert "the incident journal keeps every event" in done.err
    inc = json.loads(done.out)["id"]
    assert sw("step", inc, "1.1", "done", "--catalog", down).code == 0
    good = f"sqlite:///{tmp_path / 'catalog.db'}"
    assert Catalog.open(good).incident_events(inc) == []
    assert sw("step", inc, "2.1", "skip", "--catalog", good).code == 0  # syncs all three
    assert len(Catalog.open(good).incident_events(inc)) == 3
    verified = sw("verify", inc, "--catalog", good)
    assert verified.code == 0, verified.err
    assert "3 entries in the journal, 3 entries in the catalog, every link intact" in verified.out


def test_verify_names_an_edited_entry_in_either_copy(sw: Any, tmp_path: Path) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE)["id"]
    sw("step", inc, "1.1", "done", "--note", "writes stopped")
    sw("step", inc, "2.1", "done")
    assert sw("verify", inc).code == 0
    catalog = sw.state / "catalog.db"
    with sqlite3.connect(catalog) as db:  # the catalog's copy: someone rewrites a note
        (body,) = db.execute("select body from incident_events where seq = 2").fetchone()
        db.execute("update incident_events set body = ? where seq = 2",
                   (body.replace("writes stopped", "all fine"),))  # fmt: skip
    done = sw("verify", inc)
    assert done.code == 13
    (line,) = done.err.strip().splitlines()
    assert "the catalog: entry 2 (step) was edited: its content does not match its hash" in line
    assert "entry 2 differs from the copy in the catalog" in line

    journal = Journal(sw.state / "incidents").path(inc)  # and the journal: a line deleted
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join([lines[0], lines[2], b""]))
    done = sw("verify", inc)
    assert done.code == 13
    assert "the journal: entry 2 says it is entry 3: entries were deleted or reordered" in done.err


def test_an_unknown_incident_is_refused(sw: Any) -> None:
    assert "no incident INC-ZZZZ here or in the catalog" in sw("status", "INC-ZZZZ").err
    bad = sw("step", "../x", "1.1", "done")
    assert bad.code == 2
    assert "is not an incident id" in bad.err


def test_predictions_come_from_the_systems_drills(tmp_path: Path) -> None:
    since = datetime(2026, 12, 7, 3, 10, tzinfo=UTC)
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    hour = 3600.0
    for n, (system, seconds, days_ago) in enumerate([
        ("smartwatts-db", 1 * hour, 1), ("smartwatts-db", 3.9 * hour, 30),
        ("smartwatts-db", 1.5 * hour, 60),  # median 1.5h, worst 3.9h
        ("api", 5 * hour, 2),  # a 4h RTO
        ("kubernetes", 0.5 * hour, 3),
        ("smartwatts-db", 0.1 * hour, -1),  # after the disaster: not a prediction's
    ]):  # fmt: skip
        result = {"systems": [{"system": system, "stage": "recovery", "rto": {"seconds": seconds}}]}
        catalog.record_drill({"run": f"r{n}", "drill": "d", "kind": "database", "passed": 1,
                              "started_at": since - timedelta(days=days_ago),
                              "result": json.dumps(result)})  # fmt: skip
    catalog.close()
    service = Incidents(Journal(tmp_path / "incidents"),
                        lambda: Catalog.open(f"sqlite:///{tmp_path / 'c.db'}"))  # fmt: skip
    plan = load_plan(SMARTWATTS).plan
    inc = service.declare(plan, str(SMARTWATTS), "data-center-failure", None, since,
                          systems=["smartwatts-db", "api", "kubernetes", "logs"], since=since,
                          commander=None, note=None, rehearsal=False)  # fmt: skip
    now = since + timedelta(hours=1)  # 3h left for the critical ones
    found = predict(inc, now)
    assert found["smartwatts-db"].verdict == AT_RISK  # median fits, worst does not
    assert (found["smartwatts-db"].median_seconds, found["smartwatts-db"].worst_seconds) == (
        1.5 * hour, 3.9 * hour)  # fmt: skip
    assert found["smartwatts-db"].drills == 3
    assert found["smartwatts-db"].last_drilled == since - timedelta(days=1)
    assert found["api"].verdict == WILL_MISS
    assert found["kubernetes"].verdict == ON_TRACK
    assert found["logs"].verdict == NEVER_DRILLED
    assert clock.rfc3339(inc.deadline("logs")) == "2026-12-08T03:10:00Z"
    service.close()


def test_predictions_are_scaled_to_todays_data_and_wal(tmp_path: Path) -> None:
    since = datetime(2026, 12, 7, 3, 10, tzinfo=UTC)
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    phases = {"fetch": 100.0, "rebuild": 500.0, "verify": 100.0, "start": 20.0,
              "replay": 200.0, "validate": 80.0}  # 1000 s in all  # fmt: skip
    result = {"systems": [{"system": "smartwatts-db", "stage": "recovery",
                           "rto": {"seconds": 1000.0}, "phases": phases,
                           "size": {"restored_bytes": 10 << 30, "wal_bytes": 1 << 30}}]}  # fmt: skip
    catalog.record_drill({"run": "r1", "drill": "d", "kind": "database", "passed": 1,
                          "started_at": since - timedelta(days=3),
                          "result": json.dumps(result)})  # fmt: skip
    catalog.close()
    service = Incidents(Journal(tmp_path / "incidents"),
                        lambda: Catalog.open(f"sqlite:///{tmp_path / 'c.db'}"))  # fmt: skip
    # Its recovery phase's window (1-2h) is tighter than its deadline (4h).
    raw = yaml.safe_load(SMARTWATTS.read_text())
    raw["runbooks"]["database-corruption"]["phases"][1]["window"] = "1-2h"
    written = tmp_path / "plan.yaml"
    written.write_text(yaml.safe_dump(raw))
    plan = load_plan(written).plan
    inc = service.declare(plan, str(written), "database-corruption", None, since,
                          systems=None, since=since, commander=None, note=None,
                          rehearsal=False)  # fmt: skip
    unscaled = predict(inc, since)["smartwatts-db"]
    assert (unscaled.median_seconds, unscaled.scaled) == (1000.0, False)
    # Today the base backups hold twice the data and there is 4 times the WAL to replay.
    service.record(inc.id, "sized", "drplan", {"systems": {"smartwatts-db": {
        "restored_bytes": 20 << 30, "wal_bytes": 4 << 30}}}, since)  # fmt: skip
    scaled = predict(service.load(inc.id), since)["smartwatts-db"]
    assert scaled.scaled is True
    assert scaled.median_seconds == 700 * 2 + 200 * 4 + 100  # data x2, WAL x4, the rest as was
    later = predict(service.load(inc.id), since + timedelta(minutes=90))["smartwatts-db"]
    assert later.verdict == ON_TRACK  # 2h30m to its deadline
    assert (later.phase, later.phase_verdict) == ("2 Recovery Steps", WILL_MISS)  # 30m left
    service.close()


def test_before_incident_is_refused_outside_an_incident(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DRPLAN_INCIDENT", raising=False)
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    args = ["restore", "postgres", "smartwatts-db", "--to", "before-incident", "--target-dir",
            str(tmp_path / "x")]  # fmt: skip
    done = run("--plan", str(SMARTWATTS), *args)
    assert done.code == 2
    assert "--to before-incident needs an incident: it is meant for a runbook step" in done.err
    monkeypatch.setenv("DRPLAN_INCIDENT", "INC-ZZZZ")
    done = run("--plan", str(SMARTWATTS), *args)
    assert done.code == 2
    assert "no incident INC-ZZZZ here or in the catalog" in done.err
    assert not (tmp_path / "x").exists()


def test_last_good_needs_a_database_drill_of_the_system(
    run: Run, write_plan: Callable[[dict[str, Any]], Path], plan_data: dict[str, Any]
) -> None:
    plan = write_plan(plan_data)  # its only drill is a full-platform one
    done = run("--plan", str(plan), "restore", "postgres", "db", "--to", "last-good",
               "--target-dir", "/nonexistent/x")  # fmt: skip
    assert done.code == 2
    (line,) = done.err.strip().splitlines()
    assert "--to last-good needs a database drill of db: its validations tell a good point" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "give --target-dir DIR for a copy, or --production to recover into the system's"
             " data_dir"),
        (["--production", "--target-dir", "/x"], "--production and --target-dir exclude each other"),
        (["--production", "--start"], "--start, --force and --tablespace-map are for a copy"),
        (["--production"], "system db has no data_dir in the plan: nothing says where production is"),
    ],
)  # fmt: skip
def test_a_production_restore_is_asked_for_plainly(
    run: Run, write_plan: Callable[[dict[str, Any]], Path], plan_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str,
) -> None:  # fmt: skip
    monkeypatch.delenv("DRPLAN_INCIDENT", raising=False)
    done = run("--plan", str(write_plan(plan_data)), "restore", "postgres", "db", *args)
    assert done.code == 2
    (line,) = done.err.strip().splitlines()
    assert expected in line


def test_an_incident_is_resolved_when_its_systems_are_back_and_closed_after_its_review(
    sw: Any,
) -> None:
    inc = declared(sw, "database-corruption", "--since", SINCE)["id"]
    assert sw("close", inc).code == 24  # not resolved yet
    early = sw("resolve", inc)
    assert early.code == 24
    assert "cannot be resolved: smartwatts-db not recovered" in early.err
    assert "--waive 'SYSTEM=REASON'" in early.err
    assert sw("resolve", inc, "--waive", "smartwatts-db").code == 2  # no reason
    assert sw("resolve", inc, "--waive", "api=not ours").code == 2  # not its system
    done = sw("resolve", inc, "--waive", "smartwatts-db=rebuilt from the replica by hand")
    assert done.code == 0, done.err
    assert sw("resolve", inc, "--waive", "smartwatts-db=again").code == 24

    unreviewed = sw("close", inc)
    assert unreviewed.code == 24
    assert ("review has nothing yet on: Root cause analysis; Recovery procedure"
            " effectiveness; Recovery tool performance; Team skill requirements") in unreviewed.err  # fmt: skip
    assert f"`drplan incident note {inc} --kind root-cause-analysis TEXT`" in unreviewed.err
    bad = sw("note", inc, "x", "--kind", "lessons")
    assert bad.code == 2
    assert "use one of root-cause-analysis, recovery-procedure-effectiveness" in bad.err
    assert sw("note", inc, "fix it", "--kind", "action").code == 2  # an owner is needed
    assert sw("note", inc, "fix it", "--kind", "action", "--owner", "dba").code == 2  # no role
    for kind in ("root-cause-analysis", "recovery-procedure-effectiveness",
                 "recovery-tool-performance", "team-skill-requirements"):  # fmt: skip
        assert (
            sw("note", inc, f"{kind} written", "--kind", kind, "--as", "technical-lead").code == 0
        )
    assert sw("note", inc, "Add a drill of the replica rebuild", "--kind", "action",
              "--owner", "database-team").code == 0  # fmt: skip
    closed = sw("close", inc, "--as", "incident-commander")
    assert closed.code == 0, closed.err
    status = json.loads(sw("status", inc, "--json").out)
    assert status["status"] == "closed"
    assert status["waived"] == {"smartwatts-db": "rebuilt from the replica by hand"}
    assert status["review"]["missing"] == []
    action = status["review"]["notes"][-1]
    assert (action["kind"], action["owner"]) == ("action", "database-team")
    for args in (("note", inc, "late"), ("step", inc, "1.1", "done"), ("resolve", inc)):
        refused = sw(*args)
        assert refused.code == 24, args
        assert f"incident {inc} is closed: its review is done" in refused.err
    assert sw("status").out.strip() == "no open incident"
    lines = sw("timeline", inc).out
    assert "resolved; smartwatts-db waived: rebuilt from the replica by hand" in lines
    assert "Action items (owner database-team): Add a drill of the replica rebuild" in lines


def test_the_review_sets_each_recovery_against_its_objective_and_its_drills(
    sw: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    catalog = Catalog.open(f"sqlite:///{sw.state / 'catalog.db'}")
    for days, seconds in ((41, 600.0), (71, 700.0), (101, 800.0)):  # drilled median 700 s
        result = {"systems": [{"system": "smartwatts-db", "stage": "recovery",
                               "rto": {"seconds": seconds}}]}  # fmt: skip
        catalog.record_drill({
            "run": f"r{days}", "drill": "database-recovery", "kind": "database",
            "started_at": datetime(2026, 12, 7, 3, 0, tzinfo=UTC) - timedelta(days=days),
            "passed": 1, "result": json.dumps(result),
        })  # fmt: skip
    catalog.close()
    inc = declared(sw, "database-corruption", "--since", SINCE)["id"]
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T03:20:00Z")
    assert sw("step", inc, "1.1", "done", "--as", "database-team").code == 0
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T04:50:00Z")  # 1h40m: past phase 1's window
    assert sw("step", inc, "2.1", "done", "--as", "database-team").code == 0
    monkeypatch.setenv("DRPLAN_NOW", "2026-12-07T05:00:00Z")
    assert sw("step", inc, "3.1", "skip").code == 0
    assert sw("resolve", inc, "--waive", "smartwatts-db=restored by hand from a replica").code == 0
    assert sw("note", inc, "An operator ran DELETE", "--kind", "root-cause-analysis").code == 0
    assert sw("note", inc, "Drill last-good monthly", "--kind", "action", "--owner",
              "database-team").code == 0  # fmt: skip

    data = json.loads(sw("report", inc, "--format", "json").out)
    (db,) = data["systems"]
    assert db["drilled_median_seconds"] == 700.0
    assert (db["drills"], db["days_since_drill"]) == (3, 41)
    assert db["waived"] == "restored by hand from a replica"
    phases = {p["number"]: p for p in data["phases"]}
    assert phases[1]["started_seconds"] == 600.0  # the first step, ten minutes in
    assert phases[2]["settled_seconds"] == 6000.0
    assert phases[2]["overran"] is False  # its window runs to 4h
    assert data["review"]["actions"] == [{"text": "Drill last-good monthly",
                                          "owner": "database-team"}]  # fmt: skip
    assert data["review"]["headings"][0] == {"heading": "Root cause analysis",
                                             "notes": ["An operator ran DELETE"]}  # fmt: skip
    assert "smartwatts-db was not recovered by the runbook: restored by hand from a replica" \
        in data["lessons"]  # fmt: skip
    assert data["timeline"][0]["what"].startswith("declared database-corruption")
    md = sw("report", inc).out
    assert "| smartwatts-db | - | 11m40s | 4h00m | - | - | 15m00s | waived: restored by hand" in md
    assert "## Action items" in md
    out = tmp_path / "review.html"
    assert sw("report", inc, "--format", "html", "-o", str(out)).code == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2  # the Gantt chart and the RTO bars
    assert "<script" not in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_restores_in_an_incident_use_the_locations_its_scenario_recovers_from(
    sw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert incident_locations() is None  # in no incident: the system's own locations
    lost = declared(sw, "data-center-failure", "--since", SINCE)["id"]
    corrupt = declared(sw, "database-corruption", "--since", SINCE)["id"]
    monkeypatch.setenv(INCIDENT_ENV, lost)
    assert incident_locations() == ["secondary", "cloud"]  # the data center is gone
    monkeypatch.setenv(INCIDENT_ENV, corrupt)
    assert incident_locations() is None  # the scenario names none: every location

"""Driving a runbook for real: automated steps run in order with the incident in their
environment and their output kept (secrets redacted); a step that hangs is killed with
its whole process group at its timeout; a failure stops for the commander; an approval
gate waits for its role; a driver killed mid-step never has the step re-run silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.liveness import alive
from testbed.plans import clean_plan
from tests.conftest import shifted, wait_until
from tests.unit.incidents.conftest import SECRET, SINCE


def test_automated_steps_run_in_order_with_the_incident_in_their_environment(
    incident: Any, tmp_path: Path
) -> None:
    out = tmp_path / "seen"
    inc = incident.declare(
        {"title": "Record context", "run": f'echo "$DRPLAN_INCIDENT $DRPLAN_SCENARIO'
         f' $DRPLAN_SINCE $DRPLAN_TARGET_SYSTEM $DRPLAN_RECOVERY_POINT" > {out}'},
        {"title": "Talk", "run": 'echo "connecting with $TEST_DB_PASSWORD"; echo s3://ak:sk@h/b'},
        {"title": "Check by hand", "owner": "dba"},
    )  # fmt: skip
    done = incident.cli("run", inc)
    assert done.code == 0, done.err
    assert f"waiting for step 1.3 Check by hand (dba): record it with `drplan incident step {inc}" \
        " 1.3 done`" in done.out  # fmt: skip
    assert out.read_text().split() == [inc, "db-loss", SINCE, "db", SINCE]
    steps = incident.steps(inc)
    assert [steps[s]["status"] for s in ("1.1", "1.2", "1.3")] == ["done", "done", "pending"]
    assert steps["1.2"]["exit_code"] == 0
    assert steps["1.2"]["output"] == "connecting with ${TEST_DB_PASSWORD}\ns3://***@h/b\n"
    timeline = incident.cli("timeline", inc, "--json").out
    assert SECRET not in timeline
    assert SECRET not in (tmp_path / "state" / "catalog.db").read_bytes().decode("latin-1")
    kinds = [json.loads(line)["kind"] for line in timeline.splitlines()]
    assert kinds == ["declared", "step_started", "step", "step_started", "step"]
    assert incident.cli("verify", inc).code == 0


def test_a_hanging_step_is_killed_with_its_process_group_at_its_timeout(
    incident: Any, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    inc = incident.declare(
        {"title": "Hang", "timeout": "1s", "run": f"sleep 300 & echo $! > {pids}; wait"},
        {"title": "After", "run": "true"},
    )  # fmt: skip
    started = time.monotonic()
    done = incident.cli("run", inc)
    assert time.monotonic() - started < 30
    assert done.code == 1
    assert f"step 1.1 (Hang) failed: the commander decides: `drplan incident run {inc} --retry" \
        " 1.1`" in done.err  # fmt: skip
    child = int(pids.read_text())
    wait_until(lambda: not alive(child), "the step's child to be gone")
    step = incident.steps(inc)["1.1"]
    assert (step["status"], step["timed_out"], step["exit_code"]) == ("failed", True, None)
    assert step["note"] == "stopped after its timeout of 1s"
    assert incident.steps(inc)["1.2"]["status"] == "pending"  # the commander decides first


def test_a_failed_step_waits_for_the_commander_who_may_retry_or_settle_it(
    incident: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "fixed"
    inc = incident.declare(
        {"title": "Flaky", "run": f"test -e {flag} || {{ echo 'no flag yet' >&2; exit 3; }}"},
        {"title": "Then", "run": "true"},
    )  # fmt: skip
    done = incident.cli("run", inc)
    assert done.code == 1
    step = incident.steps(inc)["1.1"]
    assert (step["status"], step["exit_code"], step["note"]) == (
        "failed",
        3,
        "exited 3: no flag yet",
    )
    assert incident.cli("run", inc).code == 1  # not run again on its own
    assert incident.steps(inc)["1.1"]["attempts"] == 1
    flag.write_text("")
    done = incident.cli("run", inc, "--retry", "1.1")
    assert done.code == 0, done.err
    assert "every step is settled" in done.out
    assert incident.steps(inc)["1.1"]["attempts"] == 2
    # Settled by hand instead: a failed step may be recorded done or skipped.
    inc = incident.declare({"title": "Broken", "run": "exit 1"}, {"title": "Then", "run": "true"})
    incident.cli("run", inc)
    assert incident.cli("step", inc, "1.1", "skip", "--note", "done by hand").code == 0
    assert incident.cli("run", inc).code == 0
    assert incident.steps(inc)["1.2"]["status"] == "done"


def test_an_approval_gate_waits_for_its_role(incident: Any, tmp_path: Path) -> None:
    wrote = tmp_path / "production-write"
    inc = incident.declare({"title": "Write production", "approve": "dba",
                            "run": f"touch {wrote}"})  # fmt: skip
    done = incident.cli("run", inc)
    assert done.code == 0
    assert f"waits for approval by dba: `drplan incident approve {inc} 1.1 --as dba`" in done.out
    assert not wrote.exists()
    refused = incident.cli("approve", inc, "1.1", "--as", "nobody")
    assert refused.code == 2
    assert "no role 'nobody'" in refused.err or "approved by dba or ic" in refused.err
    assert incident.cli("approve", inc, "1.1").code == 2  # no role: not enough
    assert incident.cli("approve", inc, "1.1", "--as", "dba").code == 0
    assert incident.cli("approve", inc, "1.1", "--as", "ic").code == 24  # approved already
    assert incident.cli("run", inc).code == 0
    assert wrote.exists()
    assert incident.steps(inc)["1.1"]["approved_by"].startswith("dba (")


def test_approval_is_refused_for_a_step_without_a_gate_and_from_the_wrong_role(
    incident: Any,
) -> None:
    inc = incident.declare({"title": "Free", "run": "true"},
                           {"title": "Gated", "approve": "dba", "run": "true"})  # fmt: skip
    assert "needs no approval" in incident.cli("approve", inc, "1.1", "--as", "ic").err
    refused = incident.cli("approve", inc, "1.2", "--as", "ops")
    assert refused.code == 2
    assert "step 1.2 is approved by dba or ic, not ops; pass --as dba" in refused.err


@pytest.mark.parametrize("rerun", ["ask", "safe"])
def test_a_driver_killed_mid_step_never_has_it_rerun_silently(
    incident: Any, tmp_path: Path, rerun: str
) -> None:
    runs = tmp_path / "runs"
    inc = incident.declare({"title": "Long", "rerun": rerun,
                            "run": f"echo run >> {runs}; sleep 2"})  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    driver = subprocess.Popen([sys.executable, "-m", "drplan", "incident", "run", inc], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    wait_until(runs.exists, "the step to start")
    os.killpg(driver.pid, signal.SIGKILL)  # the step leads a group of its own: it goes on
    driver.wait()
    running = incident.steps(inc)["1.1"]["running"]
    assert running is not None
    held = incident.cli("run", inc)
    assert held.code == 0
    assert f"step 1.1 (Long) is running: process {running['pid']}" in held.out
    wait_until(lambda: not alive(running["pid"]), "the orphaned step to end")
    done = incident.cli("run", inc)
    lines = incident.cli("timeline", inc).out
    assert "step 1.1 interrupted: its process" in lines
    if rerun == "ask":
        assert done.code == 1
        assert "was interrupted (the process driving it died) and its rerun is `ask`" in done.err
        assert runs.read_text() == "run\n"
        done = incident.cli("run", inc, "--retry", "1.1")
    assert done.code == 0, done.err
    assert runs.read_text() == "run\nrun\n"
    assert incident.steps(inc)["1.1"]["status"] == "done"
    assert incident.cli("verify", inc).code == 0


def test_an_action_runs_drplan_against_the_plan_as_declared(incident: Any) -> None:
    inc = incident.declare({"title": "Show plan", "action": "plan validate --no-env"})
    raw = yaml.safe_load(incident.plan.read_text())
    raw["systems"]["db"]["kind"] = "broken"  # the plan on disk is now invalid
    incident.plan.write_text(yaml.safe_dump(raw))
    done = incident.cli("run", inc)
    assert done.code == 0, done.err
    step = incident.steps(inc)["1.1"]
    assert (step["status"], step["exit_code"]) == ("done", 0)
    assert f"{inc}.plan.yaml" in step["output"]  # the frozen copy was validated
    unchanged = incident.declare({"title": "Show plan", "action": "plan validate --no-env"})
    assert incident.cli("run", unchanged).code == 0
    assert str(incident.plan) in incident.steps(unchanged)["1.1"]["output"]  # its own file


def test_a_recovering_step_stops_the_clock_only_once_the_checks_pass(
    incident: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = tmp_path / "healthy"
    raw = clean_plan()
    raw["drills"]["web-smoke"] = {"kind": "service", "systems": ["web"], "validations": {
        "commands": [{"name": "web answers", "run": f"test -e {healthy}"}]}}  # fmt: skip
    deploy = {"title": "Deploy web", "recovers": ["web"], "unattended": True, "run": "true"}
    inc = incident.declare(deploy, plan=raw)
    monkeypatch.setenv("DRPLAN_NOW", shifted(SINCE, 60))  # an hour after the disaster
    assert incident.cli("run", inc).code == 0
    status = json.loads(incident.cli("status", inc, "--json").out)
    web = next(s for s in status["clock"]["systems"] if s["system"] == "web")
    assert web["recovered"] is None  # the step succeeded, the check did not
    assert web["unproven"]["validations"][0]["detail"].startswith("exit code 1")
    assert "web not proven recovered: web answers: exit code 1" in incident.cli("timeline", inc).out
    healthy.write_text("")
    inc = incident.declare(deploy, plan=raw)
    assert incident.cli("run", inc).code == 0
    status = json.loads(incident.cli("status", inc, "--json").out)
    web = next(s for s in status["clock"]["systems"] if s["system"] == "web")
    assert web["recovered"]["rto_seconds"] == 3600.0  # checked at 04:10, disaster at 03:10
    assert web["recovered"]["rto_met"] is True  # web is important: 8h
    assert web["recovered"]["rpo_seconds"] is None  # a files system cannot say
    assert [v["outcome"] for v in web["recovered"]["validations"]] == ["passed"]
    assert "recovered: RTO 1h00m (met), RPO unknown" in incident.cli("status", inc).out


def test_a_step_recorded_by_hand_stops_the_clock_of_a_system_without_checks(
    incident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inc = incident.declare({"title": "Rebuild web", "owner": "dba", "recovers": ["web"]})
    monkeypatch.setenv("DRPLAN_NOW", shifted(SINCE, 30))
    done = incident.cli("step", inc, "1.1", "done", "--as", "dba")
    assert done.code == 0, done.err
    assert "web recovered and checked: RTO 1800s, RPO unknown (step 1.1)" in done.out
    status = json.loads(incident.cli("status", inc, "--json").out)
    web = next(s for s in status["clock"]["systems"] if s["system"] == "web")
    assert web["recovered"]["note"].startswith("the plan has no checks for it")
    db = next(s for s in status["clock"]["systems"] if s["system"] == "db")
    assert db["recovered"] is None  # not this step's


def test_every_open_incident_is_driven_as_serve_does(incident: Any, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    first = incident.declare({"title": "Mark", "run": f"echo one >> {marks}"},
                             {"title": "Then by hand", "owner": "dba"})  # fmt: skip
    second = incident.declare({"title": "Mark", "run": f"echo two >> {marks}"})
    done = incident.cli("run", "--open", "--json")
    assert done.code == 0, done.err
    halts = {h["incident"]: h for h in json.loads(done.out)["incidents"]}
    assert (halts[first]["reason"], halts[first]["step"]) == ("manual", "1.2")
    assert halts[second]["reason"] == "finished"
    assert sorted(marks.read_text().split()) == ["one", "two"]
    again = incident.cli("run", "--open", "--json")  # nothing runs twice
    assert again.code == 0
    assert sorted(marks.read_text().split()) == ["one", "two"]
    assert incident.cli("run").code == 2  # neither an incident nor --open
    assert incident.cli("run", first, "--open").code == 2


def test_a_steps_end_is_seen_the_moment_it_exits_not_a_poll_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The clock a recovering step stops is read when the step ends: a long interval
    between looks at it (here 10 s) must not be added to the recovery it measures."""
    from drplan.incidents import execute as module  # noqa: PLC0415

    monkeypatch.setattr(module, "POLL", 10.0)
    looks = []
    started = time.monotonic()
    done = module.execute(["/bin/sh", "-c", "sleep 0.3; echo restored"], dict(os.environ), 60,
                          list, meanwhile=lambda: looks.append(time.monotonic()))  # fmt: skip
    assert (done.exit_code, done.output.strip()) == (0, "restored")
    assert time.monotonic() - started < 3.0, "the step's end waited for the next look"
    assert done.seconds < 3.0
    assert looks  # the caller's work went on while it ran

"""An incident's runbook recovering a real PostgreSQL 18 for real: a live insert stream
with WAL archived by drplan, rows deleted at T, the incident declared with --since T;
after the commander's approval its action restores `--to before-incident`, and the
copy holds every row committed before T and none after."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from testbed.plans import local_only
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import free_port, give_to_server
from tests.integration.test_postgres_pitr import (  # noqa: F401 - fixtures
    Archived,
    Stream,
    archived,
    restored_ids,
    stop_restored,
    stream,
    switch_and_wait_archived,
)

Run = Callable[..., Result]


def approved_restore(
    run: Run,
    archived: Archived,  # noqa: F811 - the fixture's value, passed on
    plan: dict[str, Any],
    action: str,
    since: datetime,
    target: Path | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The runbook's step 2.1 given ``action`` under the commander's approval, an incident
    declared with --since ``since``, phase 1 done, the step approved and run: the
    incident's id, `incident status`, and the step as it shows it (done, exit 0). With
    ``target``: nothing is written there before the approval."""
    plan["runbooks"]["rb"]["phases"][1]["steps"][0].update(
        {"action": action, "approve": "ic", "timeout": "10m"}
    )
    archived.plan.write_text(yaml.safe_dump(plan))
    declared = run("incident", "declare", "db-loss", "--systems", "db", "--since",
                   since.isoformat(timespec="microseconds"), "--json")  # fmt: skip
    assert declared.code == 0, declared.err
    inc = json.loads(declared.out)["id"]
    assert run("incident", "step", inc, "1.1", "done", "--as", "ic").code == 0
    waiting = run("incident", "run", inc)
    assert waiting.code == 0, waiting.err
    assert "waits for approval by ic" in waiting.out
    if target is not None:
        assert not target.exists()  # nothing written before the approval
    assert run("incident", "approve", inc, "2.1", "--as", "ic").code == 0
    done = run("incident", "run", inc)
    assert done.code == 0, done.err + done.out
    status = json.loads(run("incident", "status", inc, "--json").out)
    step = status["phases"][1]["steps"][0]
    assert (step["status"], step["exit_code"]) == ("done", 0), step["output"]
    return inc, status, step


def test_the_runbook_restores_to_just_before_the_disaster_moment(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
) -> None:
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(30)
    # T: right after a commit returned; the next insert commits after it.
    last_before, at = stream.committed[-1]
    since = datetime.fromtimestamp(at, UTC)
    archived.cluster.sql("delete from readings where id <= 10")  # the disaster, after T
    stream.wait_for(30)
    stream.finish()
    switch_and_wait_archived(archived.cluster)

    target = pg_scratch / "recovered"
    give_to_server(pg_scratch)
    port = free_port()
    plan = local_only(yaml.safe_load(archived.plan.read_text()))
    action = (f"restore postgres db --to before-incident --target-dir {target} --start"
              f" --port {port} --password-file {archived.password_file} --json")  # fmt: skip
    inc, _, step = approved_restore(run, archived, plan, action, since, target)
    try:
        restored = json.loads(step["output"])
        assert restored["to"] == f"just before {since.strftime('%Y-%m-%d %H:%M:%S.%f')}+00"
        ids = restored_ids(port, archived.cluster.password)
        expected = [i for i, _ in stream.committed if i <= last_before]
        assert ids[:10] == list(range(1, 11))  # the deleted rows are back
        assert ids == expected  # every row committed before T, none after
        assert clock.parse_rfc3339(restored["reached"]["last_transaction"]) < since
    finally:
        stop_restored(archived.cluster, target)
    assert run("incident", "verify", inc).code == 0


def test_last_good_finds_the_moment_of_the_damage_to_the_second(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
) -> None:
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(500)  # some seconds of inserts, each its own commit
    before_damage = datetime.now(UTC)
    archived.cluster.sql("delete from readings where id <= 10")  # the damage
    after_damage = datetime.now(UTC)
    stream.wait_for(300)
    stream.finish()
    switch_and_wait_archived(archived.cluster)

    scratch = archived.repo.parent / "drills"
    scratch.mkdir()
    give_to_server(scratch)
    plan = local_only(yaml.safe_load(archived.plan.read_text()))
    plan["data_classes"]["database"]["locations"] = ["local"]
    plan["drills"]["db-check"] = {
        "kind": "database", "systems": ["db"], "from_location": "local",
        "scratch_dir": str(scratch),
        "validations": {"amcheck": False, "checksums": False, "sql": [
            {"name": "no reading missing", "query": "select count(*) = max(id) from readings"},
        ]},
    }  # fmt: skip
    archived.plan.write_text(yaml.safe_dump(plan))
    target = pg_scratch / "last-good"
    port = free_port()
    done = run("restore", "postgres", "db", "--to", "last-good", "--target-dir", str(target),
               "--start", "--port", str(port), "--password-file", str(archived.password_file),
               "--json")  # fmt: skip
    assert done.code == 0, done.err
    try:
        result = json.loads(done.out)
        search = result["last_good"]
        found = datetime.strptime(result["to"], "%Y-%m-%d %H:%M:%S.%f+00").replace(tzinfo=UTC)
        # good at the point found, bad one second later: the damage lies in that second
        assert found < after_damage
        assert found + timedelta(seconds=1) >= before_damage
        assert len(search["probes"]) <= search["limit"]
        start, end = (datetime.fromisoformat(w) for w in search["window"])
        window = (end - start).total_seconds()
        assert search["limit"] == 2 + math.ceil(math.log2(max(window, 1)))
        assert [p["good"] for p in search["probes"][:2]] == [False, True]  # newest, oldest
        ids = restored_ids(port, archived.cluster.password)
        assert ids[:10] == list(range(1, 11))  # before the damage
        assert ids == list(range(1, len(ids) + 1))  # and no reading missing
        # to the second: every row committed a second before the damage is there
        second_before = (before_damage - timedelta(seconds=1)).timestamp()
        assert len(ids) >= sum(1 for _, at in stream.committed if at <= second_before) > 400
    finally:
        stop_restored(archived.cluster, target)
    assert not any(scratch.iterdir())  # every scratch recovery torn down


def test_an_incident_restore_switches_the_recovered_cluster_into_production(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
) -> None:
    cluster = archived.cluster
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(30)
    last_before, at = stream.committed[-1]
    since = datetime.fromtimestamp(at, UTC)
    cluster.sql("delete from readings where id <= 10")  # the disaster, after T
    stream.wait_for(30)
    stream.finish()
    switch_and_wait_archived(cluster)
    plan = local_only(yaml.safe_load(archived.plan.read_text()))
    plan["systems"]["db"]["data_dir"] = str(cluster.data_dir)
    plan["drills"]["db-check"] = {"kind": "database", "systems": ["db"], "validations": {
        "sql": [{"name": "no reading missing", "query": "select count(*) = max(id) from readings"}],
    }}  # fmt: skip
    action = (
        f"restore postgres db --to before-incident --password-file {archived.password_file} --json"
    )
    inc, status, step = approved_restore(run, archived, plan, action, since)
    switched = json.loads(step["output"])
    damaged = Path(switched["damaged"])
    try:
        assert switched["data_dir"] == str(cluster.data_dir.resolve())
        assert damaged.parent == cluster.data_dir.resolve().parent
        assert damaged.name.startswith(f"{cluster.data_dir.name}.damaged-")
        assert (damaged / "PG_VERSION").exists()  # kept as evidence, whole
        # Production answers on its own port and connection, with the rows before T.
        ids = [int(str(r[0])) for r in cluster.sql("select id from readings order by id")]
        assert ids == [i for i, _ in stream.committed if i <= last_before]
        assert ids[:10] == list(range(1, 11))  # the deleted rows are back
        assert cluster.sql("select pg_is_in_recovery()")[0][0] is False
        assert switched["reached"]["timeline"] >= 2  # a new history, not the damaged one's
        # ... and it archives again, on its new timeline.
        cluster.sql("insert into readings (meter, kwh) values (8, 1)")
        segment = switch_and_wait_archived(cluster)
        assert segment.startswith(f"{switched['reached']['timeline']:08X}")
        # The clock stopped once production's checks passed: RTO from the disaster moment,
        # RPO from the last commit replayed, the one just before T.
        (db,) = status["clock"]["systems"]
        measured = db["recovered"]
        assert [(v["name"], v["outcome"]) for v in measured["validations"]] == [
            ("in production", "passed"), ("no reading missing", "passed")]  # fmt: skip
        stopped = clock.parse_rfc3339(measured["at"])
        assert measured["rto_seconds"] == pytest.approx((stopped - since).total_seconds(), abs=1)
        newest = datetime.fromisoformat(measured["newest"].replace("Z", "+00:00"))
        assert newest < since
        assert measured["rpo_seconds"] == pytest.approx((since - newest).total_seconds(), abs=1e-3)
        assert 0 <= measured["rpo_seconds"] < 1  # a commit every 10 ms before T
        assert measured["rpo_met"] is True
    finally:
        shutil.rmtree(damaged, ignore_errors=True)
    assert run("incident", "verify", inc).code == 0


def test_a_rehearsal_recovers_into_a_stand_in_and_leaves_production_alone(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
) -> None:
    cluster = archived.cluster
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(30)
    scratch = archived.repo.parent / "drills"
    scratch.mkdir()
    give_to_server(scratch)
    plan = local_only(yaml.safe_load(archived.plan.read_text()))
    plan["systems"]["db"]["data_dir"] = str(cluster.data_dir)
    plan["drills"]["db-check"] = {"kind": "database", "systems": ["db"],
                                  "scratch_dir": str(scratch), "validations": {"sql": [
        {"name": "no reading missing", "query": "select count(*) = max(id) from readings"}]}}  # fmt: skip
    plan["runbooks"]["rb"]["phases"][1]["steps"][0].update({
        "approve": "ic", "timeout": "10m",
        "action": f"restore postgres db --to before-incident --password-file {archived.password_file}",
    })  # fmt: skip
    plan["runbooks"]["rb"]["phases"][1]["steps"].append(
        {"title": "Look at it", "run": 'psql "$DRPLAN_TARGET" -Atc "select count(*) > 0 from readings"'}
    )  # fmt: skip
    archived.plan.write_text(yaml.safe_dump(plan))
    production_pid = (cluster.data_dir / "postmaster.pid").read_text().split()[0]
    declared = run("incident", "declare", "db-loss", "--systems", "db", "--rehearsal", "--json")
    assert declared.code == 0, declared.err
    inc = json.loads(declared.out)["id"]
    stream.wait_for(10)
    switch_and_wait_archived(cluster)  # the WAL up to the declared moment
    assert run("incident", "step", inc, "1.1", "done").code == 0
    assert run("incident", "approve", inc, "2.1", "--as", "ic").code == 0
    done = run("incident", "run", inc)
    assert done.code == 0, done.err + done.out
    status = json.loads(run("incident", "status", inc, "--json").out)
    steps = status["phases"][1]["steps"]
    assert [s["status"] for s in steps] == ["done", "done"], steps
    assert "production is untouched; db's stand-in runs on 127.0.0.1:" in steps[0]["output"]
    assert steps[1]["output"].strip() == "t"  # told the stand-in as its target
    (db,) = status["clock"]["systems"]
    measured = db["recovered"]
    assert [(v["name"], v["outcome"]) for v in measured["validations"]] == [
        ("stand-in", "passed"), ("no reading missing", "passed")]  # fmt: skip
    assert measured["rpo_seconds"] is not None
    assert measured["rpo_seconds"] < 5
    # Production: the same server, never stopped, nothing moved aside, still taking writes.
    assert (cluster.data_dir / "postmaster.pid").read_text().split()[0] == production_pid
    assert not list(cluster.data_dir.parent.glob(f"{cluster.data_dir.name}.damaged-*"))
    assert cluster.sql("select pg_is_in_recovery()")[0][0] is False
    stream.finish()
    [home] = (scratch / "rehearsals").iterdir()
    assert home.name == inc
    assert (home / "db" / "data" / "postmaster.pid").exists()

    resolved = run("incident", "resolve", inc)
    assert resolved.code == 0, resolved.err
    assert f"rehearsal recorded as drill rehearsal-db-loss (run {inc}): passed" in resolved.out
    assert not (scratch / "rehearsals" / inc).exists()  # the stand-in torn down
    drills = json.loads(run("drill", "report", "--format", "json").out)
    (row,) = [r for r in drills["runs"] if r["run"] == inc]
    assert (row["kind"], row["passed"]) == ("rehearsal", True)
    assert row["rto_seconds"] == pytest.approx(measured["rto_seconds"], abs=1e-3)
    assert run("incident", "verify", inc).code == 0


def test_a_data_center_failure_is_recovered_from_the_offsite_copy_at_the_recovery_site(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The site is lost at T with everything on it: production, the primary location, the
    incident's journal and catalog, and the process driving the runbook (kill -9 halfway).
    At the recovery site the incident is taken over from the off-site copy of its
    timeline, and the database comes back from the off-site location alone, to just
    before T, on the service's address, where the checks stop its clock."""
    cluster = archived.cluster
    offsite = pg_scratch / "offsite"
    site_a, site_b = tmp_path / "site-a", tmp_path / "site-b"
    provisioned, at_site_b = tmp_path / "provisioning", tmp_path / "at-the-recovery-site"
    target = pg_scratch / "recovered"
    give_to_server(pg_scratch)
    plan = yaml.safe_load(archived.plan.read_text())
    plan["locations"] = {"local": plan["locations"]["local"],
                         "offsite": {"role": "secondary", "kind": "local", "path": str(offsite)}}  # fmt: skip
    plan["data_classes"]["database"]["locations"] = ["local", "offsite"]
    for job in plan["jobs"].values():
        job["locations"] = ["local", "offsite"]
    plan["scenarios"]["db-loss"]["recover_from"] = ["offsite"]
    plan["drills"]["db-check"] = {"kind": "database", "systems": ["db"], "validations": {
        "sql": [{"name": "no reading missing", "query": "select count(*) = max(id) from readings"}],
    }}  # fmt: skip
    plan["runbooks"]["rb"]["phases"][1]["steps"] = [
        {"title": "Provision the recovery site", "rerun": "safe", "unattended": True,
         "run": f"touch {provisioned}; test -e {at_site_b} || sleep 60"},
        {"title": "Restore db at the recovery site", "approve": "ic", "timeout": "10m",
         "recovers": ["db"], "rerun": "safe",
         "action": f"restore postgres db --to before-incident --target-dir {target} --force"
                   f" --start --port {cluster.port} --password-file {archived.password_file}"
                   " --json"},
    ]  # fmt: skip
    archived.plan.write_text(yaml.safe_dump(plan))
    copied = run("copy", "--from", "local", "--to", "offsite")  # a replica, off site
    assert copied.code == 0, copied.err
    give_to_server(offsite)
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(site_a))

    stream.wait_for(20)
    assert run("backup", "db-full").code == 0  # written to local, copied off site
    stream.wait_for(30)
    last_before, at = stream.committed[-1]
    since = datetime.fromtimestamp(at, UTC)  # T: the site is lost right after this commit
    stream.wait_for(30)
    stream.finish()
    switch_and_wait_archived(cluster)  # what the archive had shipped off site by then
    declared = run("incident", "declare", "db-loss", "--systems", "db", "--since",
                   since.isoformat(timespec="microseconds"), "--json")  # fmt: skip
    assert declared.code == 0, declared.err
    inc = json.loads(declared.out)["id"]
    assert run("incident", "step", inc, "1.1", "done", "--as", "ic").code == 0

    # Halfway through the runbook the site goes: the driver (kill -9) and its step...
    driver = subprocess.Popen([sys.executable, "-m", "drplan", "incident", "run", inc],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    wait_until(provisioned.exists, "the recovery site's provisioning to start")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    step = json.loads(run("incident", "status", inc, "--json").out)["phases"][1]["steps"][0]
    os.killpg(step["running"]["pid"], signal.SIGKILL)
    # ... production, the incident's journal and catalog, and the primary location.
    subprocess.run([*cluster.run_as, str(cluster.bin_dir / "pg_ctl"), "-D",
                    str(cluster.data_dir), "stop", "-m", "immediate"],
                   capture_output=True, check=True, timeout=60)  # fmt: skip
    shutil.rmtree(site_a)
    shutil.rmtree(archived.repo)
    at_site_b.touch()

    monkeypatch.setenv("DRPLAN_STATE_DIR", str(site_b))
    taken = run("incident", "resume", inc, "--from", "offsite")
    assert taken.code == 0, taken.err
    waiting = run("incident", "run", inc)  # provisioning again (safe), then the gate
    assert waiting.code == 0, waiting.err
    assert "waits for approval by ic" in waiting.out
    assert run("incident", "approve", inc, "2.2", "--as", "ic").code == 0
    done = run("incident", "run", inc)
    assert done.code == 0, done.err + done.out
    try:
        status = json.loads(run("incident", "status", inc, "--json").out)
        restore = status["phases"][1]["steps"][1]
        assert (restore["status"], restore["exit_code"]) == ("done", 0), restore["output"]
        restored = json.loads(restore["output"])
        assert restored["location"] == "offsite"  # the primary is gone
        assert restored["note"] is None
        ids = restored_ids(cluster.port, cluster.password)
        assert ids == [i for i, _ in stream.committed if i <= last_before]  # to just before T
        (db,) = status["clock"]["systems"]
        measured = db["recovered"]
        assert [(v["name"], v["outcome"]) for v in measured["validations"]] == [
            ("in production", "passed"), ("no reading missing", "passed")]  # fmt: skip
        assert 0 <= measured["rpo_seconds"] < 1
        assert measured["rto_seconds"] > 0
    finally:
        stop_restored(cluster, target)
    assert run("incident", "verify", inc).code == 0
    report = json.loads(run("incident", "report", inc, "--format", "json").out)
    (system,) = report["systems"]
    assert system["rto_seconds"] == pytest.approx(measured["rto_seconds"])
    assert system["rto_met"] is True

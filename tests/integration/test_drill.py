"""Drills: a database recovered into a scratch target while the source goes on taking
inserts, validated, and measured against the plan's RTO and RPO; the result recorded in
the catalog and as evidence; the scratch target torn down."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import namedtuple
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.etcd import Etcd
from testbed.gitserver import GitServer, fast_import
from testbed.registry import Registry, push_image, random_layer
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import give_to_server
from tests.fixtures.registry import NewRegistry
from tests.integration.test_postgres_pitr import (  # the fixtures, by name
    Archived,
    Stream,
    archived,  # noqa: F401
    stream,  # noqa: F401
    switch_and_wait_archived,
)

Run = Callable[..., Result]
Usage = namedtuple("Usage", "total used free")  # as shutil.disk_usage answers


def drill_plan(source: Archived, scratch: Path, **drill: Any) -> None:
    plan = yaml.safe_load(source.plan.read_text())
    plan["data_classes"]["database"]["locations"] = ["local"]
    plan["drills"] = {"monthly-database": {
        "kind": "database", "systems": ["db"], "schedule": "0 3 1 * *",
        "from_location": "local", "scratch_dir": str(scratch), **drill,
    }}  # fmt: skip
    plan["drills"]["monthly-database"] = {
        k: v for k, v in plan["drills"]["monthly-database"].items() if v is not None
    }
    source.plan.write_text(yaml.safe_dump(plan))


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))  # catalog, evidence


@pytest.fixture
def scratch(archived: Archived) -> Path:  # noqa: F811
    place = archived.repo.parent / "drills"
    place.mkdir()
    give_to_server(place)
    return place


def test_a_database_drill_recovers_validates_and_measures_rto_and_rpo(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    scratch: Path,
) -> None:
    cluster = archived.cluster
    cluster.sql("alter system set archive_timeout = '1s'")  # a segment a second under load
    cluster.sql("select pg_reload_conf()")
    cluster.sql("create table meters (id int primary key, site text);"
                " insert into meters select i, 'site-' || i % 7 from generate_series(1, 100) i")  # fmt: skip
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(100)  # WAL after the base backup: the drill replays it
    drill_plan(archived, scratch, validations={
        "tables": [{"table": "public.meters"},
                   {"table": "readings", "where": "at < '{disaster}'::timestamptz - interval '5 seconds'"}],
        "sql": [{"name": "readings up to the disaster",
                 "query": "select count(*) > 0 from readings"
                          " where at > '{point}'::timestamptz - interval '1 minute'"}],
        "commands": [{"name": "smoke test",
                      "run": f"{cluster.bin_dir}/psql -tAc 'select count(*) from meters' | grep -qx 100"}],
    })  # fmt: skip

    done = run("drill", "run", "monthly-database", "--json")
    assert done.code == 0, done.out + done.err
    result = json.loads(done.out)
    assert result["passed"] is True, result["failures"]
    (system,) = result["systems"]
    assert list(system["phases"]) == ["fetch", "verify", "start", "replay", "validate"]
    assert 0 < system["rto"]["seconds"] < 120
    assert system["rto"]["met"] is True
    assert system["rto"]["objective_seconds"] == 4 * 3600
    assert 0 <= system["rpo"]["seconds"] < 15  # seconds of data lost, not the backup's age
    assert system["rpo"]["met"] is True
    assert system["reached"]["last_transaction"] is not None
    outcomes = {v["name"]: v["outcome"] for v in system["validations"]}
    assert outcomes == {
        "pg_verifybackup": "passed", "pg_amcheck": "passed", "table public.meters": "passed",
        "table readings": "passed", "readings up to the disaster": "passed",
        "smoke test": "passed", "pg_checksums": "passed",
    }  # fmt: skip
    assert next(v for v in system["validations"] if v["name"] == "table public.meters")[
        "detail"] == "100 rows, same checksum as the source"  # fmt: skip

    evidence = Path(result["evidence"])
    assert hashlib.sha256(evidence.read_bytes()).hexdigest() == result["sha256"]
    assert evidence.with_name(evidence.name + ".sha256").read_text() == (
        f"{result['sha256']}  {evidence.name}\n"
    )
    assert json.loads(evidence.read_text())["run"] == result["run"]
    assert list(scratch.iterdir()) == []  # torn down
    listed = json.loads(run("drill", "list", "--json").out)
    assert listed[0]["last_run"]["passed"] is True
    assert listed[0]["last_run"]["evidence"] == str(evidence)
    sentinel = cluster.sql("select run from drplan.drill_sentinel")
    assert sentinel == [(result["run"],)]
    stream.finish()

    # The report and the KPIs count it.
    kpis = json.loads(run("report", "--format", "json").out)["kpis"]
    assert kpis["30d"]["all"]["recoveries"] == 1
    assert kpis["30d"]["tier:critical"]["within_rto"] == 1.0
    assert kpis["30d"]["class:database"]["integrity"] == 1.0
    md = run("drill", "report").out
    assert "| 30d | all | 1 | 100% | 100% | 100% | yes |" in md
    assert f"(sha256 {result['sha256'][:12]})" in md


def scratch_servers(scratch: Path) -> list[str]:
    """Command lines of processes running on a scratch data directory."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(scratch) in cmdline and "postgres" in cmdline:
            found.append(cmdline)
    return found


def test_drills_that_go_wrong_fail_named_and_leave_nothing_behind(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    scratch: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    after_base = []  # two segments archived after the base backup
    for _ in range(2):
        stream.wait_for(20)
        after_base.append(switch_and_wait_archived(archived.cluster))
    stream.finish()

    def drill(**settings: Any) -> tuple[Result, dict[str, Any]]:
        drill_plan(archived, scratch, **settings)
        done = run("drill", "run", "monthly-database", "--json")
        assert list(scratch.iterdir()) == []  # torn down, whatever happened
        return done, json.loads(done.out) if done.out.strip() else {}

    # A validation query that errors: that check fails, the others still run.
    done, result = drill(validations={"sql": [
        {"name": "broken check", "query": "select count(*) > 0 from no_such_table"}]})  # fmt: skip
    assert done.code == 21, done.err
    checks = {v["name"]: v for v in result["systems"][0]["validations"]}
    assert checks["broken check"]["outcome"] == "failed"
    assert 'relation "no_such_table" does not exist' in checks["broken check"]["detail"]
    assert checks["pg_amcheck"]["outcome"] == "passed"
    assert done.err.strip().startswith("drplan: drill monthly-database did not pass:")
    assert len(done.err.strip().splitlines()) == 1

    # Past its budget: stopped where it was, torn down, a failure against the RTO.
    done, result = drill(budget="1s", validations={"commands": [
        {"name": "a smoke test slower than the budget", "run": "sleep 30"}]})  # fmt: skip
    assert done.code == 21
    assert "ran past its budget of 0:00:01" in " ".join(result["failures"])

    # Another drill of the same system holds its lease: refused, nothing started.
    from drplan.catalog.paths import default_url  # noqa: PLC0415
    from drplan.catalog.store import Catalog  # noqa: PLC0415
    from drplan.clock import now  # noqa: PLC0415

    store = Catalog.open(default_url())
    assert store.acquire("drill:db", "elsewhere:1:x", now(), now() + timedelta(minutes=5))
    done, _ = drill()
    assert done.code == 22
    assert "another drill of db is running" in done.err
    store.release("drill:db", "elsewhere:1:x")
    store.close()

    # No free port among the drill's scratch_ports: refused, nothing started.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        done, _ = drill(scratch_ports=f"{busy}-{busy}")
    assert done.code == 22
    assert f"no free port in the drill's scratch_ports {busy}-{busy}" in done.err

    # No room for the restore: refused before anything is written.
    with monkeypatch.context() as m:
        m.setattr("drplan.drills.scratch.shutil.disk_usage", lambda _: Usage(10, 10, 1 << 20))
        done, _ = drill()
    assert done.code == 22
    assert "has 1 MiB free; the recovery needs about" in done.err

    # Ctrl-C while it recovers: stopped, torn down, no server left behind.
    drill_plan(archived, scratch)
    # Ctrl-C as at a terminal: a test run started in the background (`cmd &` in a script)
    # ignores SIGINT, and a child inherits an ignored signal (a handled one is reset).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "drplan", "drill", "run", "monthly-database"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, before)
    wait_until(lambda: any(scratch.iterdir()) or proc.poll() is not None, "the scratch target")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert list(scratch.iterdir()) == []
    assert scratch_servers(scratch) == [], "a scratch server was left running"

    # kill -9 once its scratch server runs: nothing can tear down, so the next drill
    # stops that server and removes what it left before it starts.
    killed = subprocess.Popen([sys.executable, "-m", "drplan", "drill", "run", "monthly-database"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    wait_until(lambda: any(scratch.glob("*/data/postmaster.pid")) or killed.poll() is not None,
               "the scratch server")  # fmt: skip
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    (left,) = scratch.iterdir()
    assert scratch_servers(scratch), "the drill's server went with it: nothing to clear"
    drill_plan(archived, scratch)
    done = run("drill", "run", "monthly-database", "--json")
    assert done.code == 0, done.err
    assert list(scratch.iterdir()) == [], (left, list(scratch.iterdir()), done.err)
    assert not left.exists()
    assert scratch_servers(scratch) == []

    # WAL missing on the way to the recovery point: the drill fails naming the gap.
    (gone,) = (archived.repo / "wal").rglob(f"{after_base[0]}.*")
    gone.unlink()  # between the base backup and the newest
    done, result = drill()
    assert done.code == 21
    assert "missing" in " ".join(result["failures"]), result["failures"]
    assert after_base[0] in " ".join(result["failures"])  # the gap, named


def test_a_scratch_target_that_overlaps_production_is_refused(
    run: Run,
    archived: Archived,  # noqa: F811
) -> None:
    plan = yaml.safe_load(archived.plan.read_text())
    plan["systems"]["db"]["data_dir"] = str(archived.cluster.data_dir)
    archived.plan.write_text(yaml.safe_dump(plan))
    before = sorted(p.name for p in archived.cluster.data_dir.iterdir())
    drill_plan(archived, archived.cluster.data_dir / "pg_drill")
    done = run("drill", "run", "monthly-database")
    assert done.code == 22
    (line,) = done.err.strip().splitlines()
    assert "a drill never restores over production" in line
    assert sorted(p.name for p in archived.cluster.data_dir.iterdir()) == before


def test_the_corruption_scenario_detects_the_damage_and_recovers_before_it(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    scratch: Path,
) -> None:
    archived.cluster.sql("create table meters as select i as id from generate_series(1, 5000) i")
    stream.wait_for(20)
    assert run("backup", "db-full").code == 0
    stream.wait_for(20)
    switch_and_wait_archived(archived.cluster)
    drill_plan(archived, scratch, simulate="corruption",
               validations={"tables": [{"table": "meters"}]})  # fmt: skip
    done = run("drill", "run", "monthly-database", "--json")
    stream.finish()
    assert done.code == 0, done.out + done.err
    result = json.loads(done.out)
    stages = [s["stage"] for s in result["systems"]]
    assert stages == ["recovery", "corruption", "recovery before the corruption"]
    _, damaged, again = result["systems"]
    detections = {v["name"]: v for v in damaged["validations"]}
    assert detections["pg_checksums finds the damage"]["outcome"] == "passed"
    assert "found the damage to base/" in detections["pg_checksums finds the damage"]["detail"]
    assert detections["pg_amcheck finds the damage"]["outcome"] == "passed"
    assert again["recovery_point"] == first_lsn(result)  # the last point before the damage
    assert all(v["outcome"] == "passed" for v in again["validations"]), again["validations"]
    assert again["rpo"]["seconds"] == 0  # everything up to that point is there
    assert list(scratch.iterdir()) == []


def first_lsn(result: dict[str, Any]) -> str:
    return str(result["systems"][0]["reached"]["lsn"])


def test_a_data_center_drill_restores_only_from_the_locations_its_scenario_leaves(
    run: Run,
    archived: Archived,  # noqa: F811
    scratch: Path,
) -> None:
    dr_site = archived.repo.parent / "dr-site"
    plan = yaml.safe_load(archived.plan.read_text())
    plan["locations"]["dr"] = {"role": "secondary", "kind": "local", "path": str(dr_site)}
    for job in ("db-full", "db-wal"):
        plan["jobs"][job]["locations"] = ["local", "dr"]
    plan["scenarios"]["site-loss"] = {"title": "Data center failure", "tier": 1,
                                      "runbook": "rb", "recover_from": ["dr"]}  # fmt: skip
    archived.plan.write_text(yaml.safe_dump(plan))
    assert run("copy", "--from", "local", "--to", "dr").code == 0
    give_to_server(dr_site)  # the server archives its WAL there too
    assert run("backup", "db-full").code == 0
    archived.cluster.sql("create table t as select 1 as i")
    switch_and_wait_archived(archived.cluster)

    drill_plan(archived, scratch, scenario="site-loss", from_location=None)
    done = run("drill", "run", "monthly-database", "--json")
    assert done.code == 0, done.out + done.err
    (system,) = json.loads(done.out)["systems"]
    assert system["location"] == "dr"  # the primary is declared lost

    # A random point: somewhere the archive surely holds, an LSN after the base backup.
    archived.cluster.sql("insert into t select 2")
    switch_and_wait_archived(archived.cluster)
    drill_plan(archived, scratch, recovery_point="random")
    done = run("drill", "run", "monthly-database", "--json")
    assert done.code == 0, done.out + done.err
    (system,) = json.loads(done.out)["systems"]
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", system["recovery_point"]), system

    drill_plan(archived, scratch, scenario="site-loss", from_location="local")
    refused = run("drill", "run", "monthly-database")
    assert refused.code == 2
    assert "which its scenario site-loss declares lost" in refused.err


def test_a_full_platform_drill_recovers_in_dependency_order_on_its_critical_path(
    run: Run,
    archived: Archived,  # noqa: F811
    scratch: Path,
    tmp_path: Path,
    etcd_member: Etcd,
    registry: Registry,
    new_registry: NewRegistry,
    git_server: GitServer,
) -> None:
    plan = yaml.safe_load(archived.plan.read_text())
    for name in ("web", "config"):
        source = tmp_path / name
        (source / "etc").mkdir(parents=True)
        for i in range(20):
            (source / "etc" / f"{name}-{i}.conf").write_text(f"{name} setting {i}\n" * 50)
        plan["systems"][name] = {"kind": "files", "tier": "important", "paths": [str(source)],
                                 "data_classes": ["configuration"]}  # fmt: skip
    plan["systems"]["web"]["depends_on"] = ["db"]
    # The platform under them: the cluster's state, the images it runs, their code.
    push_image(registry.client(), "drill/api", "v1", [random_layer(1 << 16, 7)])
    repository = f"manifests-{os.getpid()}"  # the server is shared with other tests
    fast_import(git_server.create(repository), commits=20)
    recovery_site = new_registry()
    plan["systems"] |= {
        "kubernetes": etcd_member.system(check_prefixes=["/registry/pods/"]),
        "api": {"kind": "images", "registry": registry.url, "images": ["drill/api"],
                "restore_registry": recovery_site.url},
        "k8s-manifests": {"kind": "git", "repositories": [git_server.url(repository)]},
    }  # fmt: skip
    for name in ("kubernetes", "api", "k8s-manifests"):
        plan["systems"][name] |= {"tier": "critical", "data_classes": ["configuration"]}
    for name in ("web", "config", "kubernetes", "api", "k8s-manifests"):
        plan["jobs"][name] = {"system": name, "type": plan["systems"][name]["kind"],
                              "schedule": "1h", "locations": ["local"]}  # fmt: skip
    archived.plan.write_text(yaml.safe_dump(plan))
    for job in ("db-full", "web", "config", "kubernetes", "api", "k8s-manifests"):
        done = run("backup", job)
        assert done.code == 0, done.err
    archived.cluster.sql("create table t as select 1 as i")
    switch_and_wait_archived(archived.cluster)
    drill_plan(archived, scratch, kind="full_platform", systems=[])

    first = run("drill", "run", "monthly-database", "--json")
    assert first.code == 0, first.out + first.err
    result = json.loads(first.out)
    assert result["passed"] is True, result["failures"]
    order = [s["system"] for s in result["systems"]]
    # etcd, then images, then git, then the database, then files: the platform's order.
    assert order[:4] == ["kubernetes", "api", "k8s-manifests", "db"]
    assert sorted(order[4:]) == ["config", "web"]
    checks = {s["system"]: s["validations"][0] for s in result["systems"]}
    assert checks["kubernetes"]["detail"].endswith(
        f"/registry/pods/ {etcd_member.count('/registry/pods/')}"
    )
    assert checks["api"]["name"] == f"images pushed to {recovery_site.url}, digests read back"
    assert recovery_site.client().tags("drill/api") == ["v1"]
    assert "refs, fsck clean" in checks["k8s-manifests"]["detail"]
    assert checks["web"]["name"] == "files match the snapshot"
    assert checks["web"]["detail"].startswith("20 files, ")
    critical = result["critical_path"]
    assert critical["systems"][:4] == ["kubernetes", "api", "k8s-manifests", "db"]
    assert critical["systems"][4] in ("web", "config")
    assert critical["objective_seconds"] == 12 * 3600
    assert critical["predicted_seconds"] is None  # no drill before this one
    assert list(scratch.iterdir()) == []

    again = json.loads(run("drill", "run", "monthly-database", "--json").out)
    assert again["critical_path"]["predicted_seconds"] > 0  # from the first one's evidence

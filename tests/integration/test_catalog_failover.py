"""A PostgreSQL catalog that fails over while the daemon runs a job: the server stops
mid-run, the run ends during the outage, and the same server or another one (a new,
empty database at the same address) comes up later. The daemon logs the catalog error,
keeps running, records the run that ended meanwhile once a catalog answers, and records
its runs from then on. Nothing is lost from the repository's side: it is the truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.catalog.store import RUNNING, SUCCEEDED, Catalog
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import PgCluster, free_port
from tests.integration.test_serve import files_plan, prepared

Run = Callable[..., Result]


def url(cluster: PgCluster) -> str:
    return f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"


@pytest.mark.parametrize("comes_back", ["the same server", "another server"])
def test_a_catalog_failing_over_mid_run_loses_no_run_and_the_daemon_carries_on(
    tmp_path: Path,
    source: Path,
    password: str,
    pg_cluster: Callable[..., PgCluster],
    comes_back: str,
) -> None:
    first = pg_cluster()
    second = first
    if comes_back == "another server":
        second = pg_cluster()
        second.stop()
        second.set(port=str(first.port))  # the address the daemon knows, an empty database
        second.port = first.port
    # A command job whose first run waits on a FIFO until the test lets it end.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    plan = files_plan(tmp_path, source, "2s")
    raw = yaml.safe_load(plan.read_text())
    raw["systems"] = {"etcd": {"kind": "command", "tier": "critical",
                               "data_classes": ["configuration"],
                               "command": f"if [ -p {gate} ]; then cat {gate}; fi; echo state"}}  # fmt: skip
    raw["jobs"] = {"etcd": {"system": "etcd", "type": "command", "schedule": "2s",
                            "locations": ["primary"]}}  # fmt: skip
    plan.write_text(yaml.safe_dump(raw))
    drplan, env = prepared(plan, url(first))
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{free_port()}",
                               "--watch-every", "1s"], env=env, stdout=log, stderr=log)  # fmt: skip

    def explain() -> str:
        return (tmp_path / "serve.log").read_text()

    def runs(cluster: PgCluster) -> list[Any]:
        """What the server holds, read without creating anything: a new server's tables
        are the daemon's to make."""
        if cluster.sql("select to_regclass('runs')") == [(None,)]:
            return []
        return runs_of(cluster, "etcd")

    def snapshots() -> list[str]:
        listed = subprocess.run([*drplan, "snapshots", "--repo", "primary", "--json"], env=env,
                                capture_output=True, text=True, check=True)  # fmt: skip
        return [s["id"] for s in json.loads(listed.stdout)]

    try:
        wait_until(lambda: [r.status for r in runs(first)] == [RUNNING], "the run to start",
                   60, explain)  # fmt: skip
        first.stop()  # mid-run
        with gate.open("w") as opened:  # the run goes on, and ends, during the outage
            opened.write("member list\n")
        gate.unlink()
        wait_until(lambda: len(snapshots()) == 1, "the run's snapshot", 60, explain)
        (saved,) = snapshots()
        wait_until(lambda: "cannot be used" in explain(), "the outage logged", 60, explain)
        assert daemon.poll() is None, explain()
        second.start()
        wait_until(lambda: any(r.snapshot == saved for r in runs(second)),
                   "the run that ended in the outage recorded", 60, explain)  # fmt: skip
        wait_until(lambda: sum(r.status == SUCCEEDED for r in runs(second)) >= 3,
                   "runs after the outage", 60, explain)  # fmt: skip
        assert daemon.poll() is None, explain()
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    assert "Traceback" not in explain()
    assert first.password not in explain()
    recorded = runs(second)
    outage = next(r for r in recorded if r.snapshot == saved)
    assert outage.status == SUCCEEDED
    assert outage.slot is not None
    assert outage.ended_at is not None
    assert outage.ended_at >= outage.started_at
    assert RUNNING not in {r.status for r in recorded}
    slots = [r.slot for r in recorded if r.attempt == 1]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert {r.snapshot for r in recorded if r.status == SUCCEEDED} <= set(snapshots())


def test_a_postgresql_catalog_lost_with_its_server_is_rebuilt_from_the_repository(
    run: Run, tmp_path: Path, source: Path, password: str, pg_cluster: Callable[..., PgCluster]
) -> None:
    """A new, empty catalog server gets the history back from the snapshots; a second
    rebuild adds nothing; and an unreachable one is one line, exit 20."""
    plan = files_plan(tmp_path, source, "1h")
    prepared(plan, "")
    for _ in range(2):
        assert run("--plan", str(plan), "backup", "web").code == 0
    cluster = pg_cluster()
    rebuild = ("--plan", str(plan), "catalog", "rebuild", "--catalog", url(cluster))
    first = run(*rebuild, "--json")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert (report["runs_added"], report["moved_aside"]) == ({"web": 2}, None)
    again = run(*rebuild)
    assert again.code == 0, again.err
    assert "0 runs added" in again.out
    assert "2 already there" in again.out
    assert [r.status for r in runs_of(cluster, "web")] == [SUCCEEDED, SUCCEEDED]
    cluster.stop()
    down = run(*rebuild)
    assert down.code == 20
    assert down.err.count("\n") == 1, down.err
    assert down.err.startswith("drplan: catalog postgresql://***@127.0.0.1:")
    assert cluster.password not in down.err


def runs_of(cluster: PgCluster, job: str) -> list[Any]:
    catalog = Catalog.open(url(cluster))
    try:
        return catalog.runs(job, limit=1000)
    finally:
        catalog.close()


def test_the_threads_of_a_daemon_meeting_an_empty_server_make_its_schema_once(
    pg_cluster: Callable[..., PgCluster],
) -> None:
    """After a failover to a new, empty server, every thread of the daemon (scheduler,
    watcher, web server, incident driver) finds the schema to make at its next use: one
    makes it, the others wait for it, none fails on the other's tables."""
    import threading  # noqa: PLC0415

    cluster = pg_cluster()
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    catalog = Catalog.open(url)
    failures: list[BaseException] = []
    try:
        for _ in range(5):
            with catalog.transaction() as conn:  # the server is replaced by an empty one
                conn.exec_driver_sql("drop schema public cascade; create schema public")
            catalog._stale = True  # as a failure marks it

            def use() -> None:
                try:
                    catalog.last_run("web")
                except BaseException as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=use) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert failures == []
    finally:
        catalog.close()

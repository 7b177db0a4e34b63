"""The issue's end-to-end scenario: `drplan serve` on a real PostgreSQL 18 archiving its
WAL with drplan, and a files job into a SeaweedFS bucket. Jobs run on time and
/metrics shows them; stopping the archive makes the database's RPO exposure climb
past its objective and PagerDuty is triggered; archiving again resolves the incident
under the same dedup_key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import Catalog
from drplan.web.accounts import Accounts
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import free_port
from tests.fixtures.receivers import HttpReceiver
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.web import PASSWORD
from tests.integration.test_locations import s3_location
from tests.integration.test_postgres_pitr import (  # the fixtures, by name
    Archived,
    Stream,
    _archived,
    archived,  # noqa: F401
    stream,  # noqa: F401
)
from tests.integration.test_serve import get, metric_samples

Run = Callable[..., Result]


def test_stopping_the_archive_pages_and_archiving_again_resolves(
    run: Run,
    archived: Archived,  # noqa: F811 - the fixture imported above
    stream: Stream,  # noqa: F811
    receiver: HttpReceiver,
    source: Path,
    seaweedfs: SeaweedFS,
    s3_secrets: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: Any,
) -> None:
    """And the dashboard's overview, open in a browser, turns the database's row red for
    its RPO on its own (the change stream reloads it)."""
    cluster = archived.cluster
    cluster.sql("alter system set archive_timeout = '1s'")  # a segment a second under load
    cluster.sql("select pg_reload_conf()")
    plan = yaml.safe_load(archived.plan.read_text())
    plan["objectives"]["rpo"] = {"database": "15s", "configuration": "4h"}
    plan["data_classes"]["database"]["locations"] = ["local"]
    plan["locations"]["cloud"] = s3_location(seaweedfs, seaweedfs.create_bucket(), "cloud")
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["systems"]["web"].pop("depends_on", None)
    plan["jobs"]["db-full"]["schedule"] = "1h"  # base backups would mask the archive
    plan["jobs"].pop("db-incr", None)
    plan["jobs"]["web"] = {**plan["jobs"]["web"], "schedule": "3s", "locations": ["cloud"]}
    plan["channels"] = {"pager": {"kind": "pagerduty", "routing_key": "${PD_KEY}",
                                  "events_url": f"{receiver.url}/pagerduty"}}  # fmt: skip
    plan["alerting"] = {"routes": [{"channels": ["pager"], "min_severity": "critical"}]}
    plan["web"] = {"public_metrics": True}  # a Prometheus on the same network scrapes it
    archived.plan.write_text(yaml.safe_dump(plan))
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0123456789abcdefABCDEF")
    seeded = run("--plan", str(archived.plan), "copy", "--from", "local", "--to", "cloud")
    assert seeded.code == 0, seeded.err
    full = run("--plan", str(archived.plan), "backup", "db-full")
    assert full.code in (0, 16), full.err  # the cloud copy of a database-only snapshot: fine

    port = free_port()
    env = {
        **os.environ,
        "DRPLAN_CATALOG": sqlite_url(str(tmp_path / "catalog.db")),
        "DRPLAN_STATE_DIR": str(tmp_path / "state"),
    }
    catalog = Catalog.open(env["DRPLAN_CATALOG"])
    try:
        Accounts(catalog).add_user("sre", None, PASSWORD, [], "viewer", clock.now())
    finally:
        catalog.close()
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "drplan", "--plan", str(archived.plan), "serve",
         "--listen", f"127.0.0.1:{port}", "--watch-every", "1s"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip

    def explain() -> str:
        return (
            tmp_path / "serve.log"
        ).read_text() + f"\npagerduty: {receiver.bodies('/pagerduty')}"

    def actions() -> list[tuple[str, str]]:
        return [(b["event_action"], b["dedup_key"]) for b in receiver.bodies("/pagerduty")]

    def status_is(state: str) -> bool:
        code, text = get(port, "/metrics")
        if code != 200:
            return False
        key = ("drplan_rpo_status",
               (("data_class", "database"), ("location", "local"), ("status", state)))  # fmt: skip
        return metric_samples(text).get(key) == 1

    key = "rpo:database:local"
    try:
        wait_until(lambda: explain().count("job web: succeeded") >= 2, "the files job", 90, explain)
        wait_until(lambda: status_is("ok"), "the database within its RPO", 60, explain)
        samples = metric_samples(get(port, "/metrics")[1])
        assert samples[("drplan_job_runs_total", (("job", "web"), ("outcome", "succeeded")))] >= 2
        for kind in ("data", "wal", "metadata"):
            assert (
                samples[("drplan_location_size_bytes", (("kind", kind), ("location", "local")))] > 0
            )
        assert (
            samples[("drplan_location_size_bytes", (("kind", "wal"), ("location", "cloud")))] == 0
        )
        assert (
            samples[("drplan_wal_archive_age_seconds", (("location", "local"), ("system", "db")))]
            < 15
        )
        assert actions() == []
        page.goto(f"http://127.0.0.1:{port}/login")
        page.get_by_label("Name").fill("sre")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        db_row = page.locator('tr[data-system="db"]')
        assert "database: RPO breached" not in db_row.inner_text()
        assert "(ok)" in db_row.inner_text()
        stream.wait_for(50)

        # The archive stops: its location refuses the server's writes (drplan's agent
        # archives ahead of PostgreSQL, so failing archive_command alone would not).
        wal_dirs = [p for p in (archived.repo / "wal").rglob("*") if p.is_dir()]
        for directory in [archived.repo / "wal", *wal_dirs]:
            directory.chmod(0o555)
        wait_until(lambda: ("trigger", key) in actions(), "a PagerDuty trigger", 120, explain)
        assert status_is("breached")
        db_row.filter(has_text="database: RPO breached").wait_for(timeout=60_000)
        assert "red" in (db_row.get_attribute("class") or "")

        for directory in [archived.repo / "wal", *wal_dirs]:  # archiving again
            directory.chmod(0o755)
        wait_until(lambda: ("resolve", key) in actions(), "the incident resolved", 120, explain)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    trigger = next(b for b in receiver.bodies("/pagerduty") if b["event_action"] == "trigger")
    assert trigger["payload"]["severity"] == "critical"
    assert receiver.violations == []


def test_serve_keeps_the_wal_stream_running_and_restarts_it_when_it_dies(
    archived: Archived,  # noqa: F811
    tmp_path: Path,
) -> None:
    cluster = archived.cluster
    cluster.sql("alter system set archive_command = '/bin/true'")  # the stream alone
    cluster.sql("select pg_reload_conf()")
    plan = yaml.safe_load(archived.plan.read_text())
    plan["jobs"]["db-wal"]["stream"] = True
    plan["jobs"]["db-full"]["schedule"] = "manual"
    plan["jobs"]["db-incr"]["schedule"] = "manual"
    archived.plan.write_text(yaml.safe_dump(plan))
    env = {
        **os.environ,
        "DRPLAN_CATALOG": sqlite_url(str(tmp_path / "catalog.db")),
        "DRPLAN_STATE_DIR": str(tmp_path / "state"),
        "DRPLAN_PASSWORD_FILE": str(archived.password_file),
    }
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "drplan", "--plan", str(archived.plan), "serve",
         "--listen", f"127.0.0.1:{free_port()}"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip

    def explain() -> str:
        return log_path.read_text()

    def stream_pids() -> list[int]:
        return [int(p) for p in re.findall(r"job db-wal: started .* pid (\d+)", explain())]

    def shipped(segment: str) -> bool:
        return segment in {w.file for w in _archived(archived)}

    def switch() -> str:
        cluster.sql("create table if not exists t (i int); insert into t values (1)")
        return str(cluster.sql("select pg_walfile_name(pg_switch_wal())")[0][0])

    try:
        wait_until(lambda: len(stream_pids()) == 1, "the stream started", 60, explain)
        # Its log is the daemon's: pg_receivewal has its slot and receives.
        wait_until(lambda: "pg_receivewal started" in explain(), "its log", 60, explain)
        first = switch()
        wait_until(lambda: shipped(first), f"{first} streamed", 60, explain)

        os.killpg(stream_pids()[0], signal.SIGKILL)  # with its pg_receivewal
        wait_until(lambda: len(stream_pids()) == 2, "the stream restarted", 60, explain)
        wait_until(lambda: explain().count("pg_receivewal started") == 2, "receiving", 60, explain)
        assert "job db-wal: failed" in explain()
        second = switch()
        wait_until(lambda: shipped(second), f"{second} streamed after the restart", 60, explain)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    assert "stopped;" in explain()  # the stream was asked to finish, and shipped what it had
    assert cluster.password not in explain()

"""`drplan serve` runs the plan on its own: a job on a two-second interval runs once per
slot, each run recorded in the catalog with its snapshot; SIGHUP with a broken plan
keeps the old one running; SIGTERM stops cleanly, leaving no run marked running."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from drplan import clock
from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Catalog
from drplan.notify.problems import problems
from drplan.observability.metrics import DaemonCollector, registry
from drplan.plan.loader import load_plan
from drplan.plan.model import Plan
from drplan.plan.model.alerting import Severity
from drplan.repo.rotation import load_rotation
from drplan.scheduler.daemon import Daemon
from drplan.scheduler.tasks import tasks
from drplan.scheduler.timing import RETRY_BASE
from drplan.web.accounts import Accounts
from tests.conftest import wait_until
from tests.fixtures.postgres import PgCluster, free_port
from tests.fixtures.receivers import HttpReceiver
from tests.integration.conftest import files_job_plan
from tests.integration.test_locations import FAST_KDF


def files_plan(tmp_path: Path, source: Path, every: str) -> Path:
    primary = {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    return files_job_plan(tmp_path, source, {"primary": primary}, every)


def prepared(plan: Path, catalog_url: str) -> tuple[list[str], dict[str, str]]:
    """The repository of ``plan``'s location `primary` made; the command prefix and the
    environment of daemons using ``catalog_url`` (state beside the plan)."""
    drplan = [sys.executable, "-m", "drplan", "--plan", str(plan)]
    env = {
        **os.environ,
        "DRPLAN_CATALOG": catalog_url,
        "DRPLAN_STATE_DIR": str(plan.parent / "state"),
    }
    subprocess.run([*drplan, "repo", "init", "primary", *FAST_KDF], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return drplan, env


def get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reader_token(catalog_url: str) -> str:
    """An API token that may read, of a viewer made for it."""
    catalog = Catalog.open(catalog_url)
    try:
        accounts = Accounts(catalog)
        accounts.add_user("prometheus", None, None, [], "viewer", clock.now())
        return accounts.create_token("prometheus", "scrape", ["read"], None, clock.now())[0]
    finally:
        catalog.close()


def check_endpoints(port: int, explain: Callable[[], str], token: str) -> None:
    """/metrics in the Prometheus format with the job's runs and the RPO exposure;
    /status as `drplan status --json`, both to a reader's token only; /healthz and, once
    assessed, /readyz, to anyone."""
    assert get(port, "/healthz") == (200, "ok\n")
    wait_until(lambda: get(port, "/readyz")[0] == 200, "the daemon to be ready", 30, explain)
    assert get(port, "/metrics")[0] == 401  # the plan does not make them public
    assert get(port, "/status")[0] == 401
    code, text = get(port, "/metrics", token)
    assert code == 200
    samples = metric_samples(text)
    job = (("job", "web"),)
    assert samples[("drplan_job_runs_total", (("job", "web"), ("outcome", "succeeded")))] >= 3
    assert time.time() - samples[("drplan_job_last_success_timestamp_seconds", job)] < 30
    where = (("data_class", "configuration"), ("location", "primary"))
    assert 0 <= samples[("drplan_rpo_exposure_seconds", where)] < 60
    assert samples[("drplan_rpo_objective_seconds", (("data_class", "configuration"),))] == 14400
    assert samples[("drplan_rpo_status", (*where, ("status", "ok")))] == 1
    assert samples[("drplan_location_up", (("location", "primary"),))] == 1
    code, body = get(port, "/status", token)
    assert code == 200
    assert json.loads(body)["data_classes"]["configuration"]["status"] == "ok"
    assert get(port, "/nothing")[0] == 404


@dataclass
class InProcess:
    """A daemon in this process on a clock the test moves; its runs are real children."""

    plan: Plan
    now: list[datetime]  # the clock: set now[0]
    catalog: Catalog
    daemon: Daemon

    def settle(self) -> None:
        """Tick until every run started has ended and been recorded."""

        def ended() -> bool:
            self.daemon.tick()
            return not self.daemon.running

        wait_until(ended, "the runs to end", 120)


def in_process(plan_path: Path, tmp_path: Path, start: datetime, **options: Any) -> InProcess:
    plan = load_plan(plan_path).plan
    now = [start]
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    # Its own state directory: a check's rotation is kept there, not in the home directory.
    env = {**os.environ, "DRPLAN_PLAN": str(plan_path), "DRPLAN_STATE_DIR": str(tmp_path / "state")}
    daemon = Daemon(plan, str(plan_path), catalog, lambda: now[0], env=env, **options)
    return InProcess(plan, now, catalog, daemon)


def test_serve_runs_a_job_once_per_slot_and_stops_cleanly(
    tmp_path: Path, source: Path, password: str
) -> None:
    plan = files_plan(tmp_path, source, "2s")
    drplan, env = prepared(plan, sqlite_url(str(tmp_path / "catalog.db")))
    log = (tmp_path / "serve.log").open("wb")
    port = free_port()
    daemon = subprocess.Popen(
        [*drplan, "serve", "--listen", f"127.0.0.1:{port}", "--watch-every", "1s"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    catalog_url = env["DRPLAN_CATALOG"]

    def succeeded() -> list[Any]:
        if not (tmp_path / "catalog.db").exists():
            return []
        catalog = Catalog.open(catalog_url)
        try:
            return [r for r in catalog.runs("web") if r.status == SUCCEEDED]
        finally:
            catalog.close()

    def explain() -> str:
        return (tmp_path / "serve.log").read_text()

    try:
        wait_until(lambda: len(succeeded()) >= 3, "three scheduled runs", 60, explain)
        check_endpoints(port, explain, reader_token(catalog_url))
        # A broken plan on SIGHUP is refused; the daemon goes on with the old one.
        good = plan.read_text()
        plan.write_text(good.replace("schedule: 2s", "schedule: every blue moon"))
        done = len(succeeded())
        asked = subprocess.run([*drplan, "serve", "--reload"], env=env, capture_output=True,
                               text=True, check=False)  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert f"pid {daemon.pid}" in asked.stdout
        wait_until(lambda: "not reloaded" in explain(), "the reload to be refused", 30, explain)
        plan.write_text(good)
        wait_until(lambda: len(succeeded()) >= done + 2, "runs after the refused reload", 60,
                   explain)  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    assert not (tmp_path / "state" / "serve.pid").exists()  # gone with the daemon
    nobody = subprocess.run([*drplan, "serve", "--reload"], env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert nobody.returncode == 1
    assert nobody.stderr.startswith("drplan: no drplan serve is running")
    catalog = Catalog.open(catalog_url)
    runs = catalog.runs("web", limit=1000)
    catalog.close()
    assert all(r.status != RUNNING for r in runs)
    slots = sorted(r.slot for r in runs if r.slot is not None)
    assert len(slots) == len(set(slots))  # never two runs for one slot
    assert all(b - a >= timedelta(seconds=2) for a, b in itertools.pairwise(slots))
    assert all(s.timestamp() % 2 == 0 for s in slots)  # on the interval's rhythm
    ok = [r for r in runs if r.status == SUCCEEDED]
    assert all(r.snapshot and r.location == "primary" for r in ok)
    listed = subprocess.run([*drplan, "snapshots", "--repo", str(tmp_path / "primary"),
                             "--json"], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert {r.snapshot for r in ok} <= {s["id"] for s in json.loads(listed.stdout)}


def test_a_failed_run_is_retried_with_backoff_until_the_next_slot_supersedes_it(
    tmp_path: Path, source: Path, password: str
) -> None:
    """The daemon's decisions under a clock the test moves: a run that fails (no repository
    in its location) is retried for the same slot after a jittered delay, and the next
    slot, once come, starts a fresh first attempt instead."""
    plan_path = files_plan(tmp_path, source, "10m")
    here = in_process(plan_path, tmp_path, datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC),
                      rng=random.Random(1))  # fmt: skip
    now, catalog, daemon, settle = here.now, here.catalog, here.daemon, here.settle

    now[0] = datetime(2026, 11, 26, 10, 10, 1, tzinfo=UTC)  # the 10:10 slot has come
    daemon.tick()
    assert "web" in daemon.running
    settle()
    (first,) = catalog.runs("web")
    assert (first.status, first.attempt) == (FAILED, 1)
    assert "no repository" in (first.error or "")
    retry = daemon.retries["web"]
    assert retry.slot == datetime(2026, 11, 26, 10, 10, tzinfo=UTC)
    assert retry.attempt == 2
    assert now[0] < retry.at <= now[0] + RETRY_BASE
    daemon.tick()
    assert "web" not in daemon.running  # not before its delay
    now[0] = retry.at
    daemon.tick()
    settle()
    second = catalog.runs("web")[0]
    assert (second.slot, second.attempt, second.status) == (retry.slot, 2, FAILED)
    assert daemon.retries["web"].at - now[0] <= 2 * RETRY_BASE
    now[0] = datetime(2026, 11, 26, 10, 20, 0, tzinfo=UTC)  # the next slot supersedes
    daemon.tick()
    settle()
    third = catalog.runs("web")[0]
    assert (third.slot, third.attempt) == (now[0], 1)
    catalog.close()


def test_backups_that_stop_page_on_the_breach_and_resolve_when_they_resume(
    tmp_path: Path, source: Path, password: str, receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The daemon's whole loop: runs on a 2 s interval keep a 10 s RPO; when they stop
    (the plan reloaded with the job manual), exposure climbs past the objective and
    PagerDuty gets a trigger; once they run again the incident is resolved under the
    same dedup_key."""
    primary = {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    plan_path = files_job_plan(tmp_path, source, {"primary": primary}, "2s")
    raw = yaml.safe_load(plan_path.read_text())
    raw["objectives"]["rpo"] = {"configuration": "10s"}
    raw["systems"]["web"]["tier"] = "critical"
    raw["channels"] = {"pager": {"kind": "pagerduty", "routing_key": "${PD_KEY}",
                                 "events_url": f"{receiver.url}/pagerduty"}}  # fmt: skip
    raw["alerting"] = {"routes": [{"channels": ["pager"], "min_severity": "critical"}]}
    plan_path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0123456789abcdefABCDEF")
    drplan, env = prepared(plan_path, sqlite_url(str(tmp_path / "catalog.db")))
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{free_port()}",
                               "--watch-every", "1s"], env=env, stdout=log, stderr=log)  # fmt: skip

    def explain() -> str:
        return (tmp_path / "serve.log").read_text() + f"\n{receiver.requests}"

    def actions() -> list[tuple[str, str]]:
        return [(b["event_action"], b["dedup_key"]) for b in receiver.bodies("/pagerduty")]

    key = "rpo:configuration:primary"
    try:
        wait_until(lambda: explain().count("job web: succeeded") >= 2, "backups", 60, explain)
        assert actions() == []  # kept within the RPO from the start: nobody paged
        running = plan_path.read_text()
        plan_path.write_text(running.replace("schedule: 2s", "schedule: manual"))
        daemon.send_signal(signal.SIGHUP)  # the backups stop
        wait_until(lambda: ("trigger", key) in actions(), "a PagerDuty trigger", 90, explain)
        plan_path.write_text(running)
        daemon.send_signal(signal.SIGHUP)  # and start again
        wait_until(lambda: ("resolve", key) in actions(), "the incident resolved", 90, explain)
        assert actions()[-1] == ("resolve", key)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
    triggers = [b for b in receiver.bodies("/pagerduty") if b["event_action"] == "trigger"]
    assert triggers[-1]["payload"]["severity"] == "critical"
    assert "RPO breached: configuration in primary" in triggers[-1]["payload"]["summary"]
    assert receiver.violations == []


def test_two_daemons_on_one_postgresql_catalog_run_each_slot_once_and_survive_a_death(
    tmp_path: Path, source: Path, password: str, pg_cluster: Callable[..., PgCluster]
) -> None:
    """Two daemons share a 2 s schedule through a PostgreSQL catalog: every slot runs
    once; when one is killed, the other takes its job over once the lease expires."""
    cluster = pg_cluster()
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    drplan, env = prepared(files_plan(tmp_path, source, "2s"), url)
    logs = [(tmp_path / f"serve{i}.log").open("wb") for i in range(2)]
    daemons = [
        subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{free_port()}"],
                         env=env, stdout=log, stderr=log)
        for log in logs
    ]  # fmt: skip

    def runs() -> list[Any]:
        catalog = Catalog.open(url)
        try:
            return catalog.runs("web", limit=1000)
        finally:
            catalog.close()

    def explain() -> str:
        return "\n".join((tmp_path / f"serve{i}.log").read_text() for i in range(2))

    try:
        wait_until(lambda: sum(r.status == SUCCEEDED for r in runs()) >= 4, "runs", 60, explain)
        by_pid = {d.pid: d for d in daemons}

        def running_now() -> int | None:
            for r in runs():
                pid = int(r.host.rsplit(":", 1)[1])
                if r.status == RUNNING and pid in by_pid:
                    return pid
            return None

        wait_until(lambda: running_now() is not None, "a run under way", 60, explain)
        victim = by_pid[running_now() or 0]
        victim.kill()  # mid-run, no goodbye: its lease must expire before the job moves
        victim.wait(30)
        dead = f":{victim.pid}"
        killed_at = time.time()
        wait_until(
            lambda: sum(r.status == SUCCEEDED and not r.host.endswith(dead)
                        and r.started_at.timestamp() > killed_at for r in runs()) >= 2,
            "the survivor to take the job over", 120, explain,
        )  # fmt: skip
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
        for log in logs:
            log.close()
    slots = [r.slot for r in runs() if r.attempt == 1]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    left = [r for r in runs() if r.host.endswith(dead)]
    assert RUNNING not in {r.status for r in left}  # the dead daemon's run: abandoned


def test_a_run_that_hangs_is_reported_overrunning_then_stopped_at_its_timeout(
    tmp_path: Path, source: Path, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's only location is an S3 endpoint that accepts connections and never
    answers: the run hangs; at its next slot it is reported overrunning (and not
    started twice), and at its timeout it is stopped, process group and all."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts (the kernel does), never reads nor answers
    location = {"role": "primary", "kind": "s3", "bucket": "blackhole", "region": "us-east-1",
                "endpoint": f"http://127.0.0.1:{hole.getsockname()[1]}",
                "access_key_id": "${HOLE_KEY}", "secret_access_key": "${HOLE_SECRET}"}  # fmt: skip
    plan_path = files_job_plan(tmp_path, source, {"hole": location}, "2s")
    raw = yaml.safe_load(plan_path.read_text())
    raw["jobs"]["web"]["timeout"] = "5s"
    plan_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "DRPLAN_CATALOG": sqlite_url(str(tmp_path / "catalog.db")),
           "DRPLAN_STATE_DIR": str(tmp_path / "state"), "HOLE_KEY": "key", "HOLE_SECRET": "secret", "DRPLAN_S3_TIMEOUT": "60"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "drplan", "--plan", str(plan_path), "serve",
         "--listen", f"127.0.0.1:{free_port()}"], env=env, stdout=log, stderr=log,
    )  # fmt: skip

    def explain() -> str:
        return (tmp_path / "serve.log").read_text()

    def outcomes() -> list[Any]:
        if not (tmp_path / "catalog.db").exists():
            return []
        catalog = Catalog.open(env["DRPLAN_CATALOG"])
        try:
            return catalog.runs("web")
        finally:
            catalog.close()

    try:
        wait_until(
            lambda: daemon.poll() is not None or any(r.status == TIMED_OUT for r in outcomes()),
            "a timeout",
            60,
            explain,
        )
        assert daemon.poll() is None, explain()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
        hole.close()
    timed_out = next(r for r in outcomes() if r.status == TIMED_OUT)
    assert "ran past its timeout (0:00:05)" in (timed_out.error or "")
    assert timed_out.ended_at is not None
    assert 5 <= (timed_out.ended_at - timed_out.started_at).total_seconds() < 15
    assert "still running at its next slot" in explain()
    slots = [r.slot for r in outcomes()]
    assert len(slots) == len(set(slots))
    leftovers = subprocess.run(["pgrep", "-f", f"--plan {plan_path} backup web"],
                               capture_output=True, text=True, check=False)  # fmt: skip
    assert leftovers.stdout.strip() == "", "a killed run left processes behind"


def test_the_catalog_going_away_is_logged_and_the_daemon_carries_on_when_it_returns(
    tmp_path: Path, source: Path, password: str, pg_cluster: Callable[..., PgCluster]
) -> None:
    cluster = pg_cluster()
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    drplan, env = prepared(files_plan(tmp_path, source, "2s"), url)
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{free_port()}",
                               "--watch-every", "1s"], env=env, stdout=log, stderr=log)  # fmt: skip

    def explain() -> str:
        return (tmp_path / "serve.log").read_text()

    def succeeded() -> int:
        catalog = Catalog.open(url)
        try:
            return sum(r.status == SUCCEEDED for r in catalog.runs("web", limit=1000))
        finally:
            catalog.close()

    try:
        wait_until(lambda: succeeded() >= 2, "runs", 60, explain)
        cluster.stop()
        wait_until(lambda: "cannot be used" in explain(), "the outage logged", 60, explain)
        assert daemon.poll() is None, explain()  # still serving
        outage = explain().count("cannot be used")
        cluster.start()
        before = succeeded()
        wait_until(lambda: succeeded() >= before + 2, "runs after the outage", 60, explain)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    assert "Traceback" not in explain()
    assert outage >= 1
    assert cluster.password not in explain()


def test_an_unreachable_catalog_at_start_is_one_line_and_exit_20(
    tmp_path: Path, source: Path
) -> None:
    plan = files_plan(tmp_path, source, "2s")
    dead = f"postgresql://drplan:catalog-secret@127.0.0.1:{free_port()}/catalog"
    started = subprocess.run(
        [sys.executable, "-m", "drplan", "--plan", str(plan), "serve", "--catalog", dead],
        env={**os.environ, "DRPLAN_PASSWORD": "x", "DRPLAN_STATE_DIR": str(tmp_path / "s")}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert started.returncode == 20, started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert lines[0].startswith("drplan: catalog")
    assert "catalog-secret" not in started.stderr


def test_the_daemon_also_forgets_daily_and_checks_on_the_classes_verify_schedule(
    tmp_path: Path, source: Path, password: str
) -> None:
    """Upkeep the plan implies: `forget --prune` per location every day, and a rotating
    `check --read-data-subset` on the most frequent `verify` schedule of the data classes
    that must be in the location; each runs alone on its location, after the backup."""
    primary = {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    plan_path = files_job_plan(tmp_path, source, {"primary": primary}, "1h")
    raw = yaml.safe_load(plan_path.read_text())
    raw["data_classes"] = {"configuration": {"locations": ["primary"], "verify": "@hourly"}}
    raw["jobs"]["web"]["retention"] = {"keep_last": 1}
    plan_path.write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "drplan", "--plan", str(plan_path), "repo", "init",
                    "primary", *FAST_KDF], check=True, capture_output=True)  # fmt: skip
    here = in_process(plan_path, tmp_path, datetime(2026, 11, 26, 22, 30, tzinfo=UTC))
    plan, now, catalog, daemon, settle = here.plan, here.now, here.catalog, here.daemon, here.settle
    assert {t.name for t in tasks(plan)} == {"web", "forget:primary", "check:primary"}

    def outcome(name: str) -> str:
        (last,) = catalog.runs(name, limit=1)
        return f"{last.status} {last.error or ''}"

    for hour in (23, 24):  # two backups an hour apart, each followed by a check
        now[0] = datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC) + timedelta(hours=hour)
        daemon.tick()
        assert set(daemon.running) == {"web"}  # upkeep waits: the location is busy
        settle()  # then forget (at midnight) and check run, one after the other
        assert outcome("web").startswith("succeeded"), outcome("web")
        assert outcome("check:primary").startswith("succeeded"), outcome("check:primary")
    # Each check goes on where the last stopped: the rotation is kept in the daemon's state.
    (kept,) = (tmp_path / "state" / "check").glob("rotation-*.json")
    rotation = load_rotation(str(kept))
    assert rotation.passes or rotation.read
    # 00:00:30 on the 27th: the day's forget ran too, keeping the last snapshot only
    assert outcome("forget:primary").startswith("succeeded"), outcome("forget:primary")
    listed = subprocess.run([sys.executable, "-m", "drplan", "snapshots", "--repo",
                             str(tmp_path / "primary"), "--json"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert len(json.loads(listed.stdout)) == 1

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        collector = DaemonCollector(lambda: daemon.events, lambda: None, set)
        return metric_samples(generate_latest(registry(collector)).decode())

    where = (("location", "primary"),)
    assert scraped()[("drplan_check_errors", where)] == 0
    assert scraped()[("drplan_check_last_timestamp_seconds", where)] == now[0].timestamp()
    assert problems(plan, None, daemon.failures) == []

    # The packs are lost: the next check finds it, and that is told at once, critically.
    for pack in (tmp_path / "primary" / "data").rglob("*"):
        if pack.is_file():
            pack.unlink()
    now[0] += timedelta(hours=1, minutes=1)  # past the next backup and check slots
    daemon.tick()
    settle()
    assert outcome("check:primary").startswith("failed"), outcome("check:primary")
    assert scraped()[("drplan_check_errors", where)] > 0
    (found,) = [p for p in problems(plan, None, daemon.failures) if p.key == "job:check:primary"]
    assert found.severity is Severity.CRITICAL
    assert "found damaged data" in found.summary
    catalog.close()


def test_a_location_that_missed_a_backup_is_caught_up_by_the_next_copy_not_the_next_backup(
    tmp_path: Path, source: Path, password: str
) -> None:
    locations = {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "second": {"role": "secondary", "kind": "local", "path": str(tmp_path / "second")},
    }
    plan_path = files_job_plan(tmp_path, source, locations, "1d")
    drplan = [sys.executable, "-m", "drplan", "--plan", str(plan_path)]
    for argv in (["repo", "init", "primary", *FAST_KDF], ["copy", "--from", "primary", "--to",
                                                          "second"]):  # fmt: skip
        subprocess.run([*drplan, *argv], check=True, capture_output=True)
    here = in_process(plan_path, tmp_path, datetime(2026, 11, 25, 23, 59, 0, tzinfo=UTC))
    now, catalog, daemon, settle = here.now, here.catalog, here.daemon, here.settle
    assert "copy:primary:second" in {t.name for t in tasks(here.plan)}

    def snapshots(location: str) -> int:
        listed = subprocess.run([*drplan, "snapshots", "--repo", location, "--json"],
                                capture_output=True, text=True, check=True)  # fmt: skip
        return len(json.loads(listed.stdout))

    away = tmp_path / "second-unplugged"
    (tmp_path / "second").rename(away)  # the second disk is away during the backup
    (tmp_path / "second").write_text("not a repository")
    now[0] = datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)  # the backup's and the copy's slot
    daemon.tick()
    assert set(daemon.running) == {"web"}  # the copy waits for the job it copies
    settle()
    (last,) = catalog.runs("web", limit=1)
    assert last.status == "partial", last.error  # saved, not everywhere
    (failed,) = catalog.runs("copy:primary:second", limit=1)
    assert failed.status == FAILED
    (tmp_path / "second").unlink()
    away.rename(tmp_path / "second")
    assert snapshots("second") == 0

    now[0] += timedelta(minutes=15)  # the copy's next slot; the job's is a day away
    settle()  # (the day's forget of `second` is retried too, and the copy waits for it)
    (copied,) = catalog.runs("copy:primary:second", limit=1)
    assert copied.status == SUCCEEDED, copied.error
    assert snapshots("second") == 1
    assert [r.status for r in catalog.runs("web")] == ["partial"]  # no backup meanwhile
    catalog.close()


def test_a_clock_jump_neither_kills_a_run_nor_runs_a_slot_twice(
    tmp_path: Path, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The wall clock set forward four hours while a run goes on (a suspended VM, NTP):
    the run is not timed out (timeouts are monotonic), and the missed slots are run once.
    Set back again: nothing runs until the clock passes the slot already run."""
    primary = {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    plan_path = files_job_plan(tmp_path, tmp_path, {"primary": primary}, "1h")
    raw = yaml.safe_load(plan_path.read_text())
    raw["systems"] = {"meters": {"kind": "command", "tier": "important",
                                 "data_classes": ["configuration"],
                                 "command": "sleep 2; echo reading"}}  # fmt: skip
    raw["jobs"] = {"meters": {"system": "meters", "type": "command", "schedule": "1h",
                              "timeout": "10m", "locations": ["primary"]}}  # fmt: skip
    plan_path.write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "drplan", "--plan", str(plan_path), "repo", "init",
                    "primary", *FAST_KDF], check=True, capture_output=True)  # fmt: skip
    here = in_process(plan_path, tmp_path, datetime(2026, 11, 26, 0, 59, 50, tzinfo=UTC))
    now, catalog, daemon, settle = here.now, here.catalog, here.daemon, here.settle
    meters = next(t for t in daemon.tasks if t.name == "meters")
    daemon.tasks = [meters]  # the backup job alone: no upkeep in the way

    def slots() -> list[tuple[str, str]]:
        runs = reversed(catalog.runs("meters"))
        return [(r.slot.strftime("%H:%M") if r.slot else "-", r.status) for r in runs]

    now[0] = datetime(2026, 11, 26, 1, 0, 1, tzinfo=UTC)
    daemon.tick()
    assert set(daemon.running) == {"meters"}
    now[0] += timedelta(hours=4)  # the jump, while it runs (timeout 10m)
    settle()  # it ends well; then 05:00 is due, and 02:00 to 04:00 passed: run once
    assert slots() == [("01:00", "succeeded"), ("05:00", "succeeded")]
    assert "3 slot(s) passed without a run" in caplog.text
    assert "abandoned" not in caplog.text  # its own run is no orphan, whatever its lease says

    for back in (datetime(2026, 11, 26, 2, 30, tzinfo=UTC),  # set back past both runs
                 datetime(2026, 11, 26, 5, 30, tzinfo=UTC)):  # fmt: skip
        now[0] = back
        daemon.tick()
        assert not daemon.running
    now[0] = datetime(2026, 11, 26, 6, 0, 5, tzinfo=UTC)
    daemon.tick()
    settle()
    assert slots() == [("01:00", "succeeded"), ("05:00", "succeeded"), ("06:00", "succeeded")]
    catalog.close()


def test_partial_runs_in_a_row_are_a_problem_though_each_saved_a_snapshot(
    tmp_path: Path, source: Path, password: str
) -> None:
    """Part of the source vanished (an unmounted volume): each run saves what it can read,
    which counts as a recoverable point, so the partial runs themselves are told."""
    plan_path = files_plan(tmp_path, source, "1h")
    raw = yaml.safe_load(plan_path.read_text())
    raw["systems"]["web"]["paths"] = [str(source), str(tmp_path / "unmounted")]
    plan_path.write_text(yaml.safe_dump(raw))
    prepared(plan_path, sqlite_url(str(tmp_path / "unused.db")))
    here = in_process(plan_path, tmp_path, datetime(2026, 11, 26, 0, 59, 0, tzinfo=UTC))
    plan, now, catalog, daemon = here.plan, here.now, here.catalog, here.daemon
    daemon.tasks = [t for t in daemon.tasks if t.name == "web"]
    for hour in (1, 2):
        now[0] = datetime(2026, 11, 26, hour, 0, 5, tzinfo=UTC)
        daemon.tick()
        here.settle()
        (last,) = catalog.runs("web", limit=1)
        assert last.status == "partial"
        assert last.snapshot
        found = problems(plan, None, daemon.failures, None, daemon.partials)
        assert [p.key for p in found] == ([] if hour == 1 else ["partial:web"])
    assert found[0].severity is Severity.WARNING
    assert "saved only part of what it should, 2 runs in a row" in found[0].summary
    assert "unmounted" in found[0].summary
    catalog.close()


def test_serve_runs_a_step_approved_through_the_api_at_once(
    tmp_path: Path, source: Path, password: str
) -> None:
    """The daemon drives incidents itself: an approval given on the web starts its step
    within a second, with nobody typing `drplan incident run`."""
    plan = files_plan(tmp_path, source, "1h")
    raw = yaml.safe_load(plan.read_text())
    ran = tmp_path / "ran"
    raw["roles"]["ic"]["access"] = "commander"
    raw["runbooks"] = {"rb": {"phases": [{"name": "Recover", "window": "0-4h", "steps": [
        {"title": "Switch over", "owner": "ic", "approve": "ic", "recovers": ["web"],
         "run": f"echo $DRPLAN_INCIDENT > {ran}"}]}]}}  # fmt: skip
    raw["scenarios"] = {"web-loss": {"title": "Web loss", "tier": 1, "runbook": "rb"}}
    plan.write_text(yaml.safe_dump(raw))
    drplan, env = prepared(plan, sqlite_url(str(tmp_path / "catalog.db")))
    catalog = Catalog.open(env["DRPLAN_CATALOG"])
    try:
        accounts = Accounts(catalog)
        accounts.add_user("ann", None, None, ["ic"], None, clock.now())
        token = accounts.create_token("ann", "cli", ["incidents:write"], None, clock.now())[0]
    finally:
        catalog.close()
    declared = subprocess.run([*drplan, "incident", "declare", "web-loss", "--json"], env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
    inc = json.loads(declared.stdout)["id"]
    log = (tmp_path / "serve.log").open("wb")
    port = free_port()
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=log, stderr=log)  # fmt: skip

    def explain() -> str:
        return (tmp_path / "serve.log").read_text()

    def timeline() -> list[dict[str, Any]]:
        shown = subprocess.run([*drplan, "incident", "timeline", inc, "--json"], env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
        return [json.loads(line) for line in shown.stdout.splitlines()]

    try:
        wait_until(lambda: "waits for approval" in explain(), "the daemon at the gate", 60, explain)
        assert not ran.exists()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/incidents/{inc}/approvals/1.1", method="POST",
            data=b'{"role": "ic"}', headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        wait_until(lambda: any(e["kind"] == "clock_stopped" for e in timeline()),
                   "the step run and the clock stopped", 60, explain)  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, explain()
    assert ran.read_text() == f"{inc}\n"
    at = {e["kind"]: datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in timeline()}
    assert (at["step_started"] - at["approved"]).total_seconds() < 1.0, explain()

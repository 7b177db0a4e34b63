"""Jobs scheduled `on change` and `on EVENT`, run by the real daemon: a watched edit backed
up within its debounce, `drplan trigger` through the daemon and in the foreground, the
events API and its scope, a flood coalesced, a registry's push notification, a watched
path that vanishes; and the RPO exposure `drplan status` shows for them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from drplan import clock
from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import RUNNING, SUCCEEDED, Catalog, Run
from drplan.plan.loader import load_plan
from drplan.scheduler.daemon import Daemon
from drplan.scheduler.inbox import INBOX, hand_over
from drplan.scheduler.ledger import Ledger
from drplan.scheduler.triggers import Trigger
from drplan.scheduler.watch import Watches
from drplan.web.accounts import Accounts
from testbed import free_port
from testbed.registry import push_image, random_layer
from tests.conftest import wait_until
from tests.fixtures.registry import NewRegistry
from tests.integration.conftest import platform_plan
from tests.integration.test_serve import files_plan, prepared

DEBOUNCE = 1.0  # seconds: the test plan's `debounce`


def tree(tmp_path: Path) -> Path:
    """A small tree to watch (the `source` fixture's name that is not UTF-8 is one the
    watch cannot name: each read of it would end the watch and count as a change)."""
    root = tmp_path / "data"
    (root / "etc" / "app").mkdir(parents=True)
    (root / "etc" / "app" / "app.conf").write_text("listen = 8080\n")
    (root / "logs.txt").write_text("started\n")
    return root


def triggered_plan(tmp_path: Path, source: Path, schedule: str, **job: Any) -> Path:
    path = files_plan(tmp_path, source, "1h")
    raw = yaml.safe_load(path.read_text())
    raw["jobs"]["web"].update({"schedule": schedule, **job})
    path.write_text(yaml.safe_dump(raw))
    return path


def runs(catalog_url: str, job: str = "web") -> list[Run]:
    catalog = Catalog.open(catalog_url)
    try:
        return list(reversed(catalog.runs(job)))  # oldest first
    finally:
        catalog.close()


def token(catalog_url: str, user: str, access: str, *scopes: str) -> str:
    catalog = Catalog.open(catalog_url)
    try:
        accounts = Accounts(catalog)
        accounts.add_user(user, None, None, [], access, clock.now())  # type: ignore[arg-type]
        return accounts.create_token(user, "t", list(scopes), None, clock.now())[0]
    finally:
        catalog.close()


@contextmanager
def serving(
    drplan: list[str], env: dict[str, str], log_path: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """`drplan serve` on ``port``, ready; stopped (SIGTERM, exit 0) at the end."""
    log = log_path.open("wb")
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{port}",
                               "--watch-every", "1s"], env=env, stdout=log, stderr=log)  # fmt: skip

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, "the daemon to answer", 60, log_path.read_text)
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
    assert code == 0, log_path.read_text()


def status(drplan: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([*drplan, "status", "--json"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_an_edit_under_a_watched_path_is_backed_up_within_its_debounce(
    tmp_path: Path, password: str
) -> None:
    source = tree(tmp_path)
    plan = triggered_plan(tmp_path, source, "on change", debounce=f"{DEBOUNCE:g}s")
    catalog_url = sqlite_url(str(tmp_path / "catalog.db"))
    drplan, env = prepared(plan, catalog_url)
    log = tmp_path / "serve.log"
    with serving(drplan, env, log, free_port()):
        # Started: what changed while nothing watched cannot be known, so it runs once.
        wait_until(lambda: any(r.status == SUCCEEDED for r in runs(catalog_url)),
                   "the run the daemon owes at its start", 60, log.read_text)  # fmt: skip
        first = runs(catalog_url)[0]
        assert first.triggered_by is not None
        assert first.triggered_by["source"] == "watch"
        wait_until(lambda: not Ledger(env["DRPLAN_STATE_DIR"]).read()["web"].changes,
                   "the start's change to be backed up", 30, log.read_text)  # fmt: skip
        assert status(drplan, env)["data_classes"]["configuration"]["exposure_seconds"] == 0

        edited = time.monotonic()
        (source / "etc" / "app" / "app.conf").write_text("listen = 9090\n")

        done = len(runs(catalog_url))

        def backed_up() -> bool:
            return any(r.status == SUCCEEDED for r in runs(catalog_url)[done:])

        wait_until(backed_up, "the edit to be backed up", DEBOUNCE + 5, log.read_text)
        assert time.monotonic() - edited <= DEBOUNCE + 5
        edit_run = runs(catalog_url)[done]
        assert edit_run.triggered_by is not None
        assert edit_run.triggered_by["event"] == "change"
        assert "app.conf" in edit_run.triggered_by["detail"]
        shown = status(drplan, env)
        assert shown["data_classes"]["configuration"]["exposure_seconds"] == 0
        assert shown["jobs"]["web"]["trigger"]["unbacked_since"] is None

        # The watched path vanishes: said in the log and by `drplan status`, the job at risk.
        moved = source.with_name("moved-away")
        source.rename(moved)
        wait_until(lambda: status(drplan, env)["jobs"]["web"]["at_risk"],
                   "the lost watch to show", 30, log.read_text)  # fmt: skip
        job = status(drplan, env)["jobs"]["web"]
        assert str(source) in job["trigger"]["lost"]
        assert "does not exist" in job["trigger"]["lost"][str(source)]["reason"]
        assert f"the watch on {source} is lost" in log.read_text()
        # Back: watched again, and what changed meanwhile is backed up.
        moved.rename(source)
        wait_until(lambda: not status(drplan, env)["jobs"]["web"]["at_risk"],
                   "the watch to be armed again", 30, log.read_text)  # fmt: skip
        wait_until(lambda: not Ledger(env["DRPLAN_STATE_DIR"]).read()["web"].changes,
                   "the gap to be backed up", 60, log.read_text)  # fmt: skip
    # Stopped: nothing watches now, so the job is at risk until a daemon does again.
    assert status(drplan, env)["jobs"]["web"]["at_risk"]


def test_status_shows_the_exposure_of_a_change_until_it_is_backed_up(
    tmp_path: Path, password: str
) -> None:
    """On the daemon's own clock, held still: the edit is seen at once, its run waits for
    the clock to pass the debounce, and `drplan status` reads the exposure meanwhile."""
    source = tree(tmp_path)
    plan_path = triggered_plan(tmp_path, source, "on change", debounce="30s")
    catalog_url = sqlite_url(str(tmp_path / "catalog.db"))
    drplan, env = prepared(plan_path, catalog_url)
    state = env["DRPLAN_STATE_DIR"]
    # Its clock starts in the past and only moves forward, to real time at the edit.
    now = [datetime.now(UTC) - timedelta(minutes=5)]
    catalog = Catalog.open(catalog_url)
    daemon = Daemon(load_plan(plan_path).plan, str(plan_path), catalog, lambda: now[0],
                    env={**env, "DRPLAN_PLAN": str(plan_path)}, state_dir=state)  # fmt: skip
    watches = Watches(Ledger(state), lambda job, what, at: daemon.fire(
        job, Trigger("change", "watch", at, what)), lambda: now[0])  # fmt: skip
    watches.arm(daemon.plan)

    def settle() -> None:
        def ended() -> bool:
            daemon.tick()
            return not daemon.running

        wait_until(ended, "the run to end", 120)

    try:
        daemon.fire("web", Trigger("change", "watch", now[0], "first"))
        now[0] += timedelta(seconds=31)
        settle()
        assert runs(catalog_url)[-1].status == SUCCEEDED
        assert status(drplan, env)["data_classes"]["configuration"]["exposure_seconds"] == 0

        now[0] = datetime.now(UTC)
        (source / "logs.txt").write_text("a new line\n")
        wait_until(lambda: bool(Ledger(state).read()["web"].changes), "the edit to be seen", 30)
        daemon.tick()
        assert not daemon.running  # quiet for less than the debounce on its clock
        before = status(drplan, env)
        assert before["data_classes"]["configuration"]["exposure_seconds"] > 0
        assert "not backed up since" in before["data_classes"]["configuration"]["source"]
        assert before["jobs"]["web"]["trigger"]["unbacked_since"] is not None

        now[0] = datetime.now(UTC) + timedelta(seconds=31)
        settle()
        assert [r.status for r in runs(catalog_url)] == [SUCCEEDED, SUCCEEDED]
        after = status(drplan, env)
        assert after["data_classes"]["configuration"]["exposure_seconds"] == 0
        assert after["jobs"]["web"]["trigger"]["unbacked_since"] is None
    finally:
        watches.stop()
        daemon.shutdown()
        catalog.close()


def test_events_from_the_cli_and_the_api_run_the_job_coalesced(
    tmp_path: Path, source: Path, password: str
) -> None:
    plan = triggered_plan(tmp_path, source, "on deployment")
    catalog_url = sqlite_url(str(tmp_path / "catalog.db"))
    drplan, env = prepared(plan, catalog_url)
    writer = token(catalog_url, "ci", "responder", "events:write")
    reader = token(catalog_url, "grafana", "responder", "read")  # may, but not this token
    port = free_port()
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}/api/v1/events"

    def post(path: str, key: str | None, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{url}{path}", headers=headers, json=body, timeout=10)

    def ledger_quiet() -> bool:
        """Every event backed up, nothing running: nothing is pending any more."""
        record = Ledger(env["DRPLAN_STATE_DIR"]).read().get("web")
        return record is not None and not record.changes and all(
            r.status != RUNNING for r in runs(catalog_url))  # fmt: skip

    unknown = subprocess.run([*drplan, "trigger", "release"], env=env, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert unknown.returncode == 2
    assert "deployment" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    with serving(drplan, env, log, port) as daemon:
        asked = subprocess.run([*drplan, "trigger", "deployment", "--json"], env=env,
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout) == {"event": "deployment", "daemon": daemon.pid,
                                            "queued": ["web"]}  # fmt: skip
        wait_until(ledger_quiet, "the CLI's event to be backed up", 60, log.read_text)
        (by_cli,) = runs(catalog_url)
        assert by_cli.status == SUCCEEDED
        assert by_cli.triggered_by is not None
        assert (by_cli.triggered_by["event"], by_cli.triggered_by["source"]) == (
            "deployment",
            "cli",
        )

        assert post("/deployment", None).status_code == 401
        assert post("/deployment", "drplan_nothing_here").status_code == 401
        refused = post("/deployment", reader)
        assert refused.status_code == 403
        assert "events:write" in refused.json()["detail"]
        missing = post("/release", writer)
        assert missing.status_code == 404
        assert "deployment" in missing.json()["detail"]
        assert post("/deployment", writer, {"job": "nope"}).status_code == 404
        queued = post("/deployment", writer, {"job": "web"})
        assert queued.status_code == 202, queued.text
        assert queued.json()["queued"] == ["web"]
        wait_until(ledger_quiet, "the API's event to be backed up", 60, log.read_text)
        by_api = runs(catalog_url)[-1]
        assert by_api.triggered_by is not None
        assert by_api.triggered_by["source"] == "api"
        trail = httpx.get(f"http://127.0.0.1:{port}/api/v1/audit", timeout=10,
                          headers={"Authorization": f"Bearer {token(catalog_url, 'root', 'admin', 'admin')}"})  # fmt: skip
        assert any(e["kind"] == "event.trigger" for e in trail.json()["items"]), trail.text

        # A flood through the API: every event answered at once and backed up, one run at
        # a time (how many runs depends on how long the requests take on a loaded host).
        before = len(runs(catalog_url))
        with ThreadPoolExecutor(50) as burst:
            answers = list(burst.map(lambda _: post("/deployment", writer).status_code, range(50)))
        assert answers == [202] * 50
        wait_until(ledger_quiet, "the API's flood to be backed up", 120, log.read_text)
        flood = runs(catalog_url)[before:]
        assert all(r.status == SUCCEEDED for r in flood), [(r.status, r.error) for r in flood]
        assert sum(r.triggered_by["count"] for r in flood if r.triggered_by) == 50, (
            flood,
            log.read_text(),
        )
        for ran, following in itertools.pairwise(flood):
            assert ran.ended_at is not None
            assert following.started_at >= ran.ended_at

        # A burst that arrives all at once (50 events handed over as `drplan trigger`
        # does, in one rename of the inbox): one run, at most one pending behind it.
        before = len(runs(catalog_url))
        scratch = tmp_path / "burst"
        for _ in range(50):
            hand_over(str(scratch), "deployment", None, clock.now())
        inbox = Path(env["DRPLAN_STATE_DIR"]) / INBOX
        inbox.rename(tmp_path / "old-inbox")
        (scratch / INBOX).rename(inbox)
        wait_until(lambda: len(runs(catalog_url)) > before, "the burst to start a run", 30,
                   log.read_text)  # fmt: skip
        wait_until(ledger_quiet, "the burst to be backed up", 120, log.read_text)
        burst_runs = runs(catalog_url)[before:]
        assert 1 <= len(burst_runs) <= 2, [(r.started_at, r.triggered_by) for r in burst_runs]
        assert sum(r.triggered_by["count"] for r in burst_runs if r.triggered_by) == 50

    # No daemon: run in the foreground, with its outcome, recorded.
    done = subprocess.run([*drplan, "trigger", "deployment"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "job web: succeeded: snapshot" in done.stdout
    foreground = runs(catalog_url)[-1]
    assert foreground.status == SUCCEEDED
    assert foreground.snapshot is not None
    assert foreground.triggered_by is not None
    assert foreground.triggered_by["source"] == "cli"
    assert status(drplan, env)["data_classes"]["configuration"]["exposure_seconds"] == 0


def test_a_registry_push_notification_runs_the_images_job(
    tmp_path: Path, new_registry: NewRegistry, password: str
) -> None:
    catalog_url = sqlite_url(str(tmp_path / "catalog.db"))
    hook = token(catalog_url, "registry", "responder", "events:write")
    port = free_port()
    registry = new_registry(notify_url=f"http://127.0.0.1:{port}/api/v1/hooks/registry",
                            notify_headers={"Authorization": f"Bearer {hook}"})  # fmt: skip
    locations = {"primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "repo")}}
    systems = {"images": {"kind": "images", "registry": registry.url, "images": ["shop/api:v*"]}}
    plan = platform_plan(tmp_path, systems, locations, "on deployment")
    env = {**os.environ, "DRPLAN_CATALOG": catalog_url, "DRPLAN_STATE_DIR": str(tmp_path / "state")}
    drplan = [sys.executable, "-m", "drplan", "--plan", str(plan)]
    log = tmp_path / "serve.log"
    with serving(drplan, env, log, port):
        client = registry.client()
        push_image(client, "shop/other", "v1", [random_layer(2000, 1)])  # not backed up
        push_image(client, "shop/api", "v2", [random_layer(2000, 2)])

        def fired() -> bool:
            return any(r.status == SUCCEEDED for r in runs(catalog_url, "images"))

        wait_until(fired, "the push to run the images job", 60, log.read_text)
    (run,) = runs(catalog_url, "images")
    assert run.triggered_by is not None
    assert (run.triggered_by["source"], run.triggered_by["event"]) == ("webhook", "deployment")
    assert run.triggered_by["detail"] == "push shop/api:v2"

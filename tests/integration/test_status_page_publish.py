"""The status page outlives the data center: its static copy is written to an S3
location (SeaweedFS here) by `drplan status-page publish` and by the daemon at every
change, and is read back from the bucket once the primary location is gone, with the
content types a website bucket serves. Its webhook subscribers are told each change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from drplan.catalog.paths import sqlite_url
from drplan.sources.postgres.scratch import free_port
from testbed.endpoint import Endpoint
from testbed.plans import clean_plan
from testbed.seaweedfs import SeaweedFS
from tests.conftest import Result, minutes_ago, wait_until
from tests.fixtures.receivers import HttpReceiver
from tests.integration.test_locations import s3_location

Run = Callable[..., Result]


API = {"api": {"title": "Meter ingestion API", "systems": ["db"]}}


def local(tmp_path: Path) -> dict[str, Any]:
    """The one location of these plans: a local repository."""
    return {"local": {"role": "primary", "kind": "local", "path": str(tmp_path / "repo")}}


def page_plan(tmp_path: Path, locations: dict[str, Any], status_page: dict[str, Any],
              **sections: Any) -> Path:  # fmt: skip
    """The clean plan with no jobs, its database class in ``locations``, a status page
    "Test status" with ``status_page``'s settings, and ``sections``: tmp_path/plan.yaml."""
    raw = clean_plan()
    raw["locations"] = locations
    raw["jobs"] = {}
    raw["data_classes"]["database"]["locations"] = list(locations)
    raw["status_page"] = {"title": "Test status", **status_page}
    raw.update(sections)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw))
    return plan


def test_the_static_copy_is_read_back_from_s3_after_the_primary_location_is_gone(
    run: Run, tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str,
    monkeypatch: Any,
) -> None:  # fmt: skip
    bucket = seaweedfs.create_bucket()
    plan = page_plan(tmp_path, {
        "local": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "cloud": s3_location(seaweedfs, bucket, "cloud"),
    }, {"publish_to": ["cloud"], "components": API})  # fmt: skip
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRPLAN_CATALOG", sqlite_url(str(tmp_path / "catalog.db")))
    (tmp_path / "primary").mkdir()
    (tmp_path / "primary" / "some-backup").write_text("the primary site's data")
    s3 = seaweedfs.client()

    def copy(name: str) -> tuple[str, bytes]:
        found = s3.get_object(Bucket=bucket, Key=f"drplan/status-page/{name}")
        return found["ContentType"], found["Body"].read()

    def api_state() -> str:
        summary = json.loads(copy("summary.json")[1])
        return str(next(c["status"] for c in summary["components"] if c["id"] == "api"))

    declared = run("--plan", str(plan), "incident", "declare", "db-loss", "--systems", "db",
                   "--since", minutes_ago(5), "--json")  # fmt: skip
    assert declared.code == 0, declared.err
    inc = json.loads(declared.out)["id"]
    published = run("--plan", str(plan), "status-page", "publish")
    assert published.code == 0, published.err
    assert published.out.strip() == "published the status page to cloud (status-page/index.html)"

    shutil.rmtree(tmp_path / "primary")  # the data center is gone; the bucket is not
    kind, page = copy("index.html")
    assert kind == "text/html; charset=utf-8"
    assert b"Major System Outage" in page
    assert b"Meter ingestion API" in page
    assert b"<style>" in page  # served alone: its stylesheet inside
    assert copy("summary.json")[0] == "application/json"
    assert api_state() == "major_outage"

    # The daemon publishes at every change: the resolution reaches the bucket by itself.
    env = {**os.environ, "DRPLAN_PASSWORD": password}
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "drplan", "--plan", str(plan), "serve",
                               "--listen", f"127.0.0.1:{free_port()}"], env=env,
                              stdout=log, stderr=log)  # fmt: skip
    try:
        resolved = run("--plan", str(plan), "incident", "resolve", inc, "--waive", "db=by hand")
        assert resolved.code == 0, resolved.err

        def told() -> list[tuple[str, str]]:
            incidents = json.loads(copy("incidents.json")[1])["incidents"]
            return [(i["id"], i["status"]) for i in incidents]

        # The files are written one after the other: each is waited for.
        wait_until(lambda: api_state() == "operational", "the daemon to publish the resolution",
                   60, (tmp_path / "serve.log").read_text)  # fmt: skip
        wait_until(lambda: told() == [(inc, "resolved")], "the resolved incident", 30,
                   lambda: str(told()))  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(60)


def test_webhook_subscribers_are_told_each_change_once_in_statuspages_format(
    run: Run, tmp_path: Path, receiver: HttpReceiver, monkeypatch: Any, password: str,
) -> None:  # fmt: skip
    """The daemon tells a subscriber the component going down and the incident, then
    both back; restarted, it tells only what is new."""
    plan = page_plan(tmp_path, local(tmp_path), {"subscribers": ["subscriber"], "components": API},
                     channels={"subscriber": {"kind": "webhook", "url": "${HOOK_URL}",
                                              "signing_secret": "${HOOK_SECRET}"}})  # fmt: skip
    receiver.webhook_secret = "hook-secret-SENTINEL"
    for name, value in (("DRPLAN_STATE_DIR", str(tmp_path / "state")),
                        ("DRPLAN_CATALOG", sqlite_url(str(tmp_path / "catalog.db"))),
                        ("HOOK_SECRET", receiver.webhook_secret),
                        ("HOOK_URL", f"{receiver.url}/subscriber"),
                        ("DRPLAN_PASSWORD", password)):  # fmt: skip
        monkeypatch.setenv(name, value)
    told = tmp_path / "state" / "status-page-subscribers.json"

    def notices() -> list[tuple[str, str]]:
        return [("component", b["component_update"]["new_status"]) if "component_update" in b
                else ("incident", b["incident"]["status"]) for b in receiver.bodies("/subscriber")]  # fmt: skip

    def serve() -> subprocess.Popen[bytes]:
        log = (tmp_path / "serve.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "drplan", "--plan", str(plan), "serve",
                                 "--listen", f"127.0.0.1:{free_port()}"], env=dict(os.environ),
                                stdout=log, stderr=log)  # fmt: skip

    def declare() -> str:
        done = run("--plan", str(plan), "incident", "declare", "db-loss", "--systems", "db",
                   "--since", minutes_ago(5), "--json")  # fmt: skip
        assert done.code == 0, done.err
        return str(json.loads(done.out)["id"])

    explain = (tmp_path / "serve.log").read_text
    daemon = serve()
    try:
        wait_until(told.exists, "the subscriber taken on", 60, explain)
        first = declare()
        wait_until(lambda: notices() == [("component", "major_outage"), ("incident", "investigating")],
                   "the outage told", 60, lambda: f"{notices()}\n{explain()}")  # fmt: skip
        assert run("incident", "resolve", first, "--waive", "db=by hand").code == 0
        wait_until(lambda: notices()[2:] == [("component", "operational"), ("incident", "resolved")],
                   "the recovery told", 60, lambda: f"{notices()}\n{explain()}")  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(60)
    daemon = serve()
    try:
        second = declare()
        wait_until(lambda: len(notices()) == 6, "the second outage told", 60,
                   lambda: f"{notices()}\n{explain()}")  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(60)
    last = receiver.bodies("/subscriber")[-1]["incident"]
    assert (last["id"], last["status"]) == (second, "investigating")  # the first not told again
    assert len(notices()) == 6
    assert receiver.violations == []  # each in Statuspage's format, signed


def test_the_daemons_probes_set_a_components_state_and_count_in_its_90_days(
    tmp_path: Path, monkeypatch: Any, password: str
) -> None:
    """An HTTP probe whose server stops, and a command probe whose check starts failing:
    each component goes to a major outage after two failed probes, with no incident, and
    back once they answer; today's bar shows it."""
    health = Endpoint("/health")
    marker = tmp_path / "site-is-up"
    marker.touch()
    port = free_port()
    plan = page_plan(tmp_path, local(tmp_path), {"components": {
        "api": {"title": "Meter ingestion API", "systems": ["db"], "probe": {
            "url": health.url, "every": "1s", "timeout": "1s", "failures": 2}},
        "site": {"title": "Customer dashboard", "systems": ["web"], "probe": {
            "command": f"test -e {marker}", "every": "1s"}}}},
        web={"listen": f"127.0.0.1:{port}"})  # fmt: skip
    env = {**os.environ, "DRPLAN_PASSWORD": password, "DRPLAN_STATE_DIR": str(tmp_path / "state"),
           "DRPLAN_CATALOG": sqlite_url(str(tmp_path / "catalog.db"))}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "drplan", "--plan", str(plan), "serve"],
                              env=env, stdout=log, stderr=log)  # fmt: skip
    explain = (tmp_path / "serve.log").read_text

    def states() -> dict[str, str]:
        try:
            found = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/v2/components.json", timeout=10).read())  # fmt: skip
        except OSError:
            return {}
        return {c["id"]: c["status"] for c in found["components"] if not c["group"]}

    try:
        wait_until(lambda: len(health.arrived) >= 1 and states() == {"api": "operational", "site": "operational"},
                   "the first probes", 60, explain)  # fmt: skip
        health.close()
        marker.unlink()
        wait_until(lambda: states() == {"api": "major_outage", "site": "major_outage"},
                   "both found out", 60, explain)  # fmt: skip
        marker.touch()
        wait_until(lambda: states()["site"] == "operational", "the site back", 60, explain)
        page = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status-page", timeout=10)
            .read()
            .decode()
        )
    finally:
        daemon.terminate()
        daemon.wait(60)
        log.close()
    rows = {row.split('"')[0]: row for row in page.split('data-component="')[1:]}
    today = rows["api"].split("<span ")[-1]
    assert 'class="major_outage"' in today  # the probes' outage counts in the 90 days
    history = [json.loads(line) for line in (tmp_path / "state" / "status-page-probes.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert [(h["component"], h["state"]) for h in history if h["component"] == "site"] == [
        ("site", "major_outage"), ("site", "operational")]  # fmt: skip
    assert "status page: api is major outage (no answer" in explain()

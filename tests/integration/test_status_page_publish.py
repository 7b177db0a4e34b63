"""The status page outlives the data center: its static copy is written to an S3
location (SeaweedFS here) by `drplan status-page publish` and by the daemon at every
change, and is read back from the bucket once the primary location is gone, with the
content types a website bucket serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from drplan.catalog.paths import sqlite_url
from drplan.sources.postgres.scratch import free_port
from testbed.plans import clean_plan
from testbed.seaweedfs import SeaweedFS
from tests.conftest import Result, minutes_ago, wait_until
from tests.integration.test_locations import s3_location

Run = Callable[..., Result]


def test_the_static_copy_is_read_back_from_s3_after_the_primary_location_is_gone(
    run: Run, tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str,
    monkeypatch: Any,
) -> None:  # fmt: skip
    bucket = seaweedfs.create_bucket()
    raw = clean_plan()
    raw["locations"] = {
        "local": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "cloud": s3_location(seaweedfs, bucket, "cloud"),
    }
    raw["jobs"] = {}
    raw["data_classes"]["database"]["locations"] = ["local", "cloud"]
    raw["status_page"] = {
        "title": "Test status", "publish_to": ["cloud"],
        "components": {"api": {"title": "Meter ingestion API", "systems": ["db"]}},
    }  # fmt: skip
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw))
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

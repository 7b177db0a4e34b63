"""`drplan status`: a data class's exposure judged against its RPO in every location
it must be recoverable from, as time passes; a location without the repository is
unknown, never fine; the daemon's last run of each job shown from the catalog."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import FAILED, Catalog
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import files_job_plan
from tests.integration.test_locations import FAST_KDF, s3_location

Run = Callable[..., Result]
T = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def files_plan(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str, source: Path
) -> Path:
    """Configuration (RPO 4h) backed up hourly to a local primary and copied to S3."""
    return files_job_plan(tmp_path, source, {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "cloud": s3_location(seaweedfs, seaweedfs.create_bucket(), "cloud"),
    })  # fmt: skip


def status_at(run: Run, plan: Path, now: datetime, monkeypatch: pytest.MonkeyPatch,
              *extra: str) -> tuple[int, dict[str, Any]]:  # fmt: skip
    monkeypatch.setenv("DRPLAN_NOW", now.isoformat())
    result = run("--plan", str(plan), "status", "--json", *extra)
    return result.code, json.loads(result.out)


def test_exposure_climbs_past_the_objective_and_a_missing_copy_is_unknown(
    run: Run, files_plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = str(files_plan)
    assert run("--plan", plan, "repo", "init", "primary", *FAST_KDF).code == 0
    monkeypatch.setenv("DRPLAN_NOW", T.isoformat())
    backed = run("--plan", plan, "backup", "web", "--json")
    assert backed.code == 16, backed.err  # saved in primary; the cloud holds no repository yet

    code, status = status_at(run, files_plan, T + timedelta(minutes=30), monkeypatch)
    assert code == 1  # unknown somewhere it must be recoverable from
    by_location = {e["location"]: e for e in status["exposures"]}
    assert by_location["primary"]["status"] == "ok"
    assert by_location["primary"]["exposure_seconds"] == 1800
    assert by_location["cloud"]["status"] == "unknown"
    assert "no repository" in by_location["cloud"]["error"]
    assert status["data_classes"]["configuration"]["location"] == "primary"
    assert status["locations"]["cloud"]["state"] == "unreachable"

    seeded = run("--plan", plan, "copy", "--from", "primary", "--to", "cloud")
    assert seeded.code == 0, seeded.err
    for hours, expected, code_wanted in ((1, "ok", 0), (3.5, "at_risk", 0), (5, "breached", 1)):
        code, status = status_at(run, files_plan, T + timedelta(hours=hours), monkeypatch)
        assert code == code_wanted, status
        assert {e["status"] for e in status["exposures"]} == {expected}
        assert status["data_classes"]["configuration"]["objective_seconds"] == 4 * 3600
    job = status["jobs"]["web"]
    assert job["newest"] == "2026-11-26T09:00:00Z"
    assert job["next_run"] == "2026-11-26T15:00:00Z"  # hourly, after T+5h
    assert job["last_run"] is None  # no daemon has run here

    # The daemon's catalog says the last run failed: status shows it as failing.
    catalog = Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))
    failed = catalog.start_run("web", "host-a", T + timedelta(hours=1), slot=T + timedelta(hours=1))
    catalog.finish_run(failed, FAILED, T + timedelta(hours=1, minutes=1),
                       error="location primary: no space left on device")  # fmt: skip
    catalog.close()
    code, status = status_at(run, files_plan, T + timedelta(hours=2), monkeypatch,
                             "--catalog", sqlite_url(str(tmp_path / "catalog.db")))  # fmt: skip
    assert code == 0
    assert status["jobs"]["web"]["failing"] is True
    assert status["jobs"]["web"]["last_run"]["error"] == "location primary: no space left on device"

    text = run("--plan", plan, "status", "--catalog", sqlite_url(str(tmp_path / "catalog.db")))
    assert text.code == 0, text.err
    for words in ("configuration", "ok", "primary", "cloud", "failed"):
        assert words in text.out


def test_open_incidents_come_first(
    run: Run, files_plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(files_plan.read_text())
    raw["roles"] = {"ic": {"title": "Incident Commander", "holder": "CTO"}}
    raw["runbooks"] = {
        "rb": {
            "phases": [
                {
                    "name": "Recover",
                    "window": "0-4h",
                    "steps": [{"title": "Restore web", "owner": "ic"}],
                }
            ]
        }
    }
    raw["scenarios"] = {"web-loss": {"title": "Web config lost", "tier": 2, "runbook": "rb",
                                     "affects": ["web"]}}  # fmt: skip
    files_plan.write_text(yaml.safe_dump(raw))
    plan = str(files_plan)
    assert run("--plan", plan, "repo", "init", "primary", *FAST_KDF).code == 0
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRPLAN_NOW", T.isoformat())
    assert run("--plan", plan, "backup", "web").code == 16  # the cloud is seeded next
    assert run("--plan", plan, "copy", "--from", "primary", "--to", "cloud").code == 0
    assert run("--plan", plan, "incident", "declare", "web-loss").code == 0
    monkeypatch.setenv("DRPLAN_NOW", (T + timedelta(hours=1)).isoformat())
    text = run("--plan", plan, "status")
    first = text.out.splitlines()[0]
    assert first.startswith("INCIDENT INC-")
    assert "Web config lost (tier 2), open since 2026-11-26T09:00:00Z: web 7h00m left" in first
    _, status = status_at(run, files_plan, T + timedelta(hours=1), monkeypatch)
    (incident,) = status["incidents"]
    assert incident["clock"]["systems"][0]["remaining_seconds"] == 7 * 3600  # important: 8h

"""Fixtures shared by every test: the SmartWatts plan, a plan that lints clean, running the CLI."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.cli import main

pytest_plugins = [
    "tests.fixtures.seaweedfs",
    "tests.fixtures.postgres",
    "tests.fixtures.receivers",
]
ROOT = Path(__file__).resolve().parent.parent
SMARTWATTS = ROOT / "examples" / "smartwatts" / "plan.yaml"
SMARTWATTS_SECRETS = {
    "SMARTWATTS_DB_PASSWORD": "sw-db-pass-SENTINEL-1",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/SENTINEL-2",
    "SMTP_PASSWORD": "smtp-SENTINEL-3",
    "PAGERDUTY_ROUTING_KEY": "pd-SENTINEL-4",
    "STATUS_PAGE_API_KEY": "sp-SENTINEL-5",
}


def clean_plan() -> dict[str, Any]:
    """A small plan that passes validate and lint with no finding at all."""
    today = dt.datetime.now(dt.UTC).date()
    return {
        "version": 1,
        "name": "Test Platform",
        "objectives": {
            "rto": {
                "critical": "4h",
                "important": "8h",
                "non_critical": "12h",
                "full_platform": "12h",
            },
            "rpo": {"database": "15m", "configuration": "4h"},
        },
        "data_classes": {
            "database": {"retention": {"full": "30d"}, "locations": ["local", "cloud"]},
        },
        "systems": {
            "db": {
                "kind": "postgres",
                "tier": "critical",
                "data_classes": ["database"],
                "connection": "host=127.0.0.1 port=5432 user=drplan",
                "password": "${TEST_DB_PASSWORD}",
            },
            "web": {
                "kind": "files",
                "tier": "important",
                "data_classes": ["configuration"],
                "paths": ["/etc/web"],
                "depends_on": ["db"],
            },
        },
        "locations": {
            "local": {"role": "primary", "kind": "local", "path": "/var/backups/drplan"},
            "cloud": {
                "role": "cloud",
                "kind": "s3",
                "bucket": "dr-test",
                "immutability": {"days": 30},
            },
        },
        "jobs": {
            "db-full": {
                "system": "db",
                "type": "full",
                "schedule": "0 1 * * *",
                "retention": {"keep_within": "30d"},
                "locations": ["local", "cloud"],
            },
            "db-wal": {
                "system": "db",
                "type": "wal",
                "schedule": "continuous",
                "locations": ["local", "cloud"],
            },
            "web": {
                "system": "web",
                "type": "files",
                "schedule": "1h",
                "retention": {"keep_within": "30d"},
                "locations": ["local", "cloud"],
            },
        },
        "roles": {"ic": {"title": "Incident Commander", "holder": "CTO", "phone": "+1-555-0001"}},
        "runbooks": {
            "rb": {
                "phases": [
                    {
                        "name": "Respond",
                        "window": "0-1h",
                        "steps": [{"title": "Assess", "owner": "ic"}],
                    },
                    {
                        "name": "Recover",
                        "window": "1-4h",
                        "steps": [{"title": "Restore db", "owner": "ic", "recovers": ["db"]}],
                    },
                ]
            }
        },
        "scenarios": {"db-loss": {"title": "Database loss", "tier": 1, "runbook": "rb"}},
        "drills": {"quarterly": {"kind": "full_platform", "schedule": "0 3 1 1,4,7,10 *"}},
        "review": {
            "version": "1",
            "last_updated": str(today - dt.timedelta(days=10)),
            "next_review": str(today + dt.timedelta(days=80)),
            "every": "3mo",
            "approved_by": "CTO",
        },
    }


@pytest.fixture
def plan_data() -> dict[str, Any]:
    return copy.deepcopy(clean_plan())


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run the CLI in-process and capture its exit code and output."""
    monkeypatch.setenv("COLUMNS", "200")

    def _run(*args: str) -> Result:
        code = main(list(args))
        captured = capfd.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    def _write(plan: dict[str, Any] | str) -> Path:
        path = tmp_path / "plan.yaml"
        path.write_text(plan if isinstance(plan, str) else dump(plan), encoding="utf-8")
        return path

    return _write


WAIT_TIMEOUT = 120.0


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float = WAIT_TIMEOUT,
    explain: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.05)

"""Fixtures shared by every test: the SmartWatts plan, a plan that lints clean, running the CLI."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from drplan.cli import main
from testbed.plans import clean_plan

pytest_plugins = [
    "tests.fixtures.seaweedfs",
    "tests.fixtures.postgres",
    "tests.fixtures.receivers",
    "tests.fixtures.web",
    "tests.fixtures.browser",
    "tests.fixtures.etcd",
    "tests.fixtures.registry",
    "tests.fixtures.gitserver",
]
ROOT = Path(__file__).resolve().parent.parent
SMARTWATTS = ROOT / "examples" / "smartwatts" / "plan.yaml"
SMARTWATTS_SECRETS = {
    "SMARTWATTS_DB_PASSWORD": "sw-db-pass-SENTINEL-1",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/SENTINEL-2",
    "SMTP_PASSWORD": "smtp-SENTINEL-3",
    "PAGERDUTY_ROUTING_KEY": "pd-SENTINEL-4",
    "STATUS_PAGE_API_KEY": "sp-SENTINEL-5",
    "REGISTRY_PASSWORD": "registry-SENTINEL-6",
}


@pytest.fixture(autouse=True)
def _own_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What drplan keeps by default in ``~/.local/state/drplan`` (the catalog, check
    rotations) goes to the test's own directory: tests neither share nor leave state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


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


def minutes_ago(minutes: int) -> str:
    """The wall-clock time ``minutes`` ago, whole minutes, RFC 3339: incident tests declare
    disasters in the recent past, since one dated hours back is already late and escalates."""
    moment = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    return clock.rfc3339(moment)


def shifted(moment: str, minutes: int) -> str:
    """``moment`` (RFC 3339) plus ``minutes``."""
    return clock.rfc3339(clock.parse_rfc3339(moment) + timedelta(minutes=minutes))

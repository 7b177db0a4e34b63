"""``drplan locations status`` when locations are down: the whole table all the same, each
location that cannot be used saying why in one line, and an exit code scripts can test.

Down here means an S3 endpoint on a closed loopback port (unreachable) and a local path
holding no repository (lost); nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drplan.errors import LocationDownError
from testbed.plans import clean_plan
from tests.conftest import Result

Run = Callable[..., Result]
S3_KEY, S3_SECRET = "AKIA-SENTINEL-KEY-1", "s3-SENTINEL-SECRET-2"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRPLAN_PASSWORD", "correct horse battery staple")
    monkeypatch.setenv("TEST_DB_PASSWORD", "not-used")
    monkeypatch.setenv("DR_S3_KEY", S3_KEY)
    monkeypatch.setenv("DR_S3_SECRET", S3_SECRET)
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", "1")
    monkeypatch.setenv("DRPLAN_S3_TIMEOUT", "2")


def plan_with(write_plan: Callable[..., Path], locations: dict[str, Any]) -> str:
    plan = clean_plan()
    plan["locations"] = locations
    plan["data_classes"]["database"]["locations"] = list(locations)
    for job in plan["jobs"].values():
        job["locations"] = list(locations)
    return str(write_plan(plan))


def closed_s3() -> dict[str, Any]:
    return {"role": "cloud", "kind": "s3", "bucket": "dr-test", "endpoint": CLOSED,
            "region": "us-east-1", "access_key_id": "${DR_S3_KEY}",
            "secret_access_key": "${DR_S3_SECRET}"}  # fmt: skip


def states_shown(table: str) -> dict[str, str]:
    """Each location's state column in the table, its wrapped lines joined."""
    found: dict[str, list[str]] = {}
    current = None
    for line in table.splitlines():
        if not line.startswith("│"):
            continue  # borders and the header
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0] and cells[1]:  # a location's first line names it and its role
            current = cells[0]
            found[current] = []
        if current is not None and cells[2]:
            found[current].append(cells[2])
    return {name: " ".join(parts) for name, parts in found.items()}


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        assert S3_KEY not in text
        assert S3_SECRET not in text


def test_a_location_that_is_down_has_its_row_saying_why_and_fails_the_command(
    run: Run, write_plan: Callable[..., Path], tmp_path: Path
) -> None:
    plan = plan_with(write_plan, {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "secondary": {"role": "secondary", "kind": "local", "path": str(tmp_path / "unmounted")},
        "cloud": closed_s3(),
    })  # fmt: skip
    made = run("--plan", plan, "repo", "init", "primary", "--kdf-memory", "1024", "--kdf-time", "1")
    assert made.code == 0, made.err

    shown = run("--plan", plan, "locations", "status")
    assert shown.code == LocationDownError.exit_code == 23
    table = states_shown(shown.out)
    assert set(table) == {"primary", "secondary", "cloud"}
    assert table["primary"] == "ok"
    assert "unreachable" in table["cloud"]
    assert "127.0.0.1:9 did not answer: connection refused" in table["cloud"]
    assert "lost" in table["secondary"]
    assert "no repository here" in table["secondary"]
    assert shown.err.count("\n") == 1  # one line: what is wrong, then what to do
    assert "2 of 3 locations cannot be used: secondary (lost), cloud (unreachable)" in shown.err
    assert "Traceback" not in shown.out + shown.err
    _no_secret_in(shown.out, shown.err)

    listed = run("--plan", plan, "locations", "status", "--json")
    assert listed.code == 23
    states = {entry["location"]: entry for entry in json.loads(listed.out)}
    assert {name: s["state"] for name, s in states.items()} == {
        "primary": "ok", "secondary": "lost", "cloud": "unreachable",
    }  # fmt: skip
    assert states["primary"]["error"] is None
    assert "connection refused" in states["cloud"]["error"]
    assert not states["cloud"]["error"].startswith("s3://")  # the row's url says where
    assert "no repository here" in states["secondary"]["error"]
    _no_secret_in(listed.out, listed.err)


def test_with_no_location_usable_every_one_is_still_shown_with_why(
    run: Run, write_plan: Callable[..., Path], tmp_path: Path
) -> None:
    plan = plan_with(write_plan, {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "gone")},
        "cloud": closed_s3(),
    })  # fmt: skip
    shown = run("--plan", plan, "locations", "status")
    assert shown.code == 23, shown.err
    table = states_shown(shown.out)
    assert set(table) == {"primary", "cloud"}
    assert "unreachable" in table["cloud"]
    assert "connection refused" in table["cloud"]
    # The cloud may hold the repository: creating a new one would be the wrong advice.
    assert table["primary"].startswith("lost")
    assert "create one" not in shown.out + shown.err

    listed = run("--plan", plan, "locations", "status", "--json")
    assert listed.code == 23
    states = {entry["location"]: entry for entry in json.loads(listed.out)}
    assert {n: (s["state"], bool(s["error"])) for n, s in states.items()} == {
        "primary": ("lost", True), "cloud": ("unreachable", True),
    }  # fmt: skip
    _no_secret_in(shown.out, shown.err, listed.out)


def test_an_empty_plan_of_locations_is_told_to_create_a_repository(
    run: Run, write_plan: Callable[..., Path], tmp_path: Path
) -> None:
    plan = plan_with(write_plan, {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "new")},
        "secondary": {"role": "secondary", "kind": "local", "path": str(tmp_path / "new2")},
    })  # fmt: skip
    shown = run("--plan", plan, "locations", "status")
    assert shown.code == 23
    for state in states_shown(shown.out).values():
        assert state.startswith("lost")
        assert "create one with `drplan repo init" in state

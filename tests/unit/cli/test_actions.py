"""A runbook's actions are checked as real drplan command lines when a plan is
validated or a runbook is run: a command drplan lacks, a wrong option or a recovery
point that does not exist is refused at load, named where it is, and nothing is run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drplan.cli.actions import action_problem
from tests.conftest import Result

Run = Callable[..., Result]


@pytest.mark.parametrize(
    "action",
    [
        "restore postgres smartwatts-db --to latest --repo cloud",
        "restore postgres smartwatts-db --to last-good",
        "restore postgres smartwatts-db --to before-incident",
        "restore postgres db --to '2026-11-25 10:15:00+00' --target-dir /srv/copy --start",
        "check --read-data",
        "backup db-full",
        "plan validate --no-env",
    ],
)
def test_real_command_lines_parse(action: str) -> None:
    assert action_problem(action) is None


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("notify --channel slack", "No such command 'notify'"),
        ("restore kubernetes --to latest", "No such option '--to'"),
        ("restore postgres db --to before-breach", "--to 'before-breach' is not a recovery target"),
        ("incident declare", "Missing argument 'SCENARIO'"),
        ("restore postgres db --port 99999", "99999 is not in the range"),
        ("check --read-data-subset", "requires an argument"),
        ("restore postgres 'db", "is not a command line: No closing quotation"),
        ("check --help", "only asks for help"),
        ("wal", "names no command after 'drplan wal'"),
        ("--debug", "names no command"),
    ],
)
def test_what_drplan_cannot_run_is_named(action: str, expected: str) -> None:
    found = action_problem(action)
    assert found is not None
    assert expected in found


def test_a_plan_naming_an_action_that_does_not_exist_is_refused_where_it_is(
    run: Run, write_plan: Callable[[dict[str, Any]], Path], plan_data: dict[str, Any]
) -> None:
    plan_data["runbooks"]["rb"]["phases"][1]["steps"][0].update(
        {"action": "restore postgres db --to before-breach", "approve": "ic"}
    )
    plan = write_plan(plan_data)
    done = run("plan", "validate", "--no-env", str(plan))
    assert done.code == 4
    assert "runbooks.rb.phases[1].steps[0].action: action 'restore postgres db --to" \
        " before-breach': --to 'before-breach' is not a recovery target" in done.err  # fmt: skip
    assert run("--plan", str(plan), "incident", "declare", "db-loss").code == 4
    # Commands that run no runbook do not pay for checking them (wal push is run by
    # PostgreSQL for every segment).
    assert run("--plan", str(plan), "drill", "list").code == 0

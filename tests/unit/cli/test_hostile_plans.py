"""Plans written by mistake or in bad faith: always a located problem and exit 4, never a crash or a leak."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.plans import clean_plan
from tests.conftest import Result, dump

Run = Callable[..., Result]
BASE = dump(clean_plan())

CASES = {
    "custom-tag": BASE.replace("name: Test Platform", "name: !foo x"),
    "python-tag": BASE.replace("name: Test Platform", "name: !!python/object/apply:os.system [id]"),
    "invalid-date": BASE.replace("version: 1\n", "version: 1\nx-when: 2026-02-30\n"),
    "huge-duration": BASE.replace("critical: 4h", "critical: 99999999999999y"),
    "huge-count": BASE.replace("keep_within: 30d", "keep_last: 99999999999999999999", 1),
    "blank-action": BASE.replace("title: Assess\n", "title: Assess\n        action: '   '\n"),
    "recursive-alias": BASE + "x-loop: &l [*l]\n",
    "alias-bomb": BASE
    + "".join(
        f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10) if i else 'x, x, x, x, x, x, x, x, x, x'}]\n"
        for i in range(9)
    ),
    "password-in-connection": BASE.replace(
        "host=127.0.0.1 port=5432 user=drplan", "postgresql://drplan:Sentinel-Conn-Pass@db/postgres"
    ),
    "secret-pasted-as-channel": BASE
    + "channels:\n  slack: https://hooks.example/T0/Sentinel-Hook\n",
    "secret-pasted-as-kind": BASE + "channels:\n  slack: {kind: Sentinel-Kind-Token}\n",
    "tab-indentation": BASE.replace("  rto:\n    critical: 4h", "  rto:\n\tcritical: 4h"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_plan_is_a_located_problem(
    case: str, run: Run, write_plan: Callable[..., Path]
) -> None:
    path = write_plan(CASES[case])
    result = run("plan", "validate", "--no-env", str(path))
    assert result.code == 4, (result.code, result.err)
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    problems = result.err.splitlines()[:-1]
    assert problems
    assert all(line.startswith(f"{path}:") for line in problems), problems
    assert "Sentinel" not in result.err


def test_init_into_a_directory_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    result = run("init", "--force", str(tmp_path))
    assert result.code == 2
    assert "is a directory" in result.err


def test_sub_second_durations_round_trip(run: Run, write_plan: Callable[..., Path]) -> None:
    data = clean_plan()
    data["jobs"]["web"]["timeout"] = "0.5s"
    exported = run("plan", "show", "--yaml", str(write_plan(data))).out
    assert "timeout: 0.5s" in exported
    assert run("plan", "validate", "--no-env", str(write_plan(exported))).code == 0

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

Run = Callable[..., Result]


def test_init_writes_a_plan_that_validates_and_lints_clean(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    result = run("init")
    assert result.code == 0
    assert "wrote drplan.yaml" in result.out
    text = (tmp_path / "drplan.yaml").read_text()
    assert text.startswith("# A drplan disaster recovery plan.")
    assert "{today}" not in text
    assert run("plan", "validate", "--no-env").code == 0
    lint = run("plan", "lint", "--strict")
    assert lint.code == 0, lint.out


def test_init_refuses_to_overwrite(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "plan.yaml"
    target.write_text("mine")
    result = run("init", str(target))
    assert result.code == 2
    assert "already exists; pass --force to overwrite it" in result.err
    assert target.read_text() == "mine"
    assert run("init", "--force", str(target)).code == 0
    assert target.read_text() != "mine"


def test_init_into_missing_directory(run: Run, tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "nope" / "plan.yaml"))
    assert result.code == 2
    assert "does not exist" in result.err

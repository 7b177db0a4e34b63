"""Key files through the CLI: several passwords open one repository; passwd and remove."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.plans import clean_plan
from tests.conftest import Result, dump

Run = Callable[..., Result]


def test_add_list_passwd_remove(
    run: Run, repo_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "second password")
    added = run("key", "add", "--repo", repo_dir, "--label", "ops laptop")
    assert added.code == 0, added.err
    keys = json.loads(run("key", "list", "--repo", repo_dir, "--json").out)
    assert len(keys) == 2
    assert [k["label"] for k in keys if not k["current"]] == ["ops laptop"]
    first = next(k for k in keys if k["current"])
    refused = run("key", "remove", first["id"][:12], "--repo", repo_dir)
    assert refused.code == 2
    assert "refusing to remove the key you opened" in refused.err
    # The second password opens the repository too, and can remove the first key.
    monkeypatch.setenv("DRPLAN_PASSWORD", "second password")
    assert run("key", "remove", first["id"][:12], "--repo", repo_dir).code == 0
    assert len(json.loads(run("key", "list", "--repo", repo_dir, "--json").out)) == 1
    # passwd replaces the key in use: the old password stops working, the new one works.
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "third password")
    assert run("key", "passwd", "--repo", repo_dir).code == 0
    assert run("snapshots", "--repo", repo_dir).code == 12
    monkeypatch.setenv("DRPLAN_PASSWORD", "third password")
    assert run("snapshots", "--repo", repo_dir).code == 0


def test_new_password_required_without_a_terminal(
    run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRPLAN_NEW_PASSWORD", raising=False)
    result = run("key", "add", "--repo", repo_dir)
    assert result.code == 2
    assert "no new password given" in result.err


def test_password_file_and_plan_password_command(
    run: Run, repo_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = os.environ["DRPLAN_PASSWORD"]
    monkeypatch.delenv("DRPLAN_PASSWORD")
    secret = tmp_path / "pw"
    secret.write_text(password + "\n")
    assert run("snapshots", "--repo", repo_dir, "--password-file", str(secret)).code == 0
    plan = tmp_path / "drplan.yaml"
    # The plan is read for its password_command only when nothing else gives a password.
    data = clean_plan()
    data["repository"] = {"password_command": f"cat {secret}"}
    plan.write_text(dump(data))
    assert run("--plan", str(plan), "snapshots", "--repo", repo_dir).code == 0
    data["repository"] = {"password_command": "echo oops >&2; exit 3"}
    plan.write_text(dump(data))
    failed = run("--plan", str(plan), "snapshots", "--repo", repo_dir)
    assert failed.code == 1
    assert "password_command failed with exit code 3: oops" in failed.err

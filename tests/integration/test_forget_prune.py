"""Forget and prune through the CLI: policies, dry runs, reclaimed space, and safety beside a running backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from testbed.plans import clean_plan
from tests.conftest import Result

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")


def repo_bytes(repo: str) -> int:
    return sum(p.stat().st_size for p in Path(repo, "data").rglob("*") if p.is_file())


def three_backups(run: Run, repo: str, src: Path) -> list[str]:
    ids = []
    for i in range(3):
        (src / f"gen{i}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        if i:
            (src / f"gen{i - 1}.bin").unlink()
        result = run("backup", "files", str(src), "--repo", repo, "--json")
        assert result.code == 0, result.err
        ids.append(json.loads(result.out)["snapshot"])
    return ids


def test_forget_dry_run_then_forget_and_prune(run: Run, repo_dir: str, tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    ids = three_backups(run, repo_dir, src)
    before = repo_bytes(repo_dir)
    dry = run("forget", "--keep-last", "1", "--repo", repo_dir, "--dry-run")
    assert dry.code == 0
    assert f"keep   {ids[2][:8]}" in dry.out
    assert "(last 1)" in dry.out
    assert f"would remove {ids[0][:8]}" in dry.out
    assert len(json.loads(run("snapshots", "--repo", repo_dir, "--json").out)) == 3
    result = run("forget", "--keep-last", "1", "--prune", "--repo", repo_dir)
    assert result.code == 0, result.err
    assert "1 kept, 2 removed" in result.out
    assert "pruned:" in result.out
    remaining = json.loads(run("snapshots", "--repo", repo_dir, "--json").out)
    assert [s["id"] for s in remaining] == [ids[2]]
    assert repo_bytes(repo_dir) < before / 2
    assert run("check", "--read-data", "--repo", repo_dir).code == 0
    target = tmp_path / "out"
    assert run("restore", "latest", "--target", str(target), "--repo", repo_dir).code == 0
    assert (target / src.relative_to("/") / "gen2.bin").read_bytes() == (
        src / "gen2.bin"
    ).read_bytes()


def test_forget_follows_the_plans_retention(
    run: Run, repo_dir: str, tmp_path: Path, monkeypatch: object
) -> None:
    src = tmp_path / "conf"
    src.mkdir()
    (src / "a.conf").write_text("a")
    plan = clean_plan()
    plan["systems"]["web"]["paths"] = [str(src)]
    plan["jobs"]["web"]["retention"] = {"keep_last": 2}
    plan["locations"]["local"]["path"] = repo_dir
    plan["jobs"]["web"]["locations"] = ["local"]
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    for i in range(4):
        (src / "a.conf").write_text(f"version {i}")
        result = run("--plan", str(plan_file), "backup", "web")
        assert result.code == 0, result.err
    snaps = json.loads(run("snapshots", "--repo", repo_dir, "--json").out)
    assert {s["job"] for s in snaps} == {"web"}
    assert len(snaps) == 4
    result = run("--plan", str(plan_file), "forget", "--repo", "local")
    assert result.code == 0, result.err
    assert "2 kept, 2 removed" in result.out
    assert run("forget", "--repo", repo_dir, "--plan", "/nonexistent").code == 2


def test_prune_refuses_while_a_backup_holds_the_repository(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "slow"
    src.mkdir()
    with open(src / "sparse.img", "wb") as f:
        f.truncate(4 * 1024**3)  # takes the backup a few seconds to read
    proc = subprocess.Popen(
        [DRPLAN, "backup", "files", str(src), "--repo", repo_dir, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        # A finished lock object, not the temporary file it is written through.
        while not any(Path(repo_dir, "locks").glob("[!.]*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        result = run("prune", "--repo", repo_dir)
        assert result.code == 11, result.err
        assert "locked: shared lock by backup" in result.err
        assert proc.poll() is None, "the backup finished before prune ran; the test proves nothing"
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0
    assert run("prune", "--repo", repo_dir).code == 0
    assert run("check", "--read-data", "--repo", repo_dir).code == 0

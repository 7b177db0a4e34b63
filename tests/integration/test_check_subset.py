"""`drplan check --read-data-subset`: every run reads something and says what share of the
data it read; successive runs of x% cover every pack; damage in the slice read is found."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result

Run = Callable[..., Result]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """drplan's state directory, where the rotation's cursor is kept."""
    path = tmp_path / "state"
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(path))
    return path


@pytest.fixture
def few_packs(run: Run, repo_dir: str, tmp_path: Path) -> set[str]:
    """A repository of a few packs (two small backups): their ids."""
    for name in ("one", "two"):
        src = tmp_path / name
        src.mkdir()
        (src / "data.bin").write_bytes(os.urandom(100_000))
        result = run("backup", "files", str(src), "--repo", repo_dir, "--json")
        assert result.code == 0, result.err
    ids = {p.name for p in Path(repo_dir, "data").rglob("*") if p.is_file()}
    assert 2 <= len(ids) <= 6
    return ids


def check(run: Run, repo_dir: str, subset: str, code: int = 0) -> dict[str, Any]:
    result = run("check", "--read-data-subset", subset, "--repo", repo_dir, "--json")
    assert result.code == code, result.err
    report: dict[str, Any] = json.loads(result.out)
    return report


def test_a_percentage_of_a_small_repository_reads_at_least_one_pack(
    run: Run,
    repo_dir: str,
    few_packs: set[str],
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for day in range(1, 11):  # whatever the day: ten 10% slices, more than there are packs
        monkeypatch.setenv("DRPLAN_NOW", f"2026-12-{day:02d}T03:00:00Z")
        report = check(run, repo_dir, "10%")
        assert report["ok"] is True
        assert report["packs_read"] >= 1, f"day {day}: {report}"
        assert report["blobs_read"] >= 1
        assert report["bytes_read"] > 0
    assert 0 < report["percent_read"] <= 100
    assert set(report["pack_ids_read"]) <= few_packs
    assert report["data_bytes"] == sum(
        p.stat().st_size for p in Path(repo_dir, "data").rglob("*") if p.is_file()
    )
    text = run("check", "--read-data-subset", "10%", "--repo", repo_dir)
    assert text.code == 0, text.err
    assert "read back 0 packs" not in text.out
    assert "% of the data" in text.out
    assert "the rotation has read" in text.out or "full pass" in text.out
    assert text.out.rstrip().endswith("no errors") or "no errors;" in text.out


def test_successive_runs_cover_every_pack(
    run: Run, repo_dir: str, few_packs: set[str], state: Path
) -> None:
    seen: list[str] = []
    for _ in range(math.ceil(100 / 10)):
        report = check(run, repo_dir, "10%")
        assert report["packs_read"] == len(report["pack_ids_read"]) >= 1
        seen += report["pack_ids_read"]
        if report["rotation"]["pass_completed"]:
            break
    assert sorted(seen) == sorted(few_packs)  # each pack once, all of them
    assert report["rotation"]["passes_completed"] == 1
    assert report["rotation"]["percent_read"] == 0  # a new pass starts
    again = check(run, repo_dir, "10%")  # the rotation goes on
    assert again["packs_read"] >= 1
    assert again["rotation"]["percent_read"] > 0


def test_a_corrupt_cursor_file_starts_the_rotation_over(
    run: Run, repo_dir: str, few_packs: set[str], state: Path
) -> None:
    first = check(run, repo_dir, "10%")
    files = [p for p in (state / "check").rglob("*") if p.is_file()]
    assert files, "the cursor is kept in the state directory"
    for path in files:
        path.write_text("{garbage")
    again = check(run, repo_dir, "10%")
    assert again["pack_ids_read"] == first["pack_ids_read"]


def test_parts_beyond_the_number_of_packs_each_read_one_and_together_cover_all(
    run: Run, repo_dir: str, few_packs: set[str], state: Path
) -> None:
    parts = len(few_packs) + 3
    covered: set[str] = set()
    for n in range(1, parts + 1):
        report = check(run, repo_dir, f"{n}/{parts}")
        assert report["packs_read"] >= 1, n
        assert report["rotation"] is None
        covered |= set(report["pack_ids_read"])
    assert covered == few_packs
    # A chosen part moves no cursor (the state directory holds the audit trail's anchors).
    assert not (state / "check").exists()


def test_a_damaged_pack_in_the_slice_is_found_and_found_again(
    run: Run, repo_dir: str, few_packs: set[str], state: Path
) -> None:
    victim = max(
        (p for p in Path(repo_dir, "data").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    for _ in range(len(few_packs)):
        result = run("check", "--read-data-subset", "10%", "--repo", repo_dir, "--json")
        report = json.loads(result.out)
        if victim.name in report["pack_ids_read"]:
            break
        assert result.code == 0, result.err
    else:
        pytest.fail("no run read the damaged pack")
    assert result.code == 13
    assert report["ok"] is False
    named = [path for finding in report["findings"] for path in finding["files"]]
    assert any(path.endswith("/data.bin") for path in named), report["findings"]
    # Not passed over: the next run reads it again, and fails again.
    again = run("check", "--read-data-subset", "10%", "--repo", repo_dir, "--json")
    assert again.code == 13
    assert victim.name in json.loads(again.out)["pack_ids_read"]


@pytest.mark.parametrize("subset", ["0%", "101%", "0/3", "4/3", "abc", "0M"])
def test_nonsense_subsets_are_one_line_usage_errors(run: Run, repo_dir: str, subset: str) -> None:
    result = run("check", "--read-data-subset", subset, "--repo", repo_dir)
    assert result.code == 2
    assert result.err.count("\n") == 1, result.err
    assert repr(subset) in result.err


def test_a_state_directory_that_cannot_be_written_is_a_warning_not_a_failure(
    run: Run, repo_dir: str, few_packs: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(blocked))
    result = run("check", "--read-data-subset", "10%", "--repo", repo_dir)
    assert result.code == 0, result.err
    assert "no errors" in result.out
    assert "warning: the rotation could not be saved" in result.err
    assert "the next check reads the same packs again" in result.err

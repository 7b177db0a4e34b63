"""Progress of backup, restore, copy and check --read-data: JSON status lines on standard
error with --json (totals matching what was done, the last at 100%), a live line with
totals, rate and ETA in human units on a terminal, and nothing at all otherwise."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")


@pytest.fixture
def every_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status line at every change: a small tree takes less than the default second."""
    monkeypatch.setenv("DRPLAN_PROGRESS_INTERVAL", "0")


def tree_totals(root: Path) -> tuple[int, int]:
    files = size = 0
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            files, size = files + 1, size + st.st_size
    return files, size


def status_lines(err: str, action: str) -> list[dict[str, Any]]:
    """Every line of standard error, each a status line of ``action``."""
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "no status line"
    assert all(ln["message_type"] == "status" and ln["action"] == action for ln in lines)
    return lines


def assert_counts_up_to_100_percent(lines: list[dict[str, Any]], unit: str) -> None:
    done = [(ln[f"{unit}_done"], ln["bytes_done"]) for ln in lines]
    assert done == sorted(done), "what is done never goes back"
    last = lines[-1]
    assert last["percent_done"] == 1.0
    assert last["seconds_remaining"] == 0
    assert (last[f"{unit}_done"], last["bytes_done"]) == (
        last[f"total_{unit}"],
        last["total_bytes"],
    )
    assert all(ln["percent_done"] < 1.0 for ln in lines[:-1])


def test_backup_json_status_lines(
    run: Run, repo_dir: str, source: Path, every_change: None
) -> None:
    files, size = tree_totals(source)
    result = run("backup", "files", str(source), "--repo", repo_dir, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["summary"]  # the result is still one JSON document
    lines = status_lines(result.err, "backup")
    assert_counts_up_to_100_percent(lines, "files")
    assert (lines[-1]["total_files"], lines[-1]["total_bytes"]) == (files, size)
    assert summary["bytes_total"] == size
    # The scan ahead never finds more than there is.
    assert all(ln["total_files"] <= files and ln["total_bytes"] <= size for ln in lines)
    quiet = run("backup", "files", str(source), "--repo", repo_dir)
    assert quiet.code == 0
    assert quiet.err == ""  # not a terminal, no --json: no progress at all


def test_restore_json_status_lines(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, every_change: None
) -> None:
    files, size = tree_totals(source)
    assert run("backup", "files", str(source), "--repo", repo_dir).code == 0
    target = tmp_path / "out"
    result = run("restore", "latest", "--target", str(target), "--repo", repo_dir, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["files"] == files
    lines = status_lines(result.err, "restore")
    assert_counts_up_to_100_percent(lines, "files")
    # Known up front from the snapshot: every line once the totals are known says them.
    known = [ln for ln in lines if ln["totals_complete"]]
    assert known
    assert {(ln["total_files"], ln["total_bytes"]) for ln in known} == {(files, size)}
    quiet = run(  # the tree's FIFO made too: nothing to say on standard error at all
        "restore", "latest", "--target", str(tmp_path / "again"), "--repo", repo_dir,
        "--special-files",
    )  # fmt: skip
    assert quiet.code == 0
    assert quiet.err == ""


def test_copy_json_status_lines(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, every_change: None
) -> None:
    assert run("backup", "files", str(source), "--repo", repo_dir).code == 0
    result = run("copy", "--from", repo_dir, "--to", str(tmp_path / "replica"), "--json")
    assert result.code == 0, result.err
    copied = json.loads(result.out)
    lines = status_lines(result.err, "copy")
    assert_counts_up_to_100_percent(lines, "packs")
    assert lines[-1]["total_packs"] == copied["packs_copied"] >= 1
    known = [ln for ln in lines if ln["totals_complete"]]
    assert {(ln["total_packs"], ln["total_bytes"]) for ln in known} == {
        (lines[-1]["total_packs"], lines[-1]["total_bytes"])
    }
    assert run("backup", "files", str(source / "etc"), "--repo", repo_dir).code == 0
    quiet = run("copy", "--from", repo_dir, "--to", str(tmp_path / "replica"))
    assert quiet.code == 0
    assert quiet.err == ""


def test_check_read_data_json_status_lines(
    run: Run, repo_dir: str, source: Path, every_change: None
) -> None:
    assert run("backup", "files", str(source), "--repo", repo_dir).code == 0
    result = run("check", "--read-data", "--repo", repo_dir, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    lines = status_lines(result.err, "check")
    assert_counts_up_to_100_percent(lines, "packs")
    known = [ln for ln in lines if ln["totals_complete"]]
    assert {(ln["total_packs"], ln["total_bytes"]) for ln in known} == {
        (report["packs_read"], report["bytes_read"])
    }
    quiet = run("check", "--read-data", "--repo", repo_dir)
    assert quiet.code == 0
    assert quiet.err == ""


def on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (200 columns) as its standard error and output;
    everything it wrote there, and its exit code."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal: it has ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_the_line_shows_totals_rate_and_eta_in_human_units(
    repo_dir: str, source: Path, tmp_path: Path
) -> None:
    (source / "more.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    env = {**os.environ, "DRPLAN_PROGRESS_INTERVAL": "0", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    files, _ = tree_totals(source)
    code, screen = on_a_terminal([DRPLAN, "backup", "files", str(source), "--repo", repo_dir], env)
    assert code == 0, screen
    assert f"of {files} files" in screen
    assert re.search(r"\d+(\.\d+)? MiB of \d+(\.\d+)? MiB", screen), screen
    assert re.search(r"\d+(\.\d+)? [KMG]iB/s", screen), screen
    assert re.search(r"ETA \d+[smhd]", screen), screen
    assert not re.search(r"\d{1,3}(,\d{3})+ B", screen), screen  # no raw byte counts
    code, screen = on_a_terminal(
        [DRPLAN, "restore", "latest", "--target", str(tmp_path / "out"), "--repo", repo_dir], env
    )
    assert code == 0, screen
    assert f"of {files} files" in screen
    assert "ETA" in screen

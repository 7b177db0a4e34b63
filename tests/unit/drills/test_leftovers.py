"""What a killed drill left is cleared by the next one, whenever it was killed: even
between making its scratch directory and writing who owns it. What is not a drill's,
or belongs to a drill that still runs, is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drplan.drills.leftovers import OWNER, claim, clear_abandoned, prefix
from drplan.drills.scratch import Scratch
from drplan.errors import DrillRefusedError


def dead_pid() -> int:
    """The id of a process that ran and is gone."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def made(base: Path, name: str, owner: str | None = None) -> Path:
    root = base / name
    (root / "data").mkdir(parents=True)
    if owner is not None:
        (root / OWNER).write_text(owner)
    return root


def test_a_drill_killed_before_it_wrote_its_owner_file_is_cleared(tmp_path: Path) -> None:
    gone = dead_pid()
    bare = made(tmp_path, f"monthly-db-{gone}-ab12cd34")  # killed right after mkdtemp
    torn = made(tmp_path, f"monthly-db-{gone}-ef56gh78", owner="")  # ... while writing it
    assert sorted(clear_abandoned(tmp_path)) == sorted([bare, torn])
    assert list(tmp_path.iterdir()) == []


def test_what_a_running_drill_or_nobody_made_stays(tmp_path: Path) -> None:
    gone = dead_pid()
    mine = Path(f"{tmp_path}/{prefix('monthly-db')}zz99yy88")  # this process: running
    (mine / "data").mkdir(parents=True)
    claimed = made(tmp_path, f"other-{gone}-12345678")
    claim(claimed)  # the owner file (this process) outranks the name
    foreign = made(tmp_path, "not-a-drill")
    numbered = made(tmp_path, "backup-2026")  # a name that only looks like one
    assert clear_abandoned(tmp_path) == []
    assert sorted(tmp_path.iterdir()) == sorted([mine, claimed, foreign, numbered])


def test_an_owner_file_of_a_gone_drill_is_cleared_whatever_the_name(tmp_path: Path) -> None:
    old = made(tmp_path, "monthly-db-abcdefgh", owner=f"{dead_pid()} {'0' * 36}\n")
    earlier_boot = made(tmp_path, "monthly-db-ijklmnop", owner=f"{os.getpid()} {'0' * 36}\n")
    assert sorted(clear_abandoned(tmp_path)) == sorted([old, earlier_boot])


def test_a_socket_path_too_long_for_unix_is_refused_up_front(tmp_path: Path) -> None:
    short = Scratch(tmp_path / "d", 54321)
    short.refuse_long_socket()  # the paths the tests use pass
    deep = Scratch(tmp_path / ("x" * 100), 54321)
    with pytest.raises(DrillRefusedError) as refused:
        deep.refuse_long_socket()
    assert "more than the 107 a Unix socket allows" in refused.value.message
    assert "shorter path" in (refused.value.hint or "")

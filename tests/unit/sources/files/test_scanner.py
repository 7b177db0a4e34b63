"""The scan ahead of a backup counts what the backup will: files, every name of a hard
link, their bytes; excludes and --one-file-system applied the same way."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from drplan.progress import Progress
from drplan.sources.files.excludes import Excludes
from drplan.sources.files.scanner import count, scanning_ahead
from tests.conftest import wait_until


def counted(paths: list[Path], patterns: list[str] | None = None) -> tuple[int, int]:
    excludes = Excludes(patterns or [])
    totals = [0, 0]

    def found(files: int, size: int) -> None:
        totals[0] += files
        totals[1] += size

    count([os.fsencode(p) for p in paths], excludes, False, found)
    return totals[0], totals[1]


def tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.txt").write_bytes(b"x" * 100)
    (root / "a" / "b" / "two.bin").write_bytes(b"y" * 2000)
    (root / "skip.log").write_bytes(b"z" * 50)
    (root / "empty").write_bytes(b"")
    (root / os.fsdecode(b"raw-\xff-name")).write_bytes(b"w" * 7)
    os.link(root / "a" / "one.txt", root / "a" / "again.txt")
    os.symlink("a/one.txt", root / "link")
    os.mkfifo(root / "pipe")
    return root


def test_counts_regular_files_and_every_name_of_a_hard_link(tmp_path: Path) -> None:
    root = tree(tmp_path / "src")
    assert counted([root]) == (6, 100 + 2000 + 50 + 0 + 7 + 100)


def test_applies_the_excludes_and_walks_nested_paths_once(tmp_path: Path) -> None:
    root = tree(tmp_path / "src")
    assert counted([root, root / "a"], ["*.log", "*/a/b", "raw-*"]) == (3, 200)


def test_a_single_file_and_a_missing_path(tmp_path: Path) -> None:
    root = tree(tmp_path / "src")
    assert counted([root / "a" / "b" / "two.bin", tmp_path / "gone"]) == (1, 2000)


def test_stops_when_told(tmp_path: Path) -> None:
    root = tree(tmp_path / "src")
    seen: list[int] = []
    count([os.fsencode(root)], Excludes([]), False, lambda f, s: seen.append(f), stop=lambda: True)
    assert seen == []


def test_scanning_ahead_counts_in_a_child_and_says_when_it_is_complete(tmp_path: Path) -> None:
    root = tree(tmp_path / "src")
    progress = Progress()
    with scanning_ahead([str(root)], Excludes(["*.log"]), False, progress):
        wait_until(lambda: progress.status().totals_known, "the scan to complete", 60)
    status = progress.status()
    assert (status.items_total, status.bytes_total) == (5, 100 + 2000 + 0 + 7 + 100)
    assert not any(t.name == "drplan-scan" for t in threading.enumerate())


def test_the_child_is_stopped_when_the_backup_ends_first(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    for i in range(300):
        (root / f"d{i}").mkdir(parents=True)
        (root / f"d{i}" / "f").write_bytes(b"1")
    progress = Progress()
    with scanning_ahead([str(root)], Excludes([]), False, progress):
        pass  # the backup was quicker
    assert not any(t.name == "drplan-scan" for t in threading.enumerate())

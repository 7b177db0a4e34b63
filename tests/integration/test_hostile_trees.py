"""Trees an attacker (or an unusual host) hands drplan: deeper than the call stack, device
nodes, a target that is a file. Each ends in a backup and restore that work, or a clear
refusal with its exit code; never an internal error."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drplan import clock
from drplan.nesting import remove_tree
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from tests.conftest import Result
from tests.integration.conftest import open_repo

Run = Callable[..., Result]
DEEP = 1200  # levels of a real directory: ~2,400 characters of path, under PATH_MAX
CRAFTED_DEEP = 1500


@pytest.fixture(autouse=True)
def _deep_trees_removed(tmp_path: Path) -> Iterator[None]:
    """pytest clears old temporary directories with shutil.rmtree, which recurses (Python
    3.11): a tree 1,200 deep left behind would crash a later session."""
    yield
    for child in tmp_path.iterdir():
        remove_tree(child, ignore_errors=True)


def _nest(root: Path, depth: int, leaf: bytes) -> None:
    """``root/a/a/.../a/leaf.txt``, made level by level through descriptors."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, leaf)
        os.close(out)
    finally:
        os.close(fd)


def _leaf(root: Path, depth: int) -> Path:
    return root.joinpath(*(["a"] * depth), "leaf.txt")


def test_a_directory_nested_1200_deep_is_backed_up_restored_listed_and_compared(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    source = tmp_path / "deep"
    _nest(source, DEEP, b"at the bottom")
    first = run("backup", "files", str(source), "--repo", repo_dir, "--json")
    assert first.code == 0, first.err
    summary = json.loads(first.out)["summary"]
    assert (summary["files_new"], summary["dirs"]) == (1, DEEP + 1)
    _leaf(source, DEEP).write_bytes(b"changed at the bottom")
    second = run("backup", "files", str(source), "--repo", repo_dir, "--json")
    assert second.code == 0, second.err

    target = tmp_path / "restored"
    restored = run("restore", "latest", "--target", str(target), "--repo", repo_dir)
    assert restored.code == 0, restored.err
    assert f"{DEEP + 1} directories" in restored.out
    assert _leaf(target / source.relative_to("/"), DEEP).read_bytes() == b"changed at the bottom"

    listing = run("ls", "latest", "--repo", repo_dir)
    assert listing.code == 0, listing.err
    assert listing.out.rstrip().endswith("leaf.txt")
    ids = [json.loads(r.out)["snapshot"][:8] for r in (first, second)]
    diff = run("diff", *ids, "--repo", repo_dir)
    assert diff.code == 0, diff.err
    assert diff.out.splitlines()[0] == f"M {_leaf(source, DEEP)}"
    check = run("check", "--read-data", "--repo", repo_dir)
    assert check.code == 0, check.err


def test_a_crafted_snapshot_nested_1500_deep_restores_without_an_internal_error(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    repo = open_repo(repo_dir)
    content = repo.save_blob(0, b"deep")[0]
    tree = repo.save_tree([_node(b"leaf.txt", "file", 0o644, size=4, content=[content])])
    for _ in range(CRAFTED_DEEP):
        tree = repo.save_tree([_node(b"a", "dir", 0o755, subtree=tree)])
    repo.save_snapshot(Snapshot(time=clock.now(), tree=tree, paths=["/x"], host="h", user="u"))

    target = tmp_path / "t"
    result = run("restore", "latest", "--target", str(target), "--repo", repo_dir)
    assert result.code == 0, result.err
    assert _leaf(target, CRAFTED_DEEP).read_bytes() == b"deep"
    for command in (("ls", "latest"), ("check", "--read-data")):
        outcome = run(*command, "--repo", repo_dir)
        assert outcome.code == 0, outcome.err


def test_restoring_onto_a_file_is_a_one_line_error_and_touches_nothing(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    assert run("backup", "files", str(source), "--repo", repo_dir).code == 0
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    for target in (existing, existing / "below"):
        result = run("restore", "latest", "--target", str(target), "--repo", repo_dir)
        assert result.code == 2, result.err
        assert result.err.count("\n") == 1
        assert f"{existing} is a file" in result.err
        assert "give --target a directory" in result.err
    assert existing.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes are made by root only")
def test_device_nodes_and_fifos_are_made_only_when_asked(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    repo = open_repo(repo_dir)
    content = repo.save_blob(0, b"plain")[0]
    disk = _node(b"disk", "blockdev", 0o666, rdev=os.makedev(8, 0))
    pipe = _node(b"pipe", "fifo", 0o644)
    plain = _node(b"plain.txt", "file", 0o644, size=5, content=[content])
    tree = repo.save_tree([disk, plain, pipe])
    repo.save_snapshot(Snapshot(time=clock.now(), tree=tree, paths=["/x"], host="h", user="u"))

    target = tmp_path / "default"
    result = run("restore", "latest", "--target", str(target), "--repo", repo_dir, "--json")
    assert result.code == 0, result.err
    assert sorted(os.listdir(target)) == ["plain.txt"]
    assert json.loads(result.out)["skipped_special"] == ["/disk (blockdev)", "/pipe (fifo)"]
    shown = run("restore", "latest", "--target", str(tmp_path / "again"), "--repo", repo_dir)
    assert "skipped 2 special file(s)" in shown.err
    assert "--special-files" in shown.err

    asked = tmp_path / "asked"
    result = run("restore", "latest", "--target", str(asked), "--repo", repo_dir, "--special-files")
    assert result.code == 0, result.err
    assert stat.S_ISFIFO(os.lstat(asked / "pipe").st_mode)
    made = os.lstat(asked / "disk") if (asked / "disk").exists() else None
    # A container may forbid mknod even to root: then it is a warning, never a crash.
    assert made is not None or "disk: could not be restored" in result.err
    if made is not None:
        assert stat.S_ISBLK(made.st_mode)


def _node(name: bytes, kind: str, mode: int, **fields: Any) -> Node:
    return Node(name=name, type=kind, mode=mode, uid=0, gid=0, mtime_ns=0, **fields)

"""``drplan diff`` in the user's terms: the files that changed, not the directories around them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Result

Run = Callable[..., Result]


def backup(run: Run, repo: str, path: Path) -> str:
    result = run("backup", "files", str(path), "--repo", repo, "--json")
    assert result.code == 0, result.err
    snapshot: str = json.loads(result.out)["snapshot"]
    return snapshot[:8]


def tree(root: Path) -> Path:
    deep = root / "srv" / "app" / "releases" / "v2" / "config"
    deep.mkdir(parents=True)
    (deep / "settings.ini").write_text("workers = 4\n")
    (deep / "other.ini").write_text("unchanged\n")
    (root / "conf").mkdir()
    (root / "notes.txt").write_text("notes\n")
    (root / "tool").write_text("#!/bin/sh\n")
    return deep / "settings.ini"


def test_a_file_changed_deep_inside_is_the_only_line(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    settings = tree(root)
    first = backup(run, repo_dir, root)
    # Saved the way editors save (a new file renamed over the old): its directory's mtime
    # moves too, as /tmp's does whenever anything is created in it.
    scratch = settings.with_name(".settings.ini.swp")
    scratch.write_text("workers = 8\n")
    os.replace(scratch, settings)
    for above in (root, tmp_path, settings.parent.parent):
        os.utime(above, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    second = backup(run, repo_dir, root)
    result = run("diff", first, second, "--repo", repo_dir)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"M {settings}",
        "0 added, 0 removed, 1 modified, 0 type changed, 0 metadata updated",
    ]


def test_type_and_metadata_changes_have_their_own_letters(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    tree(root)
    first = backup(run, repo_dir, root)
    os.chmod(root / "conf", 0o700)
    os.chmod(root / "notes.txt", 0o600)
    (root / "tool").unlink()
    os.symlink("/usr/bin/true", root / "tool")
    second = backup(run, repo_dir, root)
    result = run("diff", first, second, "--repo", repo_dir)
    assert result.out.splitlines() == [
        f"U {root}/conf",
        f"U {root}/notes.txt",
        f"T {root}/tool",
        "0 added, 0 removed, 0 modified, 1 type changed, 2 metadata updated",
    ]
    as_json = json.loads(run("diff", first, second, "--repo", repo_dir, "--json").out)
    assert [(c["change"], c["path"]) for c in as_json["changes"]] == [
        ("U", f"{root}/conf"),
        ("U", f"{root}/notes.txt"),
        ("T", f"{root}/tool"),
    ]

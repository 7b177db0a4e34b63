"""File backup and restore through the CLI: bit-exact round trips with metadata, change detection, excludes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drplan import clock
from drplan.cli.context import human_bytes
from drplan.repo.pack import TREE
from drplan.repo.snapshot import Snapshot
from drplan.storage.local import LocalStorage
from tests.conftest import Result
from tests.integration.conftest import Compare, init_repo, open_repo

Run = Callable[..., Result]


def backup(
    run: Run, repo: str, *paths: Path | str, extra: tuple[str, ...] = ()
) -> dict[str, object]:
    result = run("backup", "files", *map(str, paths), "--repo", repo, "--json", *extra)
    assert result.code == 0, result.err
    data: dict[str, object] = json.loads(result.out)
    return data


def test_round_trip_is_bit_exact_with_metadata(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, same_tree: Compare
) -> None:
    backup(run, repo_dir, source)
    target = tmp_path / "out"
    result = run(
        "restore", "latest", "--target", str(target), "--repo", repo_dir, "--special-files"
    )
    assert result.code == 0, result.err
    assert "written and verified" in result.out
    restored = target / source.relative_to("/")
    same_tree(source, restored)
    assert os.stat(restored / "logs.txt").st_ino == os.stat(restored / "logs-hardlink.txt").st_ino


def test_unchanged_files_are_not_read_again(run: Run, repo_dir: str, source: Path) -> None:
    first = backup(run, repo_dir, source)
    second = backup(run, repo_dir, source)
    summary = second["summary"]
    assert isinstance(summary, dict)
    assert summary["bytes_read"] == 0
    assert summary["files_new"] == summary["files_changed"] == 0
    assert second["parent"] == first["snapshot"]
    (source / "logs.txt").write_text("changed\n")
    third = backup(run, repo_dir, source)["summary"]
    assert isinstance(third, dict)
    # logs.txt and its hard link are one inode: both names changed, both are read.
    assert third["files_changed"] == 2
    assert third["bytes_read"] == 2 * len("changed\n")
    assert third["files_unchanged"] == second["summary"]["files_unchanged"] - 2  # type: ignore[index]


def test_metadata_only_changes_reach_the_next_snapshot(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, same_tree: Compare
) -> None:
    """Unchanged files are skipped by inode, size, mtime and ctime: every other change moves ctime."""
    backup(run, repo_dir, source)
    conf = source / "etc" / "app" / "app.conf"
    before = conf.stat()
    conf.write_text("listen = 9090\n" * 50)  # same size, and the mtime put back
    os.utime(conf, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(source / "etc" / "app" / "secret.key", 0o640)
    os.chown(source / "zero", 4242, 4343)
    os.setxattr(source / "big.bin", "user.drplan.test", b"tagged")
    summary = backup(run, repo_dir, source)["summary"]
    assert isinstance(summary, dict)
    assert summary["files_changed"] == 4
    # Each is read again, whole: app.conf, secret.key (64 B), zero (empty), big.bin.
    assert summary["bytes_read"] == len("listen = 9090\n") * 50 + 64 + 0 + (3 * 1024 * 1024 + 17)
    target = tmp_path / "out"
    restored = run(
        "restore", "latest", "--target", str(target), "--repo", repo_dir, "--special-files"
    )
    assert restored.code == 0
    same_tree(source, target / source.relative_to("/"))
    assert (
        (target / source.relative_to("/") / "etc/app/app.conf")
        .read_text()
        .startswith("listen = 9090")
    )


def test_dedup_stores_a_copy_once(run: Run, repo_dir: str, tmp_path: Path) -> None:
    src = tmp_path / "dup"
    src.mkdir()
    payload = os.urandom(2 * 1024 * 1024)
    (src / "a").write_bytes(payload)
    (src / "b").write_bytes(payload)
    summary = backup(run, repo_dir, src)["summary"]
    assert isinstance(summary, dict)
    assert summary["bytes_read"] == 2 * len(payload)
    assert summary["bytes_stored"] < 1.1 * len(payload)


def test_excludes_and_exclude_file(run: Run, repo_dir: str, source: Path, tmp_path: Path) -> None:
    patterns = tmp_path / "excludes"
    patterns.write_text("# comment\n*.bin\n")
    backup(run, repo_dir, source, extra=("--exclude", "*/etc/app", "--exclude-file", str(patterns)))
    listing = run("ls", "latest", "--repo", repo_dir).out.splitlines()
    names = {Path(p).name for p in listing}
    assert "big.bin" not in names
    assert "app" not in names
    assert "etc" in names
    assert "logs.txt" in names


def test_files_that_vanish_or_change_are_reported_not_fatal(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "busy"
    src.mkdir()
    # One worker reads a large (sparse) file first; meanwhile the walk has already
    # listed the small files, which a "service" deletes, and a log keeps growing.
    with open(src / "a-large.img", "wb") as f:
        f.truncate(1536 * 1024 * 1024)
    for i in range(50):
        (src / f"z-{i:02d}.tmp").write_text("temporary")
    growing = src / "b-growing.log"
    growing.write_bytes(b"x" * (8 * 1024 * 1024))
    stop = threading.Event()

    def large_file_open() -> bool:
        fds = Path("/proc/self/fd")
        return any(
            os.path.realpath(fd).endswith("a-large.img") for fd in fds.iterdir() if fd.is_symlink()
        )

    def service() -> None:
        # Start once the worker reads the large file: the walk has listed everything by then.
        deadline = time.monotonic() + 30
        while not large_file_open() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        for i in range(50):
            (src / f"z-{i:02d}.tmp").unlink()
        with open(growing, "ab") as log:
            while not stop.is_set():
                log.write(b"more\n")
                log.flush()
                time.sleep(0.001)

    worker = threading.Thread(target=service)
    worker.start()
    try:
        result = run("backup", "files", str(src), "--repo", repo_dir, "--workers", "1")
    finally:
        stop.set()
        worker.join()
    assert result.code == 14, result.err
    assert "vanished" in result.err
    assert "b-growing.log: changed while it was read; saved as read" in result.err
    assert "was saved, but" in result.err
    listing = run("ls", "latest", "--repo", repo_dir).out
    assert "a-large.img" in listing
    assert "b-growing.log" in listing


def test_unreadable_files_are_reported_and_the_rest_saved(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    """A file the backup may not read is reported (exit 14) and everything else is saved."""
    src = tmp_path / "perm"
    src.mkdir()
    (src / "readable").write_text("ok")
    (src / "private").write_text("no")
    os.chmod(src / "private", 0)
    # As root, drop the capabilities that bypass file permissions, as a service account lacks them.
    prefix = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    )
    drplan = str(Path(sys.executable).parent / "drplan")
    result = subprocess.run(
        [*prefix, drplan, "backup", "files", str(src), "--repo", repo_dir],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 14, result.stderr
    assert "private: cannot be read (Permission denied); not in the snapshot" in result.stderr
    listing = run("ls", "latest", "--repo", repo_dir).out
    assert "readable" in listing
    assert "private" not in listing


def test_paths_that_do_not_exist_are_partial_and_none_existing_is_a_failure(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    """A vanished path beside others: exit 14, the rest saved. Every path vanished: an
    empty snapshot would pass for a backup, so nothing is saved and the backup fails."""
    gone = tmp_path / "unmounted"
    partial = run("backup", "files", str(source), str(gone), "--repo", repo_dir)
    assert partial.code == 14, partial.err
    assert f"{gone}: cannot be backed up (No such file or directory)" in partial.err
    failed = run("backup", "files", str(gone), str(tmp_path / "also-gone"), "--repo", repo_dir)
    assert failed.code == 1
    (line,) = failed.err.strip().splitlines()
    assert line.startswith(
        f"drplan: nothing was backed up: no path can be read: {tmp_path}/also-gone"
    )
    assert len(json.loads(run("snapshots", "--repo", repo_dir, "--json").out)) == 1


def test_restore_include_and_resume(run: Run, repo_dir: str, source: Path, tmp_path: Path) -> None:
    # Large enough for several chunks (4 MiB at most each), so half of it holds whole ones.
    (source / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    backup(run, repo_dir, source)
    target = tmp_path / "part"
    result = run(
        "restore", "latest", "--target", str(target), "--include", "*/etc/app/*", "--repo", repo_dir
    )
    assert result.code == 0, result.err
    restored = target / source.relative_to("/")
    assert (restored / "etc" / "app" / "app.conf").exists()
    assert not (restored / "big.bin").exists()
    # Resume: damage the tail of a restored large file; a second run rewrites only what differs.
    full = tmp_path / "full"
    assert run("restore", "latest", "--target", str(full), "--repo", repo_dir).code == 0
    big = full / source.relative_to("/") / "big.bin"
    data = big.read_bytes()
    with open(big, "r+b") as f:
        f.truncate(len(data) // 2)
    again = json.loads(
        run("restore", "latest", "--target", str(full), "--repo", repo_dir, "--json").out
    )
    assert big.read_bytes() == data
    assert again["bytes_verified_in_place"] > 0
    assert again["bytes_written"] < len(data)
    assert again["files_skipped"] >= 5


def test_snapshots_ls_and_diff(run: Run, repo_dir: str, source: Path) -> None:
    first = backup(run, repo_dir, source, extra=("--tag", "daily"))
    (source / "new.txt").write_text("new")
    (source / "zero").unlink()
    (source / "logs.txt").write_text("rewritten")
    time.sleep(0.01)
    second = backup(run, repo_dir, source)
    listed = json.loads(run("snapshots", "--repo", repo_dir, "--json").out)
    assert [s["id"] for s in listed] == [first["snapshot"], second["snapshot"]]
    assert listed[0]["tags"] == ["daily"]
    assert (
        len(json.loads(run("snapshots", "--repo", repo_dir, "--tag", "daily", "--json").out)) == 1
    )
    diff = run(
        "diff", str(first["snapshot"])[:8], str(second["snapshot"])[:8], "--repo", repo_dir
    ).out
    base = str(source)
    assert f"+ {base}/new.txt" in diff
    assert f"- {base}/zero" in diff
    assert f"M {base}/logs.txt" in diff
    assert "1 added, 1 removed" in diff
    long = run("ls", "latest", str(source / "etc"), "-l", "--repo", repo_dir).out
    assert "app.conf" in long
    assert "-0644 " in long or "-0664 " in long


def test_check_passes_on_a_sound_repository(run: Run, repo_dir: str, source: Path) -> None:
    backup(run, repo_dir, source)
    result = run("check", "--read-data", "--repo", repo_dir)
    assert result.code == 0, result.err
    assert "no errors" in result.out
    subset = json.loads(run("check", "--read-data-subset", "1/1", "--repo", repo_dir, "--json").out)
    assert subset["ok"] is True
    assert subset["packs_read"] == subset["packs"] >= 1
    repo = open_repo(repo_dir)
    assert len(repo.snapshots()) == 1


def test_compression_level_per_backup(run: Run, repo_dir: str, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    text = "".join(
        f"2026-11-26T01:{i % 60:02d} meter={i * 7919 % 10007} kwh={i % 97}.{i % 13} ok\n"
        for i in range(200_000)
    )
    (src / "a.log").write_text(text)
    fast = json.loads(
        run(
            "backup", "files", str(src), "--repo", repo_dir, "--compression-level", "1", "--json"
        ).out
    )
    other = tmp_path / "repo2"
    init_repo(LocalStorage(other))
    strong = json.loads(
        run(
            "backup", "files", str(src), "--repo", str(other), "--compression-level", "19", "--json"
        ).out
    )
    assert strong["summary"]["bytes_stored"] < fast["summary"]["bytes_stored"]


def test_one_file_system_stops_at_mount_points(run: Run, repo_dir: str, tmp_path: Path) -> None:
    src = tmp_path / "fs"
    (src / "mnt").mkdir(parents=True)
    (src / "here.txt").write_text("same file system")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "mnt")], check=True)
    try:
        (src / "mnt" / "elsewhere.txt").write_text("another file system")
        assert run("backup", "files", str(src), "--repo", repo_dir, "--one-file-system").code == 0
        listing = run("ls", "latest", "--repo", repo_dir).out
        assert "here.txt" in listing
        assert f"{src}/mnt" in listing  # the mount point itself is kept, empty
        assert "elsewhere.txt" not in listing
        assert run("backup", "files", str(src), "--repo", repo_dir).code == 0
        assert "elsewhere.txt" in run("ls", "latest", "--repo", repo_dir).out
    finally:
        subprocess.run(["umount", str(src / "mnt")], check=True)


def tree_counts(root: Path) -> tuple[int, int, int]:
    """Regular files (each name of a hard link), directories (the root too), and bytes,
    as the user's tree holds them."""
    files = dirs = size = 0
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            dirs += 1
        elif stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
    return files, dirs, size


def test_backup_and_restore_count_the_same_files_directories_and_bytes(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    """The tree's own numbers, in both summaries: not the parents of the backed-up path
    (restore creates them), not symlinks or pipes as files, every name of a hard link."""
    files, dirs, size = tree_counts(source)
    made = run("backup", "files", str(source), "--repo", repo_dir)
    restored = run("restore", "latest", "--target", str(tmp_path / "out"), "--repo", repo_dir)
    assert made.code == restored.code == 0, made.err + restored.err
    for line in (made.out, restored.out):
        assert f" {files} files" in line, line
        assert f" {dirs} directories" in line, line
        assert human_bytes(size) in line, line
    summary = backup(run, repo_dir, source)["summary"]
    assert isinstance(summary, dict)
    again = run(
        "restore", "latest", "--target", str(tmp_path / "again"), "--repo", repo_dir, "--json"
    )
    result = json.loads(again.out)
    assert (
        summary["files_new"] + summary["files_changed"] + summary["files_unchanged"],
        summary["dirs"],
        summary["bytes_total"],
    ) == (files, dirs, size)
    assert (result["files"], result["dirs"], result["bytes_total"]) == (files, dirs, size)
    listed = json.loads(run("snapshots", "--repo", repo_dir, "--json").out)[-1]["summary"]
    assert (listed["dirs"], listed["bytes_total"]) == (dirs, size)


def test_an_extended_attribute_named_in_bytes_that_are_not_utf8_round_trips(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    """Linux allows any bytes but NUL in an xattr name: such a file was an internal error."""
    src = tmp_path / "xattrs"
    src.mkdir()
    (src / "f").write_text("x")
    os.setxattr(src / "f", b"user.\xffodd", b"\x00\x01value")
    assert run("backup", "files", str(src), "--repo", repo_dir).code == 0
    target = tmp_path / "out"
    restored = run("restore", "latest", "--target", str(target), "--repo", repo_dir)
    assert restored.code == 0, restored.err
    back = target / src.relative_to("/") / "f"
    assert os.getxattr(back, b"user.\xffodd") == b"\x00\x01value"


def test_a_damaged_entry_of_the_parent_snapshot_only_costs_reading_the_file_again(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("the file's content\n")
    assert run("backup", "files", str(src), "--repo", repo_dir).code == 0
    # A newer snapshot like the first, its entry for f with an owner name that is a number:
    # validly encrypted and alike in every field a backup compares with the file.
    repo = open_repo(repo_dir)
    (first,) = repo.snapshots()
    chain, tree = [], first.tree
    for part in src.relative_to("/").parts:
        listing = repo.load_listing(tree)
        chain.append((listing, part.encode()))
        tree = bytes.fromhex(listing[part.encode()]["subtree"])
    leaf = repo.load_listing(tree)
    leaf[b"f"]["user"] = 5
    tree = repo.save_blob(TREE, json.dumps({"nodes": list(leaf.values())}).encode())[0]
    for listing, name in reversed(chain):
        listing[name]["subtree"] = tree.hex()
        tree = repo.save_blob(TREE, json.dumps({"nodes": list(listing.values())}).encode())[0]
    parent = Snapshot(time=clock.now(), tree=tree, paths=first.paths, host=first.host,
                      user=first.user)  # fmt: skip
    repo.save_snapshot(parent)

    again = run("backup", "files", str(src), "--repo", repo_dir, "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)["summary"]
    assert summary["files_changed"] + summary["files_new"] == 1  # read again, not kept
    target = tmp_path / "out"
    assert run("restore", "latest", "--target", str(target), "--repo", repo_dir).code == 0
    assert (target / src.relative_to("/") / "f").read_text() == "the file's content\n"

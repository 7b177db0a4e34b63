"""Bad input and faults: each must end in a clear message, a documented exit code and an intact repository."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drplan import clock
from drplan.repo.locks import LOCK_PREFIX
from drplan.repo.pack import TREE
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node, encode_tree
from drplan.storage.local import LocalStorage
from tests.conftest import Result
from tests.integration.conftest import PASSWORD, init_repo, open_repo

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")


def backup(run: Run, repo: str, path: Path) -> str:
    result = run("backup", "files", str(path), "--repo", repo, "--json")
    assert result.code == 0, result.err
    snapshot: str = json.loads(result.out)["snapshot"]
    return snapshot


def packs(repo: str) -> list[Path]:
    return sorted(
        Path(repo, "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0
    )


def test_wrong_password_is_one_line(
    run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRPLAN_PASSWORD", "Sentinel-Bad-Pass-7")
    result = run("snapshots", "--repo", repo_dir)
    assert result.code == 12
    assert result.err.count("\n") == 1
    assert "wrong password" in result.err
    assert "Sentinel-Bad-Pass-7" not in result.err


def test_no_password_given(run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRPLAN_PASSWORD")
    result = run("snapshots", "--repo", repo_dir)
    assert result.code == 2
    assert "no repository password given; set $DRPLAN_PASSWORD" in result.err


def test_missing_and_half_created_repositories(run: Run, tmp_path: Path, password: str) -> None:
    missing = run("snapshots", "--repo", str(tmp_path / "nothing"))
    assert missing.code == 10
    assert "no repository at" in missing.err
    half = tmp_path / "half"
    init_repo(LocalStorage(half))
    (half / "config").unlink()  # as if `repo init` died between the key file and the config
    result = run("snapshots", "--repo", str(half))
    assert result.code == 10
    assert "repository creation was interrupted" in result.err
    again = run("repo", "init", str(half))
    assert again.code == 1
    assert "delete the location's keys/" in again.err


def test_init_twice_refused(run: Run, repo_dir: str) -> None:
    result = run("repo", "init", repo_dir)
    assert result.code == 1
    assert "already holds a repository" in result.err


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _plant_lock(
    repo_dir: str, pid: int, exclusive: bool, age_seconds: int = 5, host: str | None = None
) -> None:
    repo = open_repo(repo_dir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age_seconds))
    body = {
        "host": host or socket.gethostname(),
        "pid": pid,
        "user": "ops",
        "time": stamp,
        "exclusive": exclusive,
        "operation": "prune",
    }
    repo.save_object("lock", LOCK_PREFIX, json.dumps(body).encode())


def test_locked_by_a_live_process(
    run: Run, repo_dir: str, source: Path, other_process: subprocess.Popen[bytes]
) -> None:
    _plant_lock(repo_dir, other_process.pid, exclusive=True, age_seconds=42)
    result = run("backup", "files", str(source), "--repo", repo_dir)
    assert result.code == 11
    assert (
        f"exclusive lock by prune (pid {other_process.pid} on {socket.gethostname()}, user ops, 4"
        in result.err
    )
    assert result.err.count("\n") == 1


def test_stale_locks_are_cleared(
    run: Run, repo_dir: str, source: Path, other_process: subprocess.Popen[bytes]
) -> None:
    other_process.kill()
    other_process.wait()
    _plant_lock(repo_dir, other_process.pid, exclusive=True)  # dead process on this host
    _plant_lock(repo_dir, 1, exclusive=True, age_seconds=3600, host="elsewhere")  # too old
    backup(run, repo_dir, source)
    assert list(Path(repo_dir, "locks").iterdir()) == []


def test_corrupted_byte_is_found_and_other_files_still_restore(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "two"
    src.mkdir()
    (src / "victim.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    (src / "fine.txt").write_text("still fine")
    backup(run, repo_dir, src)
    big = max(
        (p for p in Path(repo_dir, "data").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(big.read_bytes())
    data[1000] ^= 0x40
    big.write_bytes(bytes(data))
    check = run("check", "--read-data", "--repo", repo_dir)
    assert check.code == 13
    assert "failed verification" in check.err or "do not match its name" in check.err
    assert "victim.bin" in check.err
    target = tmp_path / "out"
    fine = run(
        "restore", "latest", "--target", str(target), "--include", "*/fine.txt", "--repo", repo_dir
    )
    assert fine.code == 0, fine.err
    assert (target / src.relative_to("/") / "fine.txt").read_text() == "still fine"
    bad = run(
        "restore",
        "latest",
        "--target",
        str(tmp_path / "out2"),
        "--include",
        "*/victim.bin",
        "--repo",
        repo_dir,
    )
    assert bad.code == 13
    assert "failed authentication" in bad.err
    assert "victim.bin" in bad.err
    assert "Traceback" not in bad.err


def test_truncated_pack_and_deleted_index(run: Run, repo_dir: str, source: Path) -> None:
    backup(run, repo_dir, source)
    pack = max(
        (p for p in Path(repo_dir, "data").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    with open(pack, "r+b") as f:
        f.truncate(pack.stat().st_size // 2)
    check = run("check", "--repo", repo_dir)
    assert check.code == 13
    assert "truncated" in check.err
    assert f"    file: {source}/" in check.err  # names what the damage affects
    for index in Path(repo_dir, "index").iterdir():
        index.unlink()
    check = run("check", "--repo", repo_dir)
    assert check.code == 13
    assert "in no index" in check.err


def test_malicious_repository_cannot_write_outside_the_target(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    repo = open_repo(repo_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A symlink pointing out of the target, then a directory of the same name in a second
    # snapshot: restoring both into one target must never write through the link.
    link = Node(
        name=b"escape",
        type="symlink",
        mode=0o777,
        uid=0,
        gid=0,
        mtime_ns=0,
        target=str(outside).encode(),
    )
    content = repo.save_blob(0, b"pwned")[0]
    payload = Node(
        name=b"payload",
        type="file",
        mode=0o644,
        uid=0,
        gid=0,
        mtime_ns=0,
        size=5,
        content=[content],
    )
    inner = repo.save_tree([payload])
    as_dir = Node(name=b"escape", type="dir", mode=0o755, uid=0, gid=0, mtime_ns=0, subtree=inner)
    traversal = encode_tree([payload]).replace(b'"name":"payload"', b'"name":"../../evil"')
    evil_tree = repo.save_blob(TREE, traversal)[0]
    for tree in (repo.save_tree([link]), repo.save_tree([as_dir])):
        repo.save_snapshot(_snapshot(tree))
    repo.save_snapshot(_snapshot(evil_tree))
    ids = [s.id for s in Repository.open(LocalStorage(repo_dir), PASSWORD.encode()).snapshots()]
    by_tree = {s.tree: s.id for s in open_repo(repo_dir).snapshots()}
    target = tmp_path / "target"
    assert (
        run(
            "restore",
            by_tree[repo.save_tree([link])][:8],
            "--target",
            str(target),
            "--repo",
            repo_dir,
        ).code
        == 0
    )
    assert (target / "escape").is_symlink()
    result = run(
        "restore",
        by_tree[repo.save_tree([as_dir])][:8],
        "--target",
        str(target),
        "--repo",
        repo_dir,
    )
    assert result.code == 0, result.err
    assert list(outside.iterdir()) == []
    assert (target / "escape" / "payload").read_bytes() == b"pwned"
    evil = run(
        "restore", by_tree[evil_tree][:8], "--target", str(tmp_path / "t2"), "--repo", repo_dir
    )
    assert evil.code == 13
    assert "invalid entry name" in evil.err
    assert not (tmp_path / "evil").exists()
    assert len(ids) == 3


def _snapshot(tree: bytes) -> Snapshot:
    return Snapshot(time=clock.now(), tree=tree, paths=["/x"], host="h", user="u")


def test_planted_symlink_in_target_is_not_followed(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    backup(run, repo_dir, source)
    target = tmp_path / "t"
    restored = target / source.relative_to("/")
    restored.mkdir(parents=True)
    outside = tmp_path / "victim-dir"
    outside.mkdir()
    os.symlink(outside, restored / "etc")  # where the snapshot has a directory
    victim_file = tmp_path / "victim-file"
    victim_file.write_text("keep")
    os.symlink(victim_file, restored / "logs.txt")  # where the snapshot has a file
    result = run("restore", "latest", "--target", str(target), "--repo", repo_dir)
    assert result.code == 0, result.err
    assert list(outside.iterdir()) == []
    assert victim_file.read_text() == "keep"
    assert (restored / "etc").is_dir()
    assert not (restored / "etc").is_symlink()
    assert (restored / "logs.txt").read_text().startswith("2026-11-26 line 0")


def test_disk_full_during_backup_leaves_the_repository_intact(
    run: Run, tmp_path: Path, password: str
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        repo_path = mount / "repo"
        init_repo(LocalStorage(repo_path))
        src = tmp_path / "toolarge"
        src.mkdir()
        (src / "small.txt").write_text("fits")
        assert run("backup", "files", str(src / "small.txt"), "--repo", str(repo_path)).code == 0
        (src / "huge.bin").write_bytes(os.urandom(20 * 1024 * 1024))
        result = run("backup", "files", str(src), "--repo", str(repo_path))
        assert result.code == 1, result.err
        assert "no space left on device" in result.err
        assert result.err.count("\n") == 1, result.err
        check = run("check", "--read-data", "--repo", str(repo_path))
        assert check.code == 0, check.err + check.out
        assert len(json.loads(run("snapshots", "--repo", str(repo_path), "--json").out)) == 1
        assert not list(repo_path.rglob(".tmp-*")), sorted(repo_path.rglob("*"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_kill_minus_nine_at_random_moments_never_breaks_the_repository(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "churn"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}").write_bytes(os.urandom(random.randint(1, 600_000)))
    rng = random.Random(1234)
    env = dict(os.environ)
    for round_ in range(20):
        (src / f"new{round_}").write_bytes(os.urandom(rng.randint(1, 2_000_000)))
        proc = subprocess.Popen(
            [DRPLAN, "backup", "files", str(src), "--repo", repo_dir],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = run("check", "--repo", repo_dir)
        assert check.code == 0, f"round {round_}: {check.err}"
    final = run("backup", "files", str(src), "--repo", repo_dir)
    assert final.code == 0, final.err
    assert run("check", "--read-data", "--repo", repo_dir).code == 0


def test_a_directory_without_its_listing_is_damage_named_by_snapshot_and_path(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    """A tree that authenticates but whose `dir` entry has no subtree (written by a bug, or
    by someone holding the key): restore, ls and check say where, in one line, exit 13."""
    repo = open_repo(repo_dir)
    data = Node(name=b"data", type="dir", mode=0o755, uid=0, gid=0, mtime_ns=0, subtree=b"\0" * 32)
    crafted = encode_tree([data]).replace(b',"subtree":"' + b"00" * 32 + b'"', b"")
    assert b"subtree" not in crafted
    srv = Node(
        name=b"srv", type="dir", mode=0o755, uid=0, gid=0, mtime_ns=0,
        subtree=repo.save_blob(TREE, crafted)[0],
    )  # fmt: skip
    snapshot = _snapshot(repo.save_tree([srv]))
    repo.save_snapshot(snapshot)
    where = f"snapshot {snapshot.short_id}: /srv/data: a directory without a subtree"
    for args in (
        ("restore", snapshot.short_id, "--target", str(tmp_path / "t")),
        ("ls", snapshot.short_id),
        ("check",),
    ):
        result = run(*args, "--repo", repo_dir)
        assert result.code == 13, (args, result.err)
        assert where in result.err, (args, result.err)
        assert "Traceback" not in result.err
        assert "internal error" not in result.err
        if args[0] != "check":  # check lists its findings, then sums them up
            assert result.err.count("\n") == 1, result.err


def test_latest_is_the_newest_snapshot_that_reads_and_a_restore_says_so(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    older = backup(run, repo_dir, source)
    (source / "logs.txt").write_text("changed after the first backup\n")
    newer = backup(run, repo_dir, source)
    stored = Path(repo_dir, "snapshots", newer)
    damaged = bytearray(stored.read_bytes())
    damaged[40] ^= 0x01
    stored.write_bytes(bytes(damaged))
    result = run("restore", "latest", "--target", str(tmp_path / "t"), "--repo", repo_dir, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["snapshot"] == older
    assert json.loads(result.out)["unreadable_snapshots"] == [newer]
    assert f"1 snapshot cannot be read ({newer[:8]}) and may be newer" in result.err
    assert f"`latest` restored {older[:8]}" in result.err

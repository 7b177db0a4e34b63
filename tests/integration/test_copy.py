"""``drplan copy``: replicas of one repository in several locations, local and S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drplan.storage.local import LocalStorage
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import Compare, init_repo
from tests.integration.test_repo_faults import backup
from tests.integration.test_s3_repository import s3_env

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")


def copy(run: Run, source: str, target: str, *args: str) -> dict[str, object]:
    result = run("copy", "--from", source, "--to", target, "--json", *args)
    assert result.code == 0, result.err
    data: dict[str, object] = json.loads(result.out)
    return data


def snapshot_ids(run: Run, repo: str) -> list[str]:
    result = run("snapshots", "--repo", repo, "--json")
    assert result.code == 0, result.err
    return [s["id"] for s in json.loads(result.out)]


def objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_copy_makes_a_replica_that_restores_bit_exact_without_the_primary(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, same_tree: Compare
) -> None:
    first = backup(run, repo_dir, source)
    (source / "added.txt").write_text("after the first backup\n")
    second = backup(run, repo_dir, source)
    replica = str(tmp_path / "secondary")

    result = copy(run, repo_dir, replica)
    assert result["created"] is True
    assert result["copied"] == [first, second]
    assert result["packs_copied"]
    assert result["bytes_copied"]
    again = copy(run, repo_dir, replica)
    assert again["copied"] == []
    assert again["packs_copied"] == 0
    assert again["already_present"] == [first, second]

    shutil.rmtree(repo_dir)  # the primary is lost
    check = run("check", "--read-data", "--repo", replica)
    assert check.code == 0, check.err + check.out
    target = tmp_path / "out"
    restored = run("restore", second, "--target", str(target), "--repo", replica, "--special-files")
    assert restored.code == 0, restored.err
    same_tree(source, target / source.relative_to("/"))
    # Same keys: the replica opens with the same password; new backups go on from it.
    assert backup(run, replica, source) not in (first, second)


def test_only_what_the_target_lacks_is_sent(run: Run, repo_dir: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    backup(run, repo_dir, data)
    replica = str(tmp_path / "replica")
    sent = copy(run, repo_dir, replica)["bytes_copied"]
    assert isinstance(sent, int)
    assert sent > 40 * 1024 * 1024
    (data / "small.txt").write_text("a small change\n")
    backup(run, repo_dir, data)
    delta = copy(run, repo_dir, replica)
    assert delta["copied"]
    assert isinstance(delta["bytes_copied"], int)
    assert delta["bytes_copied"] < 1024 * 1024  # the new file and the trees, not the blob


def test_a_target_holding_another_repository_is_refused_and_untouched(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    backup(run, repo_dir, source)
    other = tmp_path / "other"
    init_repo(LocalStorage(other))
    before = objects(other)
    result = run("copy", "--from", repo_dir, "--to", str(other))
    assert result.code == 15
    assert "holds a different repository" in result.err
    assert result.err.count("\n") == 1
    assert objects(other) == before

    foreign = tmp_path / "foreign"
    (foreign / "snapshots").mkdir(parents=True)
    (foreign / "snapshots" / "abcd").write_bytes(b"not ours")
    result = run("copy", "--from", repo_dir, "--to", str(foreign))
    assert result.code == 15
    assert "but no config" in result.err
    assert objects(foreign) == ["snapshots/abcd"]


def test_an_interrupted_copy_resumes_reusing_what_arrived(
    run: Run, repo_dir: str, tmp_path: Path, same_tree: Compare
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"blob{i}").write_bytes(os.urandom(20 * 1024 * 1024))
    snapshot = backup(run, repo_dir, data)
    replica = tmp_path / "replica"
    # What a copy killed after its first packs leaves: keys, config, some packs, no index.
    source = Path(repo_dir)
    for rel in objects(source):
        if rel.startswith(("keys/", "keyring/")) or rel == "config":
            (replica / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / rel, replica / rel)
    packs = [rel for rel in objects(source) if rel.startswith("data/")]
    for rel in packs[:2]:
        (replica / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / rel, replica / rel)
    assert snapshot_ids(run, str(replica)) == []  # nothing half-visible

    result = copy(run, repo_dir, str(replica))
    assert result["created"] is False
    assert result["packs_reused"] == 2
    assert result["packs_copied"] == len(packs) - 2
    assert result["copied"] == [snapshot]
    out = tmp_path / "out"
    assert (
        run(
            "restore", "latest", "--target", str(out), "--repo", str(replica), "--special-files"
        ).code
        == 0
    )
    same_tree(data, out / data.relative_to("/"))


def test_copy_killed_at_random_moments_never_shows_a_partial_snapshot(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"blob{i}").write_bytes(os.urandom(12 * 1024 * 1024))
    snapshot = backup(run, repo_dir, data)
    replica = str(tmp_path / "replica")
    for delay in (0.3, 0.6, 0.9, 1.2):
        proc = subprocess.Popen(
            [DRPLAN, "copy", "--from", repo_dir, "--to", replica],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.kill()
        proc.wait()
        if Path(replica, "config").exists():
            ids = snapshot_ids(run, replica)
            check = run("check", "--read-data", "--repo", replica)
            assert check.code == 0, check.err + check.out  # a visible snapshot is whole
            assert ids in ([], [snapshot])
    assert copy(run, repo_dir, replica)["copied"] in ([], [snapshot])
    assert snapshot_ids(run, replica) == [snapshot]
    assert run("check", "--read-data", "--repo", replica).code == 0


def test_a_snapshot_deleted_from_the_source_during_a_copy_is_skipped(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("first\n")
    kept = backup(run, repo_dir, data)
    for i in range(8):
        (data / f"blob{i}").write_bytes(os.urandom(16 * 1024 * 1024))
    doomed = backup(run, repo_dir, data)
    replica = tmp_path / "replica"
    proc = subprocess.Popen(
        [DRPLAN, "copy", "--from", repo_dir, "--to", str(replica), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(replica.glob("data/*/*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.unlink(Path(repo_dir) / "snapshots" / doomed)  # deleted by hand, behind the lock
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["copied"] == [kept]
    assert result["vanished"] == [doomed]
    assert snapshot_ids(run, str(replica)) == [kept]
    assert run("check", "--read-data", "--repo", str(replica)).code == 0


def test_copy_to_s3_and_restore_from_there(
    run: Run,
    repo_dir: str,
    source: Path,
    tmp_path: Path,
    same_tree: Compare,
    seaweedfs: SeaweedFS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3_env(seaweedfs, monkeypatch)
    cloud = f"s3://{seaweedfs.create_bucket()}/drplan"
    snapshot = backup(run, repo_dir, source)
    assert copy(run, repo_dir, cloud)["copied"] == [snapshot]
    shutil.rmtree(repo_dir)
    target = tmp_path / "out"
    assert (
        run("restore", "latest", "--target", str(target), "--repo", cloud, "--special-files").code
        == 0
    )
    same_tree(source, target / source.relative_to("/"))
    # And back: the S3 replica seeds a new local one.
    local = str(tmp_path / "rebuilt")
    assert copy(run, cloud, local)["copied"] == [snapshot]
    assert run("check", "--read-data", "--repo", local).code == 0


def test_one_damaged_snapshot_does_not_hold_back_the_others(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "one.bin").write_bytes(os.urandom(300_000))
    first = backup(run, repo_dir, data)
    packs_before = set(objects(Path(repo_dir) / "data"))
    (data / "two.bin").write_bytes(os.urandom(300_000))
    second = backup(run, repo_dir, data)
    # Damage a pack only the second snapshot needs.
    new = sorted(set(objects(Path(repo_dir) / "data")) - packs_before)
    biggest = max(new, key=lambda rel: (Path(repo_dir) / "data" / rel).stat().st_size)
    victim = Path(repo_dir) / "data" / biggest
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    replica = str(tmp_path / "replica")
    result = run("copy", "--from", repo_dir, "--to", replica, "--json")
    assert result.code == 13, result.err
    report = json.loads(result.out)
    assert report["copied"] == [first]
    assert list(report["damaged"]) == [second]
    assert snapshot_ids(run, replica) == [first]
    assert run("check", "--read-data", "--repo", replica).code == 0


def test_a_target_missing_packs_its_index_lists_is_refused(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    backup(run, repo_dir, source)
    replica = tmp_path / "replica"
    copy(run, repo_dir, str(replica))
    for pack in (replica / "data").rglob("*"):
        if pack.is_file():
            pack.unlink()
    (source / "new.txt").write_text("new\n")
    backup(run, repo_dir, source)
    result = run("copy", "--from", repo_dir, "--to", str(replica))
    assert result.code == 13
    assert "pack(s) its index lists are missing" in result.err
    assert "drplan prune" in result.err


def test_password_changes_reach_replicas_and_revoked_passwords_stop_working(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup(run, repo_dir, source)
    replica = str(tmp_path / "replica")
    copy(run, repo_dir, replica)
    stale = str(tmp_path / "stale")
    shutil.copytree(replica, stale)  # a replica left behind with the old password only
    new_password = tmp_path / "new-password"
    new_password.write_text("the new password\n")
    changed = run("key", "passwd", "--repo", repo_dir, "--new-password-file", str(new_password))
    assert changed.code == 0, changed.err
    monkeypatch.setenv("DRPLAN_PASSWORD", "the new password")
    copy(run, repo_dir, replica)  # nothing new to copy; the keys follow anyway
    assert run("snapshots", "--repo", replica).code == 0
    monkeypatch.setenv("DRPLAN_PASSWORD", "correct horse battery staple")
    old = run("snapshots", "--repo", replica)
    assert old.code == 12, old.err
    # The stale replica, opened with the revoked password, cannot bring it back to life.
    refused = run("copy", "--from", stale, "--to", repo_dir)
    assert refused.code == 1
    assert "disagree about passwords" in refused.err
    assert run("snapshots", "--repo", repo_dir).code == 12
    monkeypatch.setenv("DRPLAN_PASSWORD", "the new password")
    assert run("snapshots", "--repo", repo_dir).code == 0


def test_locations_that_disagree_about_passwords_are_not_emptied(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup(run, repo_dir, source)
    other = tmp_path / "other-password"
    other.write_text("second password\n")
    assert run("key", "add", "--repo", repo_dir, "--new-password-file", str(other)).code == 0
    replica = str(tmp_path / "replica")
    copy(run, repo_dir, replica)
    keys = json.loads(run("key", "list", "--repo", repo_dir, "--json").out)
    first = next(k["id"] for k in keys if k["current"])
    second = next(k["id"] for k in keys if not k["current"])
    # The primary drops the first password; the replica, independently, the second.
    monkeypatch.setenv("DRPLAN_PASSWORD", "second password")
    assert run("key", "remove", first, "--repo", repo_dir).code == 0
    monkeypatch.setenv("DRPLAN_PASSWORD", "correct horse battery staple")
    assert run("key", "remove", second, "--repo", replica).code == 0
    monkeypatch.setenv("DRPLAN_PASSWORD", "second password")
    result = run("copy", "--from", repo_dir, "--to", replica)
    assert result.code == 1
    assert "disagree about passwords" in result.err
    monkeypatch.setenv("DRPLAN_PASSWORD", "correct horse battery staple")
    assert run("snapshots", "--repo", replica).code == 0  # still opens


def test_a_forged_tombstone_does_not_lock_anyone_out(run: Run, repo_dir: str, source: Path) -> None:
    backup(run, repo_dir, source)
    keys = json.loads(run("key", "list", "--repo", repo_dir, "--json").out)
    (Path(repo_dir) / "revoked").mkdir()
    (Path(repo_dir) / "revoked" / keys[0]["id"]).write_text('{"version": 1, "revoked": "now"}')
    assert run("snapshots", "--repo", repo_dir).code == 0


def test_a_damaged_snapshot_object_does_not_block_the_others(
    run: Run, repo_dir: str, source: Path, tmp_path: Path
) -> None:
    first = backup(run, repo_dir, source)
    (source / "more.txt").write_text("more\n")
    second = backup(run, repo_dir, source)
    (Path(repo_dir) / "snapshots" / first).write_bytes(b"garbage")
    replica = str(tmp_path / "replica")
    result = run("copy", "--from", repo_dir, "--to", replica, "--json")
    assert result.code == 13, result.err
    report = json.loads(result.out)
    assert report["copied"] == [second]
    assert first in report["damaged"]
    assert (
        run("restore", second[:8], "--target", str(tmp_path / "out"), "--repo", repo_dir).code == 0
    )

"""The repository audit trail (docs/repository-format.md, "Audit trail"): every operation
leaves an entry in each location it used, local and S3 under Object Lock; `drplan audit
verify` names an entry removed (a gap), altered (authentication), or cut from the end
(against the other location, or this host's anchor); concurrent writers fork, and that
is no error."""

from __future__ import annotations

import getpass
import itertools
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drplan.repo.repository import Repository
from drplan.security.repo_audit import PREFIX, list_refs
from drplan.security.repo_audit_write import Chain, Target
from drplan.storage.local import LocalStorage
from drplan.storage.s3 import S3Storage
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import PASSWORD, files_job_plan, init_repo
from tests.integration.test_locations import FAST_KDF, s3_location

Run = Callable[..., Result]


@pytest.fixture
def sites(
    run: Run, tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str, source: Path
) -> tuple[str, S3Storage]:
    """A plan whose job `web` writes to a local primary and copies to an S3 location under
    Object Lock, the repository made in the first and seeded in the second; and the second
    as storage, to do to it what an attacker would."""
    bucket = seaweedfs.create_bucket(object_lock=True)
    cloud = s3_location(seaweedfs, bucket, "cloud", immutability={"mode": "compliance", "days": 1})
    locations = {"primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
                 "cloud": cloud}  # fmt: skip
    plan = str(files_job_plan(tmp_path, source, locations))
    assert run("--plan", plan, "repo", "init", "primary", *FAST_KDF).code == 0
    seeded = run("--plan", plan, "copy", "--from", "primary", "--to", "cloud")
    assert seeded.code == 0, seeded.err
    return plan, seaweedfs.storage(bucket, "drplan", object_lock=("COMPLIANCE", 1))


def trail(run: Run, plan: str, location: str) -> list[dict[str, Any]]:
    """The location's entries, in chain order."""
    result = run("--plan", plan, "audit", "log", "--location", location, "--json")
    assert result.code == 0, result.err
    return sorted((json.loads(line) for line in result.out.splitlines()),
                  key=lambda e: (e["seq"], e["name"]))  # fmt: skip


def verify(run: Run, plan: str, code: int = 0) -> Result:
    result = run("--plan", plan, "audit", "verify")
    assert result.code == code, result.out + result.err
    return result


def backup(run: Run, plan: str) -> str:
    result = run("--plan", plan, "backup", "web", "--json")
    assert result.code == 0, result.err
    snapshot: str = json.loads(result.out)["snapshot"]
    return snapshot


def entry_name(storage: LocalStorage | S3Storage, seq: int) -> str:
    (name,) = [PREFIX + r.name for r in list_refs(storage)[0] if r.seq == seq]
    return name


def test_every_operation_is_recorded_in_each_location_it_used(
    run: Run, sites: tuple[str, S3Storage], source: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    plan, cloud = sites
    first = backup(run, plan)
    (source / "late.txt").write_text("after the first backup\n")
    second = backup(run, plan)
    assert run("--plan", plan, "check", "--repo", "cloud").code == 0
    assert run("--plan", plan, "forget", "--repo", "primary", "--keep-last", "1").code == 0
    assert run("--plan", plan, "prune", "--repo", "primary").code == 0
    restored = run("--plan", plan, "restore", "latest", "--repo", "cloud", "--target",
                   str(tmp_path / "out"), "--special-files")  # fmt: skip
    assert restored.code == 0, restored.err
    assert run("--plan", plan, "copy", "--from", "primary", "--to", "cloud").code == 0
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "a second password")
    assert run("--plan", plan, "key", "add", "--repo", "primary").code == 0
    # What changes nothing is not recorded: a dry run, a listing.
    dry = run("--plan", plan, "forget", "--repo", "primary", "--keep-last", "1", "--dry-run")
    assert dry.code == 0
    assert run("--plan", plan, "snapshots", "--repo", "primary").code == 0

    primary, there = trail(run, plan, "primary"), trail(run, plan, "cloud")
    assert [(e["operation"], e["subject"]) for e in primary] == [
        ("copy", None), ("backup", "web"), ("backup", "web"), ("forget", None),
        ("prune", None), ("copy", None), ("key add", None)]  # fmt: skip
    assert [(e["operation"], e["subject"]) for e in there] == [
        ("copy", None), ("backup", "web"), ("backup", "web"), ("check", None),
        ("restore", None), ("copy", None)]  # fmt: skip
    for entries in (primary, there):
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert all(e["prev"] == [p["name"]] for p, e in itertools.pairwise(entries))
        assert {(e["host"], e["user"], e["outcome"]) for e in entries} == {
            (socket.gethostname(), getpass.getuser(), "ok")}  # fmt: skip
        assert len({e["op"] for e in entries}) == len(entries)
    # What each touched, as the storage saw it.
    assert primary[1]["touched"]["written"]["snapshots"]["ids"] == [first]
    assert there[2]["touched"]["written"]["snapshots"]["ids"] == [second]  # the fan-out's copy
    assert primary[3]["touched"]["deleted"]["snapshots"]["ids"] == [first]
    assert primary[4]["details"]["bytes_freed"] >= 0
    assert there[4]["details"]["snapshot"] == second
    assert len(primary[6]["touched"]["written"]["keys"]["ids"]) == 1
    # One backup, one op in both places, each vouching for the other's head.
    assert primary[2]["op"] == there[2]["op"]
    assert there[2]["witness"] == [{"location": "primary", "url": primary[2]["url"],
                                    "head": primary[2]["name"]}]  # fmt: skip
    assert primary[2]["witness"][0]["head"] == there[1]["name"]  # its head before the backup

    checked = verify(run, plan)
    assert "primary (" in checked.out
    assert "cloud (s3://" in checked.out
    assert checked.out.count(": intact") == 2
    # Under Object Lock the entries are locked like every other object but locks/.
    assert all(cloud.locked_until(PREFIX + r.name) for r in list_refs(cloud)[0])


@pytest.mark.parametrize(("removed_in", "altered_in"), [("cloud", "primary"), ("primary", "cloud")])
def test_a_removed_entry_is_a_gap_and_an_altered_one_fails_authentication(
    run: Run, sites: tuple[str, S3Storage], tmp_path: Path, seaweedfs: SeaweedFS,
    removed_in: str, altered_in: str,
) -> None:  # fmt: skip
    plan, cloud = sites
    for _ in range(3):
        backup(run, plan)
    storages: dict[str, LocalStorage | S3Storage] = {
        "primary": LocalStorage(tmp_path / "primary"), "cloud": cloud}  # fmt: skip
    removed = entry_name(storages[removed_in], 2)
    storages[removed_in].delete(removed)
    altered = entry_name(storages[altered_in], 3)
    data = bytearray(storages[altered_in].read(altered))
    data[-1] ^= 1
    if altered_in == "primary":  # an attacker writes the file in place
        (tmp_path / "primary" / altered).write_bytes(bytes(data))
    else:  # a new version of the object: S3 lets a locked one be hidden, never changed
        cloud.write(altered, bytes(data))

    result = verify(run, plan, code=13)
    assert f"drplan: {removed_in}: gap: entry 2 is missing, between entry 1 of" in result.err
    assert f"drplan: {altered_in}: damaged: entry 3 (" in result.err
    assert "failed authentication" in result.err
    assert f"the audit trail of {removed_in}, {altered_in} has gaps or damage" in result.err or (
        f"the audit trail of {altered_in}, {removed_in} has gaps or damage" in result.err
    )
    if removed_in == "cloud":  # Object Lock kept the removed entry: hidden, not gone
        versions = seaweedfs.client().list_object_versions(Bucket=cloud.bucket,
                                                           Prefix=f"drplan/{removed}")  # fmt: skip
        assert [v["Key"] for v in versions.get("Versions", [])] == [f"drplan/{removed}"]


def test_the_newest_entries_cut_are_caught_by_the_other_location_and_the_anchor(
    run: Run, sites: tuple[str, S3Storage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    plan, cloud = sites
    backup(run, plan)  # primary's entry 2, then cloud's entry 2 witnessing it
    primary = LocalStorage(tmp_path / "primary")
    primary.delete(entry_name(primary, 2))
    # Another host (no anchor of its own) sees the cut in what the cloud's entry witnessed.
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "another-host"))
    elsewhere = verify(run, plan, code=13)
    assert "drplan: primary: truncated: cloud's entry 2 saw entry 2 (" in elsewhere.err
    assert "but the trail ends at entry 1" in elsewhere.err
    assert "cloud (s3://" in elsewhere.out
    assert "drplan: cloud:" not in elsewhere.err

    # The cloud's newest entry is witnessed by nobody, and it held the only witness of
    # the primary's: with both cut, a host without anchors sees nothing (docs/security.md
    # says so); the host that wrote them sees both.
    cloud.delete(entry_name(cloud, 2))
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "a-third-host"))
    verify(run, plan, code=0)
    monkeypatch.delenv("DRPLAN_STATE_DIR")
    here = verify(run, plan, code=13)
    assert "drplan: cloud: truncated: this host saw entry 2 (" in here.err
    assert "drplan: primary: truncated: this host saw entry 2 (" in here.err

    # The next writer says so, and follows the entry it knew: the cut becomes a gap that
    # every host sees, even without an anchor.
    checked = run("--plan", plan, "check", "--repo", "cloud")
    assert checked.code == 0
    assert "warning: the audit trail of cloud lacks entry 2 (" in checked.err
    assert [r.seq for r in sorted(list_refs(cloud)[0])] == [1, 3]
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "a-fourth-host"))
    fourth = verify(run, plan, code=13)
    assert "drplan: cloud: gap: entry 2 is missing, between entry 1 of" in fourth.err


def test_concurrent_writers_fork_and_the_next_one_joins_them(
    run: Run, sites: tuple[str, S3Storage], password: str
) -> None:
    plan, cloud = sites
    # Two writers that list at once, before either writes: both take entry 2.
    repo = Repository.open(cloud, PASSWORD.encode())
    common = trail(run, plan, "cloud")[0]
    fields = {k: v for k, v in common.items() if k not in ("seq", "prev", "name")}
    chains = [Chain(Target("cloud", cloud, common["started"], {}), None) for _ in range(2)]
    for chain in chains:
        chain.find_head()
    forked = sorted(chain.write(repo, {**fields, "op": secrets.token_hex(16)}) for chain in chains)
    assert [r.seq for r in forked] == [2, 2]
    assert "fork at entry 2: 2 entries (copy by" in verify(run, plan).out
    assert "not joined yet: the newest" in verify(run, plan).out

    assert run("--plan", plan, "check", "--repo", "cloud").code == 0
    joined = trail(run, plan, "cloud")[-1]
    assert (joined["seq"], joined["prev"]) == (3, [r.name for r in forked])
    assert "fork at entry 2: 2 entries" in verify(run, plan).out
    assert "joined at entry 3" in verify(run, plan).out


def test_operations_at_once_from_several_processes_all_leave_an_entry(
    run: Run, sites: tuple[str, S3Storage]
) -> None:
    """Real processes racing: whatever their interleaving, no entry is lost or refused."""
    plan, cloud = sites
    before = len(list_refs(cloud)[0])
    command = [sys.executable, "-m", "drplan", "--plan", plan, "check", "--repo", "cloud"]
    checks = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(4)]  # fmt: skip
    for check in checks:
        _, err = check.communicate(timeout=120)
        assert check.returncode == 0, err.decode()
    assert len(list_refs(cloud)[0]) == before + 4
    verify(run, plan)


def test_an_audit_write_that_fails_never_fails_the_backup_and_is_written_later(
    run: Run, password: str, source: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    init_repo(LocalStorage(repo))
    (repo / "audit").write_text("not a directory: every entry's write fails")
    saved = run("backup", "files", str(source), "--repo", str(repo), "--json")
    assert saved.code == 0, saved.err
    assert "warning: the audit entry of this backup could not be written to" in saved.err
    assert "it is kept on this host and written with the next one there" in saved.err
    owed = run("audit", "verify", "--location", str(repo))
    assert owed.code == 13
    assert "unwritten: 1 entry of this host could not be written here yet" in owed.err

    (repo / "audit").unlink()
    assert run("check", "--repo", str(repo)).code == 0
    log = run("audit", "log", "--location", str(repo), "--json")
    entries = [json.loads(line) for line in log.out.splitlines()]
    assert [(e["seq"], e["operation"], e["late"]) for e in entries] == [
        (1, "backup", True), (2, "check", False)]  # fmt: skip
    snapshot = json.loads(saved.out)["snapshot"]
    assert entries[0]["touched"]["written"]["snapshots"]["ids"] == [snapshot]
    assert run("audit", "verify", "--location", str(repo)).code == 0


def test_a_failed_operation_is_recorded_with_its_error(
    run: Run, password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    init_repo(LocalStorage(repo))
    missing = run("restore", "abcdef12", "--target", str(tmp_path / "out"), "--repo", str(repo))
    assert missing.code != 0
    (entry,) = [json.loads(line) for line in
                run("audit", "log", "--location", str(repo), "--json").out.splitlines()]  # fmt: skip
    assert (entry["operation"], entry["outcome"], entry["exit_code"]) == (
        "restore", "failed", missing.code)  # fmt: skip
    assert entry["error"] in missing.err
    # A wrong password opens nothing: there is no key to seal an entry with.
    monkeypatch.setenv("DRPLAN_PASSWORD", "wrong")
    assert run("check", "--repo", str(repo)).code == 12
    assert len(list_refs(LocalStorage(repo))[0]) == 1


def test_a_key_rotation_is_recorded_in_every_location_and_the_trail_opens_after_it(
    run: Run, sites: tuple[str, S3Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, _ = sites
    backup(run, plan)
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "the rotated password")
    rotated = run("--plan", plan, "key", "rotate", "--all-locations")
    assert rotated.code == 0, rotated.err
    monkeypatch.setenv("DRPLAN_PASSWORD", "the rotated password")
    for location in ("primary", "cloud"):
        entries = trail(run, plan, location)  # the older ones too, under the new password
        assert [e["operation"] for e in entries] == ["copy", "backup", "key rotate"]
        assert entries[-1]["touched"]["written"]["keys"]["objects"] == 1
        assert entries[-1]["touched"]["written"]["revoked"]["objects"] >= 1
    verify(run, plan)

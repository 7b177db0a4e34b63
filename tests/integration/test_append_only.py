"""A backup host whose S3 credentials may write but never delete (an IAM policy without
s3:DeleteObject, on a real SeaweedFS): backups, WAL pushes and copies work there, leaving
end markers for their locks; forget and prune fail in one line naming the permission; and
with $DRPLAN_APPEND_ONLY not one delete or overwrite is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan import clock
from drplan.locations.copying import copy_to
from drplan.repo.locks import RepositoryLock, list_locks
from drplan.repo.repository import Repository
from drplan.sources.files.archiver import BackupOptions, backup_files
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.sources.postgres.wal_retention import plan_wal_retention
from drplan.storage.local import LocalStorage
from drplan.storage.s3 import S3Storage
from testbed.plans import clean_plan
from testbed.seaweedfs import APPEND_ONLY_POLICY, PRUNE_HOST_POLICY
from tests.conftest import ROOT, Result, wait_until
from tests.fixtures.appendonly import AppendOnlyStorage
from tests.fixtures.seaweedfs import AppendOnlyServer, SeaweedFS, plan_location
from tests.integration.conftest import FAST_KDF, PASSWORD, init_repo

Run = Callable[..., Result]
KDF = ("--kdf-memory", "1024", "--kdf-time", "1")
PREFIX = "drplan"
SEGMENT = "000000010000000000000001"
WAL_SIZE = 1024 * 1024  # what a WAL file holds does not matter to pushing it


class Hosts:
    """One plan, run as the append-only backup host or as the privileged prune host (the
    same plan; the credentials its ${DR_S3_*} references resolve to differ by host)."""

    def __init__(
        self, server: AppendOnlyServer, plan: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.server, self.plan, self.monkeypatch = server, plan, monkeypatch
        self.bucket = server.admin.create_bucket(object_lock=True)

    def backup_host(self, *, declared: bool) -> None:
        self._keys(self.server.append_only)
        if declared:
            self.monkeypatch.setenv("DRPLAN_APPEND_ONLY", "1")
        else:
            self.monkeypatch.delenv("DRPLAN_APPEND_ONLY", raising=False)

    def prune_host(self) -> None:
        self._keys(self.server.privileged)
        self.monkeypatch.delenv("DRPLAN_APPEND_ONLY", raising=False)

    def _keys(self, server: SeaweedFS) -> None:
        self.monkeypatch.setenv("DR_S3_KEY", server.access_key_id)
        self.monkeypatch.setenv("DR_S3_SECRET", server.secret_access_key)

    def unlocked(self) -> None:
        """No Object Lock on the location: what forget and prune find deletable, they delete."""
        doc = yaml.safe_load(self.plan.read_text())
        del doc["locations"]["cloud"]["immutability"]
        self.plan.write_text(yaml.safe_dump(doc))

    def keys(self, prefix: str) -> list[str]:
        listed = self.server.admin.client().list_objects_v2(
            Bucket=self.bucket, Prefix=f"{PREFIX}/{prefix}"
        )
        return sorted(o["Key"].removeprefix(f"{PREFIX}/") for o in listed.get("Contents", []))


@pytest.fixture
def hosts(
    seaweedfs_append_only: AppendOnlyServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    source: Path,
) -> Hosts:
    """A plan: `web` backs up to `local` and copies to `cloud`, the append-only bucket
    (Object Lock, a day in governance mode); `db-wal` archives to `cloud`."""
    monkeypatch.setenv("DRPLAN_S3_TIMEOUT", "5")
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", "2")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = seaweedfs_append_only.admin
    hosts = Hosts(seaweedfs_append_only, tmp_path / "plan.yaml", monkeypatch)
    plan = clean_plan()
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["locations"]["local"]["path"] = str(tmp_path / "local")
    plan["locations"]["cloud"] = plan_location(
        server, hosts.bucket, PREFIX, immutability={"mode": "governance", "days": 1}
    )
    plan["jobs"]["db-wal"]["locations"] = ["cloud"]
    hosts.plan.write_text(yaml.safe_dump(plan))
    return hosts


def wal_push(hosts: Hosts, path: Path) -> subprocess.CompletedProcess[str]:
    """``drplan wal push`` as PostgreSQL's archive_command runs it: a process of its own,
    with this test's environment (the credentials, $DRPLAN_APPEND_ONLY)."""
    password = hosts.plan.parent / "password"
    password.write_text(PASSWORD + "\n")
    program = Path(sys.executable).with_name("drplan")
    return subprocess.run(
        [str(program), "--plan", str(hosts.plan), "wal", "push", "--system", "db",
         "--password-file", str(password), str(path)],
        capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
    )  # fmt: skip


@pytest.mark.parametrize("declared", [False, True], ids=["refused", "declared"])
def test_backup_wal_push_and_copy_work_where_nothing_may_be_deleted(
    run: Run, hosts: Hosts, source: Path, tmp_path: Path, declared: bool
) -> None:
    plan = str(hosts.plan)
    hosts.backup_host(declared=declared)
    assert run("--plan", plan, "repo", "init", "cloud", *KDF).code == 0
    direct = run("--plan", plan, "backup", "files", str(source), "--repo", "cloud")
    assert direct.code == 0, direct.err
    seeded = run("--plan", plan, "copy", "--from", "cloud", "--to", "local")
    assert seeded.code == 0, seeded.err
    (source / "second.txt").write_text("written locally, then copied to the cloud\n")
    fanned = run("--plan", plan, "backup", "web", "--json")
    assert fanned.code == 0, fanned.err
    assert json.loads(fanned.out)["copies"]["cloud"]["copied"]

    pg_wal = tmp_path / f"pg_wal-{declared}"
    (pg_wal / "archive_status").mkdir(parents=True)
    for name, fill in ((SEGMENT, b"a"), (f"{SEGMENT[:-1]}2.partial", b"b")):
        (pg_wal / name).write_bytes(fill * WAL_SIZE)
        pushed = wal_push(hosts, pg_wal / name)
        assert pushed.returncode == 0, pushed.stderr
    next_second()  # a listing's times are in seconds: the replacement must come later
    (pg_wal / f"{SEGMENT[:-1]}2.partial").write_bytes(b"c" * WAL_SIZE)  # it grew: replaced
    pushed = wal_push(hosts, pg_wal / f"{SEGMENT[:-1]}2.partial")
    assert pushed.returncode == 0, pushed.stderr
    assert len([k for k in hosts.keys("wal/") if ".partial." in k]) == 2  # the old one stays

    # Every process ended its locks with a marker: none blocks the privileged prune.
    assert hosts.keys("locks/")
    hosts.prune_host()
    forgotten = run("--plan", plan, "forget", "--repo", "cloud", "--keep-last", "10")
    assert forgotten.code == 0, forgotten.err
    assert "1 more stay under Object Lock" in forgotten.out  # the replaced partial, for now
    pruned = run("--plan", plan, "prune", "--repo", "cloud")
    assert pruned.code == 0, pruned.err
    assert hosts.keys("locks/") == []  # ended locks, then their markers, removed
    checked = run("--plan", plan, "check", "--read-data", "--repo", "cloud")
    assert checked.code == 0, checked.out + checked.err


@pytest.mark.parametrize("declared", [False, True], ids=["refused", "declared"])
@pytest.mark.parametrize("command", [("forget", "--keep-last", "1"), ("prune",)])
def test_forget_and_prune_from_the_backup_host_fail_in_one_line_naming_the_permission(
    run: Run, hosts: Hosts, source: Path, declared: bool, command: tuple[str, ...]
) -> None:
    plan = str(hosts.plan)
    hosts.unlocked()  # else nothing would be deletable yet, and nothing asked to be deleted
    hosts.backup_host(declared=declared)
    assert run("--plan", plan, "repo", "init", "cloud", *KDF).code == 0
    for text in ("first", "second"):
        (source / "more.txt").write_text(text)
        assert run("--plan", plan, "backup", "files", str(source), "--repo", "cloud").code == 0
    if command[0] == "prune":
        hosts.prune_host()  # something to prune: the first snapshot, forgotten by the admin
        assert run("--plan", plan, "forget", "--repo", "cloud", "--keep-last", "1").code == 0
        hosts.backup_host(declared=declared)

    failed = run("--plan", plan, *command, "--repo", "cloud")
    assert failed.code == 26, failed.err
    [line] = failed.err.strip().splitlines()
    assert "s3:DeleteObject" in line
    assert "Traceback" not in failed.err
    assert "privileged host" in line
    if declared:
        assert "$DRPLAN_APPEND_ONLY" in line
    else:
        assert "access denied: these credentials may not delete" in line


def test_with_drplan_append_only_no_delete_or_overwrite_is_ever_sent(
    seaweedfs_append_only: AppendOnlyServer, source: Path, tmp_path: Path
) -> None:
    """The backup host's paths, through the requests boto3 really sends: credentials that
    could delete, and not one DeleteObject; no key written twice."""
    admin = seaweedfs_append_only.admin
    storage = admin.storage(
        admin.create_bucket(object_lock=True), object_lock=("GOVERNANCE", 1), append_only=True
    )
    sent = _requests(storage)
    repo = init_repo(storage)
    for text in ("first", "second"):
        (source / "more.txt").write_text(text)
        _backup(repo, source)
    seeded = LocalStorage(tmp_path / "seeded")  # a copy from the cloud, then back to it
    with RepositoryLock(repo, exclusive=False, operation="copy"):
        copy_to(repo, seeded, repo.snapshots())
    source_repo = Repository.open(seeded, PASSWORD.encode())
    source_repo.load_index()
    (source / "more.txt").write_text("third, written locally")
    _backup(source_repo, source)
    with RepositoryLock(source_repo, exclusive=False, operation="copy"):
        result = copy_to(source_repo, storage, source_repo.snapshots())
    assert len(result.copied) == 1
    archive = WalArchive(Repository.open(storage, PASSWORD.encode()), "db")
    archive.push(SEGMENT, b"a" * WAL_SIZE)
    for fill in (b"b", b"c"):
        archive.push(f"{SEGMENT[:-1]}2.partial", fill * WAL_SIZE)

    assert [op for op, _ in sent if op.startswith("Delete")] == []
    written = [key for op, key in sent if op in ("PutObject", "CreateMultipartUpload")]
    assert len(written) == len(set(written)), "a key was written twice"
    assert any(lock.ends for lock in list_locks(repo))


def next_second() -> None:
    """Wait for the wall clock's next second: objects stored in one second are listed with
    one time, and a partial is told from the one it replaced by its time."""
    now = int(time.time())
    wait_until(lambda: int(time.time()) > now, "the next second", timeout=5)


def _backup(repo: Repository, source: Path) -> None:
    repo.load_index()
    with RepositoryLock(repo, exclusive=False, operation="backup"):
        backup_files(repo, BackupOptions([str(source)], workers=2))


def _requests(storage: S3Storage) -> list[tuple[str, str]]:
    """Every object request the storage's client sends from now on: (operation, key)."""
    sent: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params.get("Key", "")))

    storage.client.meta.events.register("before-parameter-build.s3", record)
    return sent


def test_the_append_only_wrapper_sees_only_lock_and_partial_deletes(
    tmp_path: Path, source: Path
) -> None:
    """Without the declaration, a refused delete is asked once per lock (and once per WAL
    archive), never for data; nothing is ever overwritten."""
    storage = AppendOnlyStorage(LocalStorage(tmp_path / "repo"))
    repo = Repository.init(storage, PASSWORD.encode(), kdf=FAST_KDF)
    _backup(repo, source)
    (source / "more.txt").write_text("second")
    _backup(repo, source)
    archive = WalArchive(repo, "db")
    for fill in (b"b", b"c"):
        next_second()
        archive.push(f"{SEGMENT[:-1]}2.partial", fill * WAL_SIZE)
    assert storage.overwrites == []
    assert all(n.startswith(("locks/", "wal/")) for n in storage.deletes), storage.deletes
    assert len(storage.deletes) == 3  # one per lock, one for the replaced partial

    # The privileged host's forget removes the partial a newer one replaced.
    privileged = Repository.open(storage.inner, PASSWORD.encode())
    old = min(archive.files(), key=lambda w: w.mtime)
    decision = plan_wal_retention(privileged, "db", privileged.snapshots(), clock.now())
    assert [w.object for w in decision.doomed] == [old.object]
    assert WalArchive(privileged, "db").fetch(f"{SEGMENT[:-1]}2") == b"c" * WAL_SIZE


def test_the_seaweedfs_policies_operations_md_gives_are_the_ones_tested() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## An append-only backup host") :]
    block = section[section.index('{\n     "identities"') : section.index("   ```\n\n   (these")]
    policies = {p["name"]: json.loads(p["content"]) for p in json.loads(block)["policies"]}
    assert policies == {"append-only": APPEND_ONLY_POLICY, "prune": PRUNE_HOST_POLICY}

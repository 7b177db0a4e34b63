"""The dedup trap on a real S3 with Object Lock (SeaweedFS): a new snapshot that reuses packs
whose locks end before its own must extend them, and what opens the repository, before the
snapshot is written, whether a backup writes it or a copy does; cheaply, PUTting retention
only where a lock ends too early."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from drplan.repo.immutability import AHEAD, SLACK
from drplan.repo.locks import RepositoryLock
from drplan.repo.replication import blobs_of
from drplan.repo.repository import Repository, pack_name
from drplan.sources.files.archiver import BackupOptions, backup_files
from drplan.storage import RetryingStorage, Storage
from drplan.storage.s3 import S3Storage
from testbed.plans import clean_plan
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS, plan_location
from tests.integration.conftest import PASSWORD, init_repo

Run = Callable[..., Result]
FAST_KDF = ("--kdf-memory", "1024", "--kdf-time", "1")
PREFIX = "drplan"


class Cloud:
    """The plan's locked S3 location, and what its objects are locked until."""

    def __init__(self, server: SeaweedFS, plan: Path) -> None:
        self.client = server.client()
        self.bucket = server.create_bucket(object_lock=True)
        self.plan = plan

    def lock_days(self, days: int | None) -> None:
        doc = yaml.safe_load(self.plan.read_text())
        cloud = doc["locations"]["cloud"]
        cloud.pop("immutability", None)
        if days is not None:
            cloud["immutability"] = {"mode": "governance", "days": days}
        self.plan.write_text(yaml.safe_dump(doc))

    def packs_of(self, snapshot: str) -> set[str]:
        """The packs a restore of ``snapshot`` reads, as drplan's own walk finds them."""
        doc = yaml.safe_load(self.plan.read_text())["locations"]["cloud"]
        storage = S3Storage(
            self.bucket, PREFIX, endpoint_url=doc["endpoint"], region=doc["region"],
            access_key_id=os.environ["DR_S3_KEY"], secret_access_key=os.environ["DR_S3_SECRET"],
        )  # fmt: skip
        repo = Repository.open(storage, PASSWORD.encode())
        repo.load_index()
        wanted = [s for s in repo.snapshots() if s.id == snapshot]
        return {
            pack_name(where.pack.id)
            for blob in blobs_of(repo, wanted)
            if (where := repo.index.lookup(blob)) is not None
        }

    def until(self) -> dict[str, dt.datetime | None]:
        """Every object's retain-until date (None: not locked), locks/ aside."""
        found: dict[str, dt.datetime | None] = {}
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/"):
            for obj in page.get("Contents", []):
                name = obj["Key"].removeprefix(f"{PREFIX}/")
                if not name.startswith("locks/"):
                    head = self.client.head_object(Bucket=self.bucket, Key=obj["Key"])
                    found[name] = head.get("ObjectLockRetainUntilDate")
        return found


@pytest.fixture
def cloud(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str, source: Path
) -> Cloud:
    """A plan whose files job `web` backs up to `local` and copies to `cloud` (S3 with
    Object Lock on the bucket, the location's lock days set per test)."""
    plan_file = tmp_path / "plan.yaml"
    located = Cloud(seaweedfs, plan_file)
    plan = clean_plan()
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["locations"]["local"]["path"] = str(tmp_path / "local")
    plan["locations"]["cloud"] = plan_location(seaweedfs, located.bucket, PREFIX)
    plan_file.write_text(yaml.safe_dump(plan))
    return located


def backup(run: Run, cloud: Cloud, *where: str) -> str:
    doc = yaml.safe_load(cloud.plan.read_text())
    doc["jobs"]["web"]["locations"] = list(where)
    cloud.plan.write_text(yaml.safe_dump(doc))
    result = run("--plan", str(cloud.plan), "backup", "web", "--json")
    assert result.code == 0, result.err
    snapshot: str = json.loads(result.out)["snapshot"]
    return snapshot


NEEDED = ("index/", "config", "keys/", "keyring/", "revoked/")  # besides its packs


def covered(cloud: Cloud, until: dict[str, dt.datetime | None], snapshot: str) -> list[str]:
    """The objects a restore of ``snapshot`` needs that are locked for less than it, by more
    than the slack allowed (nothing here is pruned: every index object is live)."""
    own = until[f"snapshots/{snapshot}"]
    assert own is not None
    return sorted(
        name
        for name, end in until.items()
        if (name.startswith(NEEDED) or name in cloud.packs_of(snapshot))
        and (end is None or end < own - SLACK)
    )


def test_a_backup_locks_what_it_reuses_as_long_as_itself_and_only_what_falls_short(
    run: Run, cloud: Cloud, source: Path
) -> None:
    plan = str(cloud.plan)
    assert run("--plan", plan, "repo", "init", "cloud", *FAST_KDF).code == 0
    first = backup(run, cloud, "cloud")  # no lock asked for: nothing is locked
    unlocked = cloud.until()
    assert {name: end for name, end in unlocked.items() if end is not None} == {}

    cloud.lock_days(1)
    (source / "second.txt").write_text("a little more\n")
    second = backup(run, cloud, "cloud")  # reuses the first's packs: they get locked first
    after_second = cloud.until()
    assert covered(cloud, after_second, second) == []
    assert after_second[f"snapshots/{first}"] is None  # not needed: left alone

    cloud.lock_days(3)  # longer now: every reused pack would lapse two days before the next
    (source / "third.txt").write_text("and more\n")
    third = backup(run, cloud, "cloud")
    after_third = cloud.until()
    assert covered(cloud, after_third, third) == []
    now = dt.datetime.now(dt.UTC)
    reused = [*(cloud.packs_of(second) & cloud.packs_of(third)), "config"]
    for name in reused:  # extended past the new snapshot's lock, by a quarter of the days
        end = after_third[name]
        assert end is not None
        assert end > now + dt.timedelta(days=3)
        assert end <= now + dt.timedelta(days=3 * (1 + AHEAD), minutes=5)

    (source / "fourth.txt").write_text("the last\n")
    fourth = backup(run, cloud, "cloud")
    after_fourth = cloud.until()
    assert covered(cloud, after_fourth, fourth) == []
    # Long enough already: no object the third extended is extended again.
    assert {n: after_fourth[n] for n in after_third if n in reused} == {
        n: after_third[n] for n in reused
    }

    restored = run(
        "--plan", plan, "restore", fourth, "--target", str(cloud.plan.parent / "out"),
        "--repo", "cloud", "--special-files",
    )  # fmt: skip
    assert restored.code == 0, restored.err


def test_a_copy_locks_what_its_snapshot_reuses_in_the_target(
    run: Run, cloud: Cloud, source: Path
) -> None:
    plan = str(cloud.plan)
    assert run("--plan", plan, "repo", "init", "local", *FAST_KDF).code == 0
    cloud.lock_days(1)
    seeded = run("--plan", plan, "copy", "--from", "local", "--to", "cloud")
    assert seeded.code == 0, seeded.err
    first = backup(run, cloud, "local", "cloud")  # written locally, copied to the cloud
    assert covered(cloud, cloud.until(), first) == []

    cloud.lock_days(3)
    (source / "second.txt").write_text("a little more\n")
    second = backup(run, cloud, "local", "cloud")
    until = cloud.until()
    assert covered(cloud, until, second) == []
    assert all(
        (end := until[name]) is not None and end > dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
        for name in cloud.packs_of(first) & cloud.packs_of(second)
    )


class Recorded(RetryingStorage):
    """A real storage whose writes and lock extensions are recorded in order."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner, attempts=1)
        self.calls: list[tuple[str, str]] = []

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        self.calls.append(("write", name))
        super().write(name, data, hot=hot, content_type=content_type)

    def lock_until(self, name: str, until: dt.datetime) -> None:
        self.calls.append(("lock", name))
        super().lock_until(name, until)


def test_the_locks_are_extended_before_the_snapshot_is_written(
    seaweedfs: SeaweedFS, source: Path
) -> None:
    """A crash between the two must leave longer locks and no snapshot, never a snapshot
    whose data is about to become deletable."""
    bucket = seaweedfs.create_bucket(object_lock=True)
    short = seaweedfs.storage(bucket, object_lock=("GOVERNANCE", 1))
    backed_up(init_repo(short), source)
    longer = Recorded(seaweedfs.storage(bucket, object_lock=("GOVERNANCE", 3)))
    (source / "second.txt").write_text("a little more\n")
    snapshot = backed_up(Repository.open(longer, PASSWORD.encode()), source)

    written = longer.calls.index(("write", f"snapshots/{snapshot}"))
    extended = [i for i, (op, _) in enumerate(longer.calls) if op == "lock"]
    assert extended, longer.calls
    assert max(extended) < written
    assert {name for op, name in longer.calls if op == "lock"} >= {"config"}


def backed_up(repo: Repository, source: Path) -> str:
    repo.load_index()
    with RepositoryLock(repo, exclusive=False, operation="backup"):
        result = backup_files(repo, BackupOptions([str(source)], workers=2))
    return result.snapshot.id

"""Fixtures for repository tests: a fast-KDF repository, a varied source tree, tree comparison."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.repo.keys import KdfParams
from drplan.repo.repository import Repository
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.fixtures.seaweedfs import SeaweedFS

PASSWORD = "correct horse battery staple"
FAST_KDF = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DRPLAN_PASSWORD", PASSWORD)
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    monkeypatch.delenv("DRPLAN_REPO", raising=False)
    return PASSWORD


def init_repo(storage: Storage) -> Repository:
    return Repository.init(storage, PASSWORD.encode(), kdf=FAST_KDF)


@pytest.fixture
def repo_dir(tmp_path: Path, password: str) -> str:
    path = tmp_path / "repo"
    init_repo(LocalStorage(path))
    return str(path)


def open_repo(path: str) -> Repository:
    repo = Repository.open(LocalStorage(path), PASSWORD.encode())
    repo.load_index()
    return repo


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Files of every kind the backup handles, with distinctive metadata."""
    root = tmp_path / "src"
    (root / "etc" / "app").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "etc" / "app" / "app.conf").write_text("listen = 8080\n" * 50)
    (root / "etc" / "app" / "secret.key").write_bytes(os.urandom(64))
    os.chmod(root / "etc" / "app" / "secret.key", 0o600)
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "logs.txt").write_text(
        "".join(f"2026-11-26 line {i} status=ok\n" for i in range(50_000))
    )
    (root / "zero").write_bytes(b"")
    os.symlink("etc/app/app.conf", root / "conf-link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "logs.txt", root / "logs-hardlink.txt")
    os.mkfifo(root / "pipe")
    (root / "caf\xe9.txt").write_text("latin-1 name")
    (root / os.fsdecode(b"raw-\xff-name")).write_text("not utf-8")
    os.setxattr(root / "etc" / "app" / "app.conf", "user.checksum", b"abc123")
    os.chmod(root / "etc", 0o750)
    (root / "shared.txt").write_text("world-writable")
    os.chmod(root / "shared.txt", 0o666)  # bits a typical umask would cut
    (root / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "tool", 0o4755)  # set-uid survives the restore
    os.utime(
        root / "etc" / "app" / "app.conf", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789)
    )
    os.utime(root / "empty", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    return root


def snapshot_of(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a restore must reproduce, per relative path (atime aside)."""
    seen: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(root)))
            kind = stat.S_IFMT(st.st_mode)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            xattrs = sorted(
                (n, os.getxattr(path, n, follow_symlinks=False))
                for n in os.listxattr(path, follow_symlinks=False)
            )
            mtime = None if stat.S_ISDIR(st.st_mode) and rel == "." else st.st_mtime_ns
            seen[rel] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                mtime,
                content,
                tuple(xattrs),
                st.st_nlink,
            )
    return seen


Compare = Callable[[Path, Path], None]


@pytest.fixture
def same_tree() -> Compare:
    def compare(a: Path, b: Path) -> None:
        left, right = snapshot_of(a), snapshot_of(b)
        assert left.keys() == right.keys()
        for key in left:
            assert left[key] == right[key], key

    return compare


@pytest.fixture
def s3_secrets(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 credentials a plan's locations reference as ${DR_S3_KEY} and ${DR_S3_SECRET},
    with short timeouts so an unreachable location fails fast."""
    monkeypatch.setenv("DR_S3_KEY", seaweedfs.access_key_id)
    monkeypatch.setenv("DR_S3_SECRET", seaweedfs.secret_access_key)
    monkeypatch.setenv("DRPLAN_S3_TIMEOUT", "2")
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", "2")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)


def files_job_plan(
    tmp_path: Path, source: Path, locations: dict[str, Any], every: str = "1h"
) -> Path:
    """A plan of one files job, `web`, backing up ``source`` (data class configuration,
    RPO 4h) on ``every`` to ``locations``, in their order; written to tmp_path/plan.yaml."""
    plan: dict[str, Any] = clean_plan()
    plan["objectives"]["rpo"] = {"configuration": "4h"}
    plan["data_classes"] = {}
    plan["systems"] = {"web": {**plan["systems"]["web"], "paths": [str(source)]}}
    plan["systems"]["web"].pop("depends_on", None)
    plan["locations"] = locations
    plan["jobs"] = {"web": {**plan["jobs"]["web"], "locations": list(locations), "schedule": every}}
    for key in ("scenarios", "runbooks", "drills"):
        plan.pop(key, None)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def platform_plan(
    tmp_path: Path, systems: dict[str, dict[str, Any]], locations: dict[str, Any],
    schedule: str = "4h",
) -> Path:  # fmt: skip
    """A plan backing up each of ``systems`` (etcd, git, images, ...; data class
    configuration) with a job of the same name to ``locations``, in their order: the
    repository made in the first, seeded as a replica in the others; written to
    tmp_path/plan.yaml."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    path = files_job_plan(tmp_path, tmp_path, locations)
    raw = yaml.safe_load(path.read_text())
    raw["systems"] = {name: {"tier": "critical", "data_classes": ["configuration"], **spec}
                      for name, spec in systems.items()}  # fmt: skip
    raw["jobs"] = {name: {"system": name, "type": spec["kind"], "schedule": schedule,
                          "locations": list(locations)} for name, spec in systems.items()}  # fmt: skip
    path.write_text(yaml.safe_dump(raw))
    first, *others = locations
    drplan = [sys.executable, "-m", "drplan", "--plan", str(path)]
    subprocess.run([*drplan, "repo", "init", first, "--kdf-memory", "1024", "--kdf-time", "1"],
                   check=True, capture_output=True)  # fmt: skip
    for location in others:
        subprocess.run([*drplan, "copy", "--from", first, "--to", location], check=True,
                       capture_output=True)  # fmt: skip
    return path


@pytest.fixture(params=["local", "s3"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """Empty storages of one kind: a directory, or a bucket of the real S3 server."""
    count = iter(range(1000))
    if request.param == "local":
        return lambda: LocalStorage(tmp_path / f"repo{next(count)}")
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    return lambda: server.storage(server.create_bucket())

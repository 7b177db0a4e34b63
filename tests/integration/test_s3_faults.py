"""S3 faults between drplan and a real S3 server (SeaweedFS), injected by testbed.faultproxy.

Each command that talks to S3 (backup, copy both ways, restore, WAL push and fetch) meets
two kinds of trouble. Transient faults at a rate retries absorb (latency, resets before,
after and in the middle of a response, truncated responses, 500 InternalError, 503
SlowDown): the command succeeds and its result is exact. Persistent faults (every write
of data refused, every connection reset): the command fails in one line with its
documented exit code, nothing incomplete becomes visible, and once the fault clears the
repository checks clean and the same command succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from drplan.repo.config import ChunkerParams, RepoConfig
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.sources.postgres.wal_spool import AGENT_STOP, PUSH_SPOOL, mark
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from testbed.faultproxy import (
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    FaultPlan,
    FaultProxy,
    Rule,
    running_faultproxy,
)
from testbed.plans import clean_plan
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import FAST_KDF, PASSWORD

Run = Callable[..., Result]
ATTEMPTS_TRANSIENT = "6"  # a request meets at most a few faults in a row: these absorb them
ATTEMPTS_PERSISTENT = "3"
TIMEOUT = "2"  # seconds per request: a response held back longer is a timeout
SEGMENT = 16 * 1024 * 1024


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    with running_faultproxy(seaweedfs.endpoint_url) as running:
        yield running
    # Shown with the test's output (pytest -rA, or on failure): what it went through.
    print(f"faultproxy: {len(running.exchanges)} requests, injected {dict(running.injected())}")


@pytest.fixture
def s3_env(
    seaweedfs: SeaweedFS, proxy: FaultProxy, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drplan reaches S3 through the proxy (``AWS_ENDPOINT_URL``), with short timeouts."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_access_key)
    monkeypatch.setenv("AWS_REGION", seaweedfs.region)
    monkeypatch.setenv("DRPLAN_S3_TIMEOUT", TIMEOUT)
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_TRANSIENT)


@pytest.fixture
def empty_s3_url(seaweedfs: SeaweedFS, s3_env: None) -> str:
    return f"s3://{seaweedfs.create_bucket()}/drplan"


@pytest.fixture
def s3_url(seaweedfs: SeaweedFS, empty_s3_url: str) -> str:
    """A repository in a new bucket; small chunks and packs, so a few MiB take many requests."""
    bucket = empty_s3_url.split("/")[2]
    init_small_repo(seaweedfs.storage(bucket, "drplan"))
    return empty_s3_url


@pytest.fixture
def local_url(tmp_path: Path, password: str) -> str:
    path = tmp_path / "local-repo"
    init_small_repo(LocalStorage(path))
    return str(path)


def init_small_repo(storage: Storage) -> Repository:
    config = dataclasses.replace(
        RepoConfig.new("aes-256-gcm", 1),
        chunker=ChunkerParams(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024),
        pack_size=128 * 1024,
    )
    return Repository.init(storage, PASSWORD.encode(), kdf=FAST_KDF, config=config)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A few MiB in a few files: incompressible, compressible, empty, nested."""
    root = tmp_path / "data"
    (root / "nested" / "deeper").mkdir(parents=True)
    rng = random.Random(17)
    (root / "random.bin").write_bytes(rng.randbytes(2 * 1024 * 1024 + 5))
    (root / "nested" / "text.txt").write_text("".join(f"line {i}\n" for i in range(60_000)))
    (root / "nested" / "deeper" / "small").write_bytes(rng.randbytes(3000))
    (root / "empty").write_bytes(b"")
    return root


def contents(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def transient(seed: int) -> FaultPlan:
    """Every kind of transient fault once where it matters most, then a few more at random."""
    return FaultPlan(
        Rule(Fault.reset("after"), method="PUT", path="/data/", nth=1),
        Rule(SLOW_DOWN, method="PUT", path="/data/", nth=2),
        Rule(INTERNAL_ERROR, method="PUT", path="/index/", nth=1),
        Rule(Fault.reset("before"), method="PUT", path="/snapshots/", nth=1),
        Rule(Fault.truncate(), method="GET", path="/data/", nth=1),
        Rule(Fault.reset("mid-response"), method="GET", path="/data/", nth=2),
        Rule(Fault.truncate(0.2), method="GET", path="/index/", nth=1),
        Rule(Fault.latency(float(TIMEOUT) + 0.5, "response"), method="GET", nth=3),
        Rule(Fault.reset("before"), probability=0.02),
        Rule(Fault.reset("after"), probability=0.02),
        Rule(Fault.truncate(), method="GET", probability=0.02),
        Rule(INTERNAL_ERROR, probability=0.02),
        Rule(SLOW_DOWN, probability=0.02),
        Rule(Fault.latency(0.1), probability=0.05),
        Rule(Fault.latency(0.1, "response"), probability=0.05),
        seed=seed,
    )


def one_line(result: Result) -> str:
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def snapshot_ids(run: Run, repo: str) -> list[str]:
    listed = run("snapshots", "--repo", repo, "--json")
    assert listed.code == 0, listed.err
    return [s["id"] for s in json.loads(listed.out)]


def assert_sound(run: Run, repo: str, snapshots: list[str]) -> None:
    """The repository checks clean, reading every pack, and lists exactly ``snapshots``."""
    check = run("check", "--read-data", "--repo", repo)
    assert check.code == 0, check.out + check.err
    assert sorted(snapshot_ids(run, repo)) == sorted(snapshots)


# -- backup ------------------------------------------------------------------------------------


def test_backup_absorbs_transient_faults_and_restores_exactly(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path
) -> None:
    proxy.set_plan(transient(seed=1))
    backed_up = run("backup", "files", str(data), "--repo", s3_url, "--json")
    assert backed_up.code == 0, backed_up.err
    assert {"reset/after", "error/503 SlowDown", "error/500 InternalError"} <= set(proxy.injected())
    proxy.clear()
    snapshot = json.loads(backed_up.out)["snapshot"]
    assert_sound(run, s3_url, [snapshot])
    target = tmp_path / "restored"
    assert run("restore", snapshot, "--target", str(target), "--repo", s3_url).code == 0
    assert contents(target / data.relative_to("/")) == contents(data)


@pytest.mark.parametrize(
    "fault", [SLOW_DOWN, Fault.reset("before"), Fault.reset("after")], ids=lambda f: f.label
)
def test_backup_fails_in_one_line_when_no_pack_can_be_written_and_shows_nothing(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, fault: Fault,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(fault, method="PUT", path="/data/")))
    failed = run("backup", "files", str(data), "--repo", s3_url)
    assert failed.code == 1
    line = one_line(failed)
    assert "writing data/" in line
    proxy.clear()
    assert_sound(run, s3_url, [])
    again = run("backup", "files", str(data), "--repo", s3_url, "--json")
    assert again.code == 0, again.err
    assert_sound(run, s3_url, [json.loads(again.out)["snapshot"]])


def test_backup_against_an_endpoint_that_always_resets_fails_in_one_line(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(Fault.reset("before"))))
    failed = run("backup", "files", str(data), "--repo", s3_url)
    assert failed.code == 1
    assert "did not answer: connection reset by peer" in one_line(failed)
    assert f"{ATTEMPTS_PERSISTENT} attempts" in failed.err
    proxy.clear()
    assert_sound(run, s3_url, [])


def backup(run: Run, repo: str, data: Path) -> str:
    backed_up = run("backup", "files", str(data), "--repo", repo, "--json")
    assert backed_up.code == 0, backed_up.err
    snapshot: str = json.loads(backed_up.out)["snapshot"]
    return snapshot


def restores_exactly(run: Run, repo: str, snapshot: str, data: Path, target: Path) -> None:
    restored = run("restore", snapshot, "--target", str(target), "--repo", repo)
    assert restored.code == 0, restored.err
    assert contents(target / data.relative_to("/")) == contents(data)


# -- restore -----------------------------------------------------------------------------------


def test_restore_absorbs_transient_faults_and_is_exact(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path
) -> None:
    snapshot = backup(run, s3_url, data)
    proxy.set_plan(transient(seed=2))
    restores_exactly(run, s3_url, snapshot, data, tmp_path / "restored")
    assert {"truncate", "reset/mid-response"} <= set(proxy.injected())


def test_restore_from_an_endpoint_that_keeps_failing_says_so_and_resumes_later(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    snapshot = backup(run, s3_url, data)
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(Fault.reset("mid-response"), method="GET", path="/data/")))
    target = tmp_path / "restored"
    failed = run("restore", snapshot, "--target", str(target), "--repo", s3_url)
    assert failed.code == 1, failed.err  # the network, not damaged data (13)
    assert "was cut short: connection reset by peer" in one_line(failed)
    proxy.clear()
    restores_exactly(run, s3_url, snapshot, data, target)


def test_a_restore_cut_off_from_file_data_blames_the_network_not_the_data(
    run: Run, seaweedfs: SeaweedFS, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Directory listings read, one pack of file data never does: that is not damage (13,
    "restore those files from another location"), and running the restore again finishes it."""
    snapshot = backup(run, s3_url, data)
    repo = Repository.open(seaweedfs.storage(s3_url.split("/")[2], "drplan"), PASSWORD.encode())
    repo.load_index()
    pack = next(p.id for p in repo.index.packs.values() if p.entries[0].type == DATA)
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(Fault.reset("before"), path=pack)))
    target = tmp_path / "restored"
    failed = run("restore", snapshot, "--target", str(target), "--repo", s3_url)
    assert failed.code == 1, failed.err
    assert f"reading data/{pack[:2]}/{pack}" in failed.err
    assert "did not answer" in one_line(failed)
    assert proxy.injected()["reset/before"] >= int(ATTEMPTS_PERSISTENT)
    proxy.clear()
    restores_exactly(run, s3_url, snapshot, data, target)


# -- copy --------------------------------------------------------------------------------------


def test_copy_to_s3_absorbs_transient_faults(
    run: Run, local_url: str, empty_s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path
) -> None:
    snapshot = backup(run, local_url, data)
    proxy.set_plan(transient(seed=3))
    copied = run("copy", "--from", local_url, "--to", empty_s3_url)
    assert copied.code == 0, copied.err
    assert {"reset/after", "error/503 SlowDown"} <= set(proxy.injected())
    proxy.clear()
    assert_sound(run, empty_s3_url, [snapshot])
    restores_exactly(run, empty_s3_url, snapshot, data, tmp_path / "restored")


def test_copy_from_s3_absorbs_transient_faults(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path
) -> None:
    snapshot = backup(run, s3_url, data)
    replica = str(tmp_path / "replica")
    proxy.set_plan(transient(seed=4))
    copied = run("copy", "--from", s3_url, "--to", replica)
    assert copied.code == 0, copied.err
    assert proxy.injected()["truncate"]
    proxy.clear()
    assert_sound(run, replica, [snapshot])
    restores_exactly(run, replica, snapshot, data, tmp_path / "restored")


def test_copy_from_s3_that_cannot_be_read_fails_in_one_line_and_leaves_no_snapshot(
    run: Run, s3_url: str, proxy: FaultProxy, data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    snapshot = backup(run, s3_url, data)
    replica = str(tmp_path / "replica")
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(Fault.reset("before"), method="GET", path="/data/")))
    failed = run("copy", "--from", s3_url, "--to", replica)
    assert failed.code == 1  # unreachable, not damaged (13): nothing is "left out"
    assert "did not answer: connection reset by peer" in one_line(failed)
    proxy.clear()
    assert_sound(run, replica, [])
    assert run("copy", "--from", s3_url, "--to", replica).code == 0
    assert_sound(run, replica, [snapshot])


@pytest.mark.parametrize("objects", ["/data/", "/index/", "/snapshots/"])
def test_copy_to_s3_that_refuses_writes_fails_in_one_line_and_shows_nothing(
    run: Run, local_url: str, empty_s3_url: str, proxy: FaultProxy, data: Path,
    monkeypatch: pytest.MonkeyPatch, objects: str,
) -> None:  # fmt: skip
    first = backup(run, local_url, data)
    assert run("copy", "--from", local_url, "--to", empty_s3_url).code == 0  # seeded
    (data / "later.bin").write_bytes(os.urandom(300_000))
    second = backup(run, local_url, data)
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", ATTEMPTS_PERSISTENT)
    proxy.set_plan(FaultPlan(Rule(SLOW_DOWN, method="PUT", path=objects)))
    failed = run("copy", "--from", local_url, "--to", empty_s3_url)
    assert failed.code == 1
    assert f"writing {objects.strip('/')}/" in one_line(failed)
    proxy.clear()
    assert_sound(run, empty_s3_url, [first])
    assert run("copy", "--from", local_url, "--to", empty_s3_url).code == 0
    assert_sound(run, empty_s3_url, [first, second])


# -- WAL ---------------------------------------------------------------------------------------


@pytest.fixture
def wal_plan(
    tmp_path: Path, seaweedfs: SeaweedFS, proxy: FaultProxy, s3_secrets: None
) -> Iterator[dict[str, Path]]:
    """A plan whose WAL job archives to S3 through the proxy; the WAL agents it starts are
    asked to stop at the end."""
    bucket = seaweedfs.create_bucket()
    init_small_repo(seaweedfs.storage(bucket, "drplan"))
    plan = clean_plan()
    plan["locations"]["cloud"] = {
        "role": "cloud",
        "kind": "s3",
        "bucket": bucket,
        "prefix": "drplan",
        "endpoint": proxy.endpoint_url,
        "region": seaweedfs.region,
        "access_key_id": "${DR_S3_KEY}",
        "secret_access_key": "${DR_S3_SECRET}",
    }
    plan["jobs"]["db-wal"]["locations"] = ["cloud"]
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    pg_wal = tmp_path / "data" / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    restored = tmp_path / "restored" / "pg_wal"
    restored.mkdir(parents=True)
    env = {"plan": plan_path, "password": password, "pg_wal": pg_wal, "restored": restored}
    yield env
    for spool in (pg_wal / PUSH_SPOOL, restored / "drplan-prefetch"):
        if spool.is_dir():
            mark(str(spool / AGENT_STOP))


def wal(env: dict[str, Path], *args: str, attempts: str) -> subprocess.CompletedProcess[str]:
    """``drplan wal push|fetch`` as PostgreSQL runs it: a process of its own, which starts
    the agent (and passes its environment on)."""
    program = Path(sys.executable).with_name("drplan")
    environment = {**os.environ, "DRPLAN_S3_ATTEMPTS": attempts, "DRPLAN_S3_TIMEOUT": TIMEOUT}
    return subprocess.run(
        [str(program), "--plan", str(env["plan"]), "wal", args[0],
         "--password-file", str(env["password"]), *args[1:]],
        capture_output=True, text=True, timeout=300, env=environment, check=False,
    )  # fmt: skip


def segment(env: dict[str, Path], number: int) -> Path:
    path = env["pg_wal"] / f"0000000100000000000000{number:02X}"
    fill = f"segment {number} ".encode()
    path.write_bytes(fill * (SEGMENT // len(fill)) + os.urandom(SEGMENT % len(fill)))
    return path


def fetched_back(env: dict[str, Path], path: Path) -> bool:
    target = env["restored"] / "RECOVERYXLOG"
    fetched = wal(env, "fetch", path.name, str(target), attempts=ATTEMPTS_TRANSIENT)
    assert fetched.returncode == 0, fetched.stderr
    return target.read_bytes() == path.read_bytes()


def test_wal_push_and_fetch_absorb_transient_faults(
    wal_plan: dict[str, Path], proxy: FaultProxy
) -> None:
    proxy.set_plan(transient(seed=5))
    paths = [segment(wal_plan, n) for n in range(1, 4)]
    for path in paths:
        pushed = wal(wal_plan, "push", str(path), attempts=ATTEMPTS_TRANSIENT)
        assert pushed.returncode == 0, pushed.stderr
    # The first read of each file fails (the first asked for, the others read ahead): of
    # the object, "/NAME.", not of the listing that finds it ("prefix=...%2FNAME.").
    faults = [Fault.truncate(), Fault.reset("mid-response"), SLOW_DOWN]
    rules = (Rule(f, "GET", f"/{p.name}.", nth=1) for f, p in zip(faults, paths, strict=True))
    proxy.set_plan(FaultPlan(*rules))
    before = proxy.injected()
    assert all(fetched_back(wal_plan, path) for path in paths)
    assert proxy.injected() - before == {f.label: 1 for f in faults}


@pytest.mark.parametrize(
    "rule",
    [
        Rule(SLOW_DOWN, method="PUT", path="/wal/"),
        Rule(Fault.reset("after"), method="PUT", path="/wal/"),  # stored, never confirmed
        Rule(Fault.reset("before")),  # S3 out of reach
    ],
    ids=["put-refused", "put-unconfirmed", "unreachable"],
)
def test_a_wal_push_that_cannot_be_stored_fails_and_its_retry_succeeds(
    wal_plan: dict[str, Path], proxy: FaultProxy, rule: Rule
) -> None:
    path = segment(wal_plan, 1)
    proxy.set_plan(FaultPlan(rule))
    failed = wal(wal_plan, "push", str(path), attempts=ATTEMPTS_PERSISTENT)
    assert failed.returncode != 0  # PostgreSQL keeps the file and tries again
    assert "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert f"archiving {path.name} failed" in failed.stderr
    proxy.clear()
    again = wal(wal_plan, "push", str(path), attempts=ATTEMPTS_PERSISTENT)
    assert again.returncode == 0, again.stderr
    assert fetched_back(wal_plan, path)

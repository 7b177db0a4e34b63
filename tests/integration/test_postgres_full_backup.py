"""Full base backups of a real PostgreSQL 18 into the repository, restored and started again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.repo.locks import RepositoryLock
from drplan.sources.postgres.basebackup import (
    BaseBackupError,
    Method,
    base_backup,
    latest_base,
)
from drplan.sources.postgres.binaries import Binaries, find_binaries
from drplan.sources.postgres.cluster import Preflight, connect, preflight, server_info
from testbed.plans import clean_plan
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import PgCluster, free_port, give_to_server
from tests.integration.conftest import open_repo

Run = Callable[..., Result]
Start = Callable[..., PgCluster]


def pg_plan(cluster: PgCluster, repo_dir: str, tmp_path: Path) -> dict[str, Any]:
    """A plan whose system db is the cluster, with a full and an incremental job to repo_dir."""
    plan = clean_plan()
    plan["systems"]["db"]["connection"] = cluster.dsn
    plan["systems"]["db"]["bin_dir"] = str(cluster.bin_dir)
    plan["locations"]["local"]["path"] = repo_dir
    plan["jobs"]["db-full"]["locations"] = ["local"]
    plan["jobs"]["db-incr"] = {
        "system": "db",
        "type": "incremental",
        "schedule": "*/15 * * * *",
        "retention": {"keep_within": "30d"},
        "locations": ["local"],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    return plan


def full_then_incremental(
    run: Run, cluster: PgCluster, repo_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    """1,000 readings backed up full, 234 more incrementally, then the cluster stopped (it
    is lost): the plan's path and the two snapshots' ids."""
    cluster.sql("create table readings (meter int, kwh numeric)")
    cluster.sql("insert into readings select g, g from generate_series(1, 1000) g")
    pg_plan(cluster, repo_dir, tmp_path)
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    plan = str(tmp_path / "plan.yaml")
    full = json.loads(run("--plan", plan, "backup", "db-full", "--json").out)["snapshot"]
    cluster.sql("insert into readings select g, g from generate_series(1, 234) g")
    incr = json.loads(run("--plan", plan, "backup", "db-incr", "--json").out)["snapshot"]
    cluster.stop()  # the cluster is lost
    return plan, full, incr


def verify_backup(cluster: PgCluster, directory: Path) -> None:
    verify = subprocess.run(
        [str(cluster.bin_dir / "pg_verifybackup"), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def start_copy(cluster: PgCluster, data: Path, scratch: Path) -> PgCluster:
    """Start a data directory rebuilt by hand, as the server's user, on a free port."""
    owner = os.stat(cluster.data_dir)
    for root, names, files in os.walk(data):
        for name in [*names, *files]:
            os.chown(os.path.join(root, name), owner.st_uid, owner.st_gid)
    os.chown(data, owner.st_uid, owner.st_gid)
    data.chmod(0o700)
    sockets = scratch / f"sockets-{data.name}"
    sockets.mkdir()
    os.chown(sockets, owner.st_uid, owner.st_gid)
    port = free_port()
    copy = PgCluster(data, port, cluster.password, cluster.bin_dir, cluster.run_as)
    copy.pg_ctl("start", "-w", "-t", "60", "-l", str(data / "copy.log"),
                "-o", f"-p {port} -k {sockets}")  # fmt: skip
    return copy


def take_full(cluster: PgCluster, repo_dir: str, method: Method | None = None) -> dict[str, object]:
    repo = open_repo(repo_dir)
    ready = preflight(cluster.dsn, cluster.password, str(cluster.bin_dir), "db", "full")
    with RepositoryLock(repo, exclusive=False, operation="backup"):
        snapshot = base_backup(
            repo,
            ready,
            dsn=cluster.dsn,
            password=cluster.password,
            system="db",
            job=None,
            tags=[],
            method=method,
        )
    return {"id": snapshot.id, "source": snapshot.source, "summary": vars(snapshot.summary)}


# The protocol on 15 and later; pg_basebackup's pipe is what 13 and 14 get, run here on 15.
@pytest.mark.parametrize(
    ("pg_major", "method"),
    [(18, "protocol"), (15, "protocol"), (15, "pg_basebackup")],
    indirect=["pg_major"],
)
def test_a_full_backup_restores_to_a_cluster_that_starts_with_every_row(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    pg_scratch: Path,
    pg_major: int,
    method: Method,
) -> None:
    cluster = pg_cluster()
    cluster.sql("create table readings (meter int, kwh numeric, at timestamptz default now())")
    cluster.sql(
        "insert into readings (meter, kwh) select g % 500, g / 7.0 from generate_series(1, 20000) g"
    )
    first = take_full(cluster, repo_dir, method)
    source = first["source"]
    assert isinstance(source, dict)
    assert source["kind"] == "postgres"
    assert source["type"] == "full"
    assert source["timeline"] == 1
    assert source["server_version"] // 10000 == pg_major
    assert str(source["start_lsn"]) <= str(source["stop_lsn"]) or "/" in str(source["stop_lsn"])

    # A second full of an almost unchanged cluster stores little: the repository deduplicates.
    cluster.sql("insert into readings (meter, kwh) values (1, 1.5)")
    second = take_full(cluster, repo_dir, method)
    s1, s2 = first["summary"], second["summary"]
    assert isinstance(s1, dict)
    assert isinstance(s2, dict)
    assert s2["bytes_added"] < s1["bytes_added"] / 3

    # Where the server's unprivileged user can reach (pytest's directories are root's).
    base = pg_scratch
    target = base / "data"
    restored = run("restore", str(second["id"])[:12], "--target", str(target), "--repo", repo_dir)
    assert restored.code == 0, restored.err
    verify_backup(cluster, target)
    cluster.stop()  # the original is gone; the restored copy must stand on its own
    revived = start_copy(cluster, target, base)
    try:
        assert revived.sql("select count(*) from readings") == [(20001,)]
    finally:
        revived.stop()


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("protocol", "permission denied to start WAL sender"),
        ("pg_basebackup", "pg_basebackup failed"),
    ],
)
def test_a_refused_base_backup_saves_no_snapshot(
    run: Run, repo_dir: str, pg_cluster: Start, method: Method, reason: str
) -> None:
    cluster = pg_cluster()
    cluster.sql("create role plain login password 'pw-for-test-only'")
    dsn = f"host=127.0.0.1 port={cluster.port} user=plain dbname=postgres"
    with connect(dsn, "pw-for-test-only", "db") as conn:
        # Past preflight (which would refuse this role), straight to the base backup.
        ready = Preflight(server_info(conn), find_binaries(str(cluster.bin_dir), 18))
    repo = open_repo(repo_dir)
    with (
        RepositoryLock(repo, exclusive=False, operation="backup"),
        pytest.raises(BaseBackupError) as info,
    ):
        base_backup(
            repo,
            ready,
            dsn=dsn,
            password="pw-for-test-only",
            system="db",
            job=None,
            tags=[],
            method=method,
        )
    assert reason in info.value.message
    assert "pw-for-test-only" not in info.value.message
    assert json.loads(run("snapshots", "--repo", repo_dir, "--json").out) == []
    assert run("check", "--repo", repo_dir).code == 0


def test_backup_job_runs_a_full_backup_from_the_plan(
    run: Run, repo_dir: str, pg_cluster: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = pg_cluster()
    plan = pg_plan(cluster, repo_dir, tmp_path)
    plan_file = tmp_path / "plan.yaml"
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    result = run("--plan", str(plan_file), "backup", "db-full", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["location"].startswith("local")
    listed = json.loads(run("snapshots", "--repo", repo_dir, "--json").out)
    assert [s["job"] for s in listed] == ["db-full"]
    assert cluster.password not in result.out + result.err

    incr = run("--plan", str(plan_file), "backup", "db-incr", "--json")
    assert incr.code == 0, incr.err
    repo = open_repo(repo_dir)
    snapshot = repo.find_snapshot(json.loads(incr.out)["snapshot"][:12])
    assert snapshot.source["type"] == "incremental"
    assert snapshot.source["chain"] == [report["snapshot"]]
    cluster.sql("alter system set summarize_wal = off")
    cluster.sql("select pg_reload_conf()")
    # An incremental is impossible now; the job's fallback decides. By default, a full:
    fallback = run("--plan", str(plan_file), "backup", "db-incr", "--json")
    assert fallback.code == 0, fallback.err
    assert "summarize_wal is off" in fallback.err
    assert "taking a full backup instead" in fallback.err
    assert json.loads(fallback.out)["source"]["type"] == "full"
    count = len(json.loads(run("snapshots", "--repo", repo_dir, "--json").out))
    plan["jobs"]["db-incr"]["incremental_fallback"] = "wal"  # nothing: the WAL archive serves
    plan_file.write_text(yaml.safe_dump(plan))
    skipped = run("--plan", str(plan_file), "backup", "db-incr")
    assert skipped.code == 0, skipped.err
    assert "no base backup taken (incremental_fallback: wal)" in skipped.err
    assert len(json.loads(run("snapshots", "--repo", repo_dir, "--json").out)) == count
    plan["jobs"]["db-incr"]["incremental_fallback"] = "fail"
    plan_file.write_text(yaml.safe_dump(plan))
    off = run("--plan", str(plan_file), "backup", "db-incr")
    assert off.code == 1
    assert "summarize_wal is off" in off.err
    assert off.err.count("\n") == 1

    cluster.sql("create role plain login password 'pw-for-test-only'")
    plan["systems"]["db"]["connection"] = cluster.dsn.replace("user=postgres", "user=plain")
    plan_file.write_text(yaml.safe_dump(plan))
    monkeypatch.setenv("TEST_DB_PASSWORD", "pw-for-test-only")
    refused = run("--plan", str(plan_file), "backup", "db-full")
    assert refused.code == 1
    assert "role plain may not replicate: ALTER ROLE plain REPLICATION" in refused.err
    assert refused.err.count("\n") == 1
    assert "pw-for-test-only" not in refused.err


def test_incrementals_chain_onto_the_full_and_combine_into_a_cluster_that_starts(
    run: Run, repo_dir: str, pg_cluster: Start, pg_scratch: Path
) -> None:
    cluster = pg_cluster()
    cluster.sql("create table readings (meter int, kwh numeric)")
    cluster.sql("insert into readings select g, g from generate_series(1, 50000) g")
    repo = open_repo(repo_dir)
    taken = []
    with RepositoryLock(repo, exclusive=False, operation="backup"):
        for rows in (0, 100, 10):
            if rows:
                cluster.sql(f"insert into readings select g, g from generate_series(1, {rows}) g")
            ready = preflight(
                cluster.dsn, cluster.password, str(cluster.bin_dir), "db", "incremental"
            )
            parent = latest_base(repo, "db", ready.info)
            taken.append(
                base_backup(
                    repo, ready, dsn=cluster.dsn, password=cluster.password, system="db",
                    job=None, tags=[], parent=parent,
                )
            )  # fmt: skip
    full, first, second = taken
    assert [s.source["type"] for s in taken] == ["full", "incremental", "incremental"]
    assert second.source["chain"] == [full.id, first.id]
    assert second.parent == first.id
    assert first.summary.bytes_stored < full.summary.bytes_stored / 5  # only what changed

    base = pg_scratch
    dirs = []
    for snapshot in taken:
        out = base / snapshot.short_id
        restored = run("restore", snapshot.id, "--target", str(out), "--repo", repo_dir)
        assert restored.code == 0, restored.err
        dirs.append(str(out))
    combined = base / "data"
    subprocess.run(
        [str(cluster.bin_dir / "pg_combinebackup"), *dirs, "-o", str(combined)],
        check=True,
        capture_output=True,
    )
    verify_backup(cluster, combined)
    cluster.stop()
    revived = start_copy(cluster, combined, base)
    try:
        assert revived.sql("select count(*) from readings") == [(50110,)]
    finally:
        revived.stop()


def test_restore_postgres_rebuilds_the_chain_and_starts_it(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_scratch: Path,
) -> None:
    cluster = pg_cluster()
    p, _, incr = full_then_incremental(run, cluster, repo_dir, tmp_path, monkeypatch)
    # Copying the incremental alone brings the full it builds on along.
    replica = str(tmp_path / "replica")
    copied = run("copy", "--from", repo_dir, "--to", replica, incr[:12], "--json")
    assert copied.code == 0, copied.err
    assert len(json.loads(copied.out)["copied"]) == 2

    base = pg_scratch
    target = base / "data"
    port = free_port()
    result = run(
        "--plan", p, "restore", "postgres", "db", "--target-dir", str(target),
        "--start", "--port", str(port), "--json", "--repo", replica,
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert len(report["chain"]) == 2
    assert report["started_port"] == port
    revived = PgCluster(target, port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        assert revived.sql("select count(*) from readings") == [(1234,)]
        assert revived.sql("show archive_mode") == [("off",)]  # never into the old archive
        # A new timeline: later backups of it cannot be mistaken for the old history's.
        walfile = revived.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
        assert str(walfile).startswith("00000002")
    finally:
        revived.stop()
    again = run("--plan", p, "restore", "postgres", "db", "--target-dir", str(target))
    assert again.code == 2
    assert "is not empty" in again.err
    pitr = run("--plan", p, "restore", "postgres", "db", "--target-dir", str(base / "x"),
               "--to", "2026-11-25 10:15:00+00")  # fmt: skip
    assert pitr.code == 19
    assert "is before the oldest point" in pitr.err


def test_backups_after_a_restore_never_build_on_the_history_it_left(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_scratch: Path,
) -> None:
    cluster = pg_cluster()
    cluster.sql("create table a (v text)")
    cluster.sql("insert into a select 'base' from generate_series(1, 2000)")
    plan = pg_plan(cluster, repo_dir, tmp_path)
    p = str(tmp_path / "plan.yaml")
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    first = json.loads(run("--plan", p, "backup", "db-full", "--json").out)["snapshot"]
    cluster.sql("update a set v = 'OLD-HISTORY'")
    assert run("--plan", p, "backup", "db-incr").code == 0  # the history about to be left
    cluster.stop()

    base = pg_scratch
    port = free_port()
    back = run("--plan", p, "restore", "postgres", "db", "--to", first[:12],
               "--target-dir", str(base / "data"), "--start", "--port", str(port))  # fmt: skip
    assert back.code == 0, back.err
    revived = PgCluster(base / "data", port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        revived.sql("insert into a select 'after the restore' from generate_series(1, 10)")
        plan["systems"]["db"]["connection"] = revived.dsn
        (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
        after = run("--plan", p, "backup", "db-incr", "--json")
        assert after.code == 0, after.err
        snapshot = open_repo(repo_dir).find_snapshot(json.loads(after.out)["snapshot"][:12])
        assert snapshot.source["type"] == "full"  # nothing on this timeline to build on
        assert snapshot.source["timeline"] == 2
    finally:
        revived.stop()
    again = run("--plan", p, "restore", "postgres", "db", "--target-dir", str(base / "again"),
                "--start", "--port", str(port))  # fmt: skip
    assert again.code == 0, again.err
    latest = PgCluster(base / "again", port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        rows = latest.sql("select v, count(*) from a group by v order by v")
        assert rows == [("after the restore", 10), ("base", 2000)]
    finally:
        latest.stop()


def test_force_never_empties_a_directory_holding_a_server(
    run: Run, repo_dir: str, pg_cluster: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = pg_cluster()
    pg_plan(cluster, repo_dir, tmp_path)
    p = str(tmp_path / "plan.yaml")
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    assert run("--plan", p, "backup", "db-full").code == 0
    parent = cluster.data_dir.parent  # holds the running cluster one level down
    refused = run("--plan", p, "restore", "postgres", "db", "--target-dir", str(parent), "--force")
    assert refused.code == 2
    assert "running (or crashed) PostgreSQL server" in refused.err
    assert (cluster.data_dir / "PG_VERSION").exists()


# Names that climb out of the data directory, or start at the root.
@pytest.mark.parametrize("evil", ["a/../../evil", "/etc/evil"])
def test_a_hostile_stream_is_refused_without_hanging(
    repo_dir: str, pg_cluster: Start, tmp_path: Path, evil: str
) -> None:
    cluster = pg_cluster()
    fake = tmp_path / "bin"
    fake.mkdir()
    tool = fake / "pg_basebackup"
    # A tar whose first member has an unsafe name, then megabytes more: the reader must
    # stop, and pg_basebackup (blocked on a full pipe) must not keep it waiting.
    tool.write_text(
        f"#!{sys.executable}\n"
        "import io, sys, tarfile\n"
        "out = tarfile.open(fileobj=sys.stdout.buffer, mode='w|')\n"
        f"for name, size in (({evil!r}, 10), ('big', 64 << 20)):\n"
        "    info = tarfile.TarInfo(name); info.size = size\n"
        "    out.addfile(info, io.BytesIO(bytes(size)))\n"
        "out.close()\n"
    )
    tool.chmod(0o755)
    with connect(cluster.dsn, cluster.password, "db") as conn:
        ready = Preflight(server_info(conn), Binaries(fake, "bin_dir"))
    repo = open_repo(repo_dir)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            base_backup(
                repo,
                ready,
                dsn=cluster.dsn,
                password=None,
                system="db",
                job=None,
                tags=[],
                method="pg_basebackup",
            )
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the backup hung on pg_basebackup"
    assert isinstance(outcome[0], BaseBackupError)
    assert "unsafe path" in str(outcome[0])


def test_restore_postgres_falls_back_to_the_next_location_when_the_first_is_lost(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_scratch: Path,
) -> None:
    cluster = pg_cluster()
    plan = pg_plan(cluster, repo_dir, tmp_path)
    plan["locations"]["second"] = {
        "role": "secondary",
        "kind": "local",
        "path": str(tmp_path / "second"),
    }
    plan["jobs"]["db-full"]["locations"] = ["local", "second"]
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    p = str(tmp_path / "plan.yaml")
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    assert run("--plan", p, "copy", "--from", "local", "--to", "second").code == 0
    backed = run("--plan", p, "backup", "db-full", "--json")
    assert backed.code == 0, backed.err
    shutil.rmtree(repo_dir)  # the primary location is gone
    result = run("--plan", p, "restore", "postgres", "db", "--target-dir",
                 str(pg_scratch / "data"), "--json")  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["chain"] == [json.loads(backed.out)["snapshot"]]
    assert (pg_scratch / "data" / "PG_VERSION").exists()


def test_a_backup_killed_halfway_leaves_no_snapshot_and_the_next_one_succeeds(
    run: Run, repo_dir: str, pg_cluster: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = pg_cluster()
    # Random rows: they neither compress nor deduplicate, so the backup takes a while.
    cluster.sql("create table filler as select md5(random()::text) || repeat(md5(random()::text), 6)"
                " as t from generate_series(1, 1000000)")  # fmt: skip
    pg_plan(cluster, repo_dir, tmp_path)
    env = {**os.environ, "TEST_DB_PASSWORD": cluster.password}
    argv = [
        sys.executable,
        "-m",
        "drplan",
        "--plan",
        str(tmp_path / "plan.yaml"),
        "backup",
        "db-full",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    packs = Path(repo_dir) / "data"
    wait_until(
        lambda: proc.poll() is not None or (packs.is_dir() and any(packs.rglob("*"))),
        "the base backup streaming into the repository",
    )
    assert proc.poll() is None, "the backup ended before it could be interrupted"
    proc.kill()
    proc.wait(30)

    listed = run("snapshots", "--repo", repo_dir, "--json")
    assert json.loads(listed.out) == []  # nothing half-saved is visible
    assert run("check", "--repo", repo_dir).code == 0  # leftovers are garbage, not damage
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    again = run("--plan", str(tmp_path / "plan.yaml"), "backup", "db-full", "--json")
    assert again.code == 0, again.err
    verify = run("restore", json.loads(again.out)["snapshot"][:12], "--target",
                 str(tmp_path / "restored"), "--repo", repo_dir)  # fmt: skip
    assert verify.code == 0, verify.err
    verify_backup(cluster, tmp_path / "restored")


@pytest.mark.parametrize("pg_major", [18, 15], indirect=True)
def test_a_cluster_with_a_tablespace_is_backed_up_and_restored_with_it(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    pg_scratch: Path,
    pg_major: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = pg_cluster()
    original = pg_scratch / "ts-original"
    original.mkdir()
    give_to_server(original)
    cluster.sql(f"create tablespace ts1 location '{original}'")
    cluster.sql("create table r (id int) tablespace ts1")
    cluster.sql("insert into r select generate_series(1, 1000)")
    plan = tmp_path / "plan.yaml"
    pg_plan(cluster, repo_dir, tmp_path)
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    full = run("--plan", str(plan), "backup", "db-full", "--json")
    assert full.code == 0, full.err
    (space,) = json.loads(full.out)["source"]["tablespaces"]
    assert space["location"] == str(original)
    cluster.sql("insert into r select generate_series(1001, 1500)")
    incr = run("--plan", str(plan), "backup", "db-incr", "--json")
    assert incr.code == 0, incr.err
    expected = "incremental" if pg_major >= 17 else "full"  # 15: the fallback takes a full
    assert json.loads(incr.out)["source"]["type"] == expected
    checked = run("--plan", str(plan), "check", "postgres", "db", "--repo", "local")
    assert checked.code == 0, checked.err  # stored files match the manifest, tablespace too
    cluster.stop()
    before = sorted(p.relative_to(original) for p in original.rglob("*"))

    target, port = pg_scratch / "restored", free_port()
    unknown = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir", str(target),
                  "--tablespace-map", f"{int(space['oid']) + 1}={pg_scratch / 'x'}")  # fmt: skip
    assert unknown.code == 2
    assert f"its tablespaces: {space['oid']}" in unknown.err
    busy = pg_scratch / "busy-ts"
    busy.mkdir()
    (busy / "someone-elses").write_text("x")
    refused = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir", str(target),
                  "--tablespace-map", f"{space['oid']}={busy}")  # fmt: skip
    assert refused.code == 2
    assert f"{busy} is not empty" in refused.err
    forced = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir", str(target),
                 "--tablespace-map", f"{space['oid']}={busy}", "--force")  # fmt: skip
    assert forced.code == 2  # --force never empties a tablespace directory
    assert (busy / "someone-elses").read_text() == "x"
    assert not target.exists()
    for inside in (target, target / "ts"):  # it would be emptied, moved or removed with it
        overlap = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir",
                      str(target), "--tablespace-map", f"{space['oid']}={inside}")  # fmt: skip
        assert overlap.code == 2, overlap.err
        assert f"overlaps --target-dir {target}" in overlap.err
        assert not target.exists()
    restored = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir", str(target),
                   "--to", json.loads(incr.out)["snapshot"][:12], "--start", "--port", str(port),
                   "--json")  # fmt: skip
    assert restored.code == 0, restored.err
    placed = Path(json.loads(restored.out)["tablespaces"][space["oid"]])
    assert placed == (pg_scratch / "restored.tablespaces" / space["oid"])
    revived = PgCluster(target, port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        assert revived.sql("select count(*), max(id) from r") == [(1500, 1500)]
        relation = str(revived.sql("select pg_relation_filepath('r')")[0][0])
        assert (target / relation).resolve().is_relative_to(placed)
    finally:
        revived.stop()
    assert sorted(p.relative_to(original) for p in original.rglob("*")) == before  # untouched


def test_an_incremental_after_create_tablespace_restores_from_a_full_without_it(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    pg_scratch: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = pg_cluster()
    plan = tmp_path / "plan.yaml"
    pg_plan(cluster, repo_dir, tmp_path)
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    assert run("--plan", str(plan), "backup", "db-full").code == 0  # no tablespace yet
    original = pg_scratch / "ts-new"
    original.mkdir()
    give_to_server(original)
    cluster.sql(f"create tablespace ts2 location '{original}'")
    cluster.sql("create table r tablespace ts2 as select generate_series(1, 700) id")
    incr = run("--plan", str(plan), "backup", "db-incr", "--json")
    assert incr.code == 0, incr.err
    assert json.loads(incr.out)["source"]["type"] == "incremental"
    cluster.stop()
    target, port = pg_scratch / "restored", free_port()
    restored = run("--plan", str(plan), "restore", "postgres", "db", "--target-dir", str(target),
                   "--to", json.loads(incr.out)["snapshot"][:12], "--start", "--port", str(port))  # fmt: skip
    assert restored.code == 0, restored.err
    revived = PgCluster(target, port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        assert revived.sql("select count(*) from r") == [(700,)]
    finally:
        revived.stop()

"""Continuous WAL archiving through `drplan wal push` and point-in-time recovery from it.

The acceptance scenario of the PostgreSQL issue: a stream of timestamped inserts,
a full and two incremental backups, WAL archived by drplan as archive_command; the
cluster destroyed; restored to a time T in the middle of the stream (exactly the
rows committed by T) and to the latest archived WAL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drplan.sources.postgres.wal_archive import (
    WAL_PREFIX,
    ArchivedWal,
    WalArchive,
    lsn_segment,
    segment_name,
)
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import (
    PgCluster,
    free_port,
    give_to_server,
    server_can_run_drplan,
)
from tests.integration.conftest import PASSWORD, init_repo

Run = Callable[..., Result]
Start = Callable[..., PgCluster]


@dataclass
class Archived:
    """A cluster archiving its WAL with drplan, and the plan that says so."""

    cluster: PgCluster
    plan: Path
    repo: Path
    password_file: Path


@pytest.fixture
def archived(
    pg_cluster: Start, pg_scratch: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> Archived:
    """A cluster whose archive_command is `drplan wal push`, into a local location."""
    drplan = server_can_run_drplan()
    repo = pg_scratch / "repo"
    init_repo_at(repo)
    password_file = pg_scratch / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    give_to_server(repo)
    give_to_server(password_file)
    plan_path = pg_scratch / "plan.yaml"
    command = f"{drplan} --plan {plan_path} wal push --password-file {password_file} %p"
    cluster = pg_cluster(archive_command=f"'{command}'")
    plan = clean_plan()
    plan["systems"]["db"]["connection"] = cluster.dsn
    plan["systems"]["db"]["bin_dir"] = str(cluster.bin_dir)
    plan["locations"]["local"]["path"] = str(repo)
    plan["jobs"]["db-full"]["locations"] = ["local"]
    plan["jobs"]["db-incr"] = {
        "system": "db",
        "type": "incremental",
        "schedule": "*/15 * * * *",
        "locations": ["local"],
    }
    plan["jobs"]["db-wal"] = {
        "system": "db",
        "type": "wal",
        "schedule": "continuous",
        "locations": ["local"],
    }
    plan_path.write_text(yaml.safe_dump(plan))
    plan_path.chmod(0o644)
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    monkeypatch.setenv("DRPLAN_PLAN", str(plan_path))
    return Archived(cluster, plan_path, repo, password_file)


def init_repo_at(path: Path) -> None:
    init_repo(LocalStorage(path))


@dataclass
class Stream:
    """Rows inserted one per transaction, each with when its commit had surely happened."""

    cluster: PgCluster
    committed: list[tuple[int, float]] = field(default_factory=list)  # (id, time after commit)
    stop: threading.Event = field(default_factory=threading.Event)
    failure: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            with self.cluster.connect() as conn:
                while not self.stop.is_set():
                    row = conn.execute(
                        "insert into readings (meter, kwh) values (7, random()) returning id"
                    ).fetchone()
                    assert row is not None
                    self.committed.append((int(str(row[0])), time.time()))
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure.append(exc)

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        assert not self.failure, self.failure

    def wait_for(self, more: int) -> None:
        goal = len(self.committed) + more
        wait_until(lambda: len(self.committed) >= goal or bool(self.failure), f"{more} inserts")
        assert not self.failure, self.failure


@pytest.fixture
def stream(archived: Archived) -> Iterator[Stream]:
    archived.cluster.sql(
        "create table readings (id serial primary key, meter int, kwh float8,"
        " at timestamptz default clock_timestamp())"
    )
    s = Stream(archived.cluster)
    s.thread = threading.Thread(target=s.run, daemon=True)
    s.thread.start()
    yield s
    s.stop.set()
    s.thread.join(30)


def switch_and_wait_archived(cluster: PgCluster) -> str:
    """Close the current WAL segment and wait until drplan has archived it."""
    row = cluster.sql("select pg_walfile_name(pg_switch_wal())")
    segment = str(row[0][0])

    def archived() -> bool:
        done = cluster.sql("select last_archived_wal, last_failed_wal from pg_stat_archiver")
        return bool(done[0][0]) and str(done[0][0]) >= segment

    def explain() -> str:
        spool = cluster.data_dir / "pg_wal" / "drplan-archive"
        return "\n".join(
            [
                (cluster.data_dir / "server.log").read_text()[-3000:],
                str(sorted(p.name for p in spool.iterdir())),
                (spool / "agent.log").read_text()[-3000:],
            ]
        )

    wait_until(archived, f"{segment} to be archived", explain=explain)
    return segment


def restored_ids(port: int, password: str) -> list[int]:
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, password=password, autocommit=True) as conn:
        return [int(r[0]) for r in conn.execute("select id from readings order by id")]


def stop_restored(cluster: PgCluster, data: Path) -> None:
    subprocess.run(
        [*cluster.run_as, str(cluster.bin_dir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast"],
        capture_output=True,
        check=False,
        timeout=120,
    )


def amcheck(cluster: PgCluster, port: int) -> None:
    proc = subprocess.run(
        [
            str(cluster.bin_dir / "pg_amcheck"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--username=postgres",
            "--install-missing",
            "--heapallindexed",
            "--all",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PGPASSWORD": cluster.password, "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def restore(run: Run, archived: Archived, target: Path, to: str, port: int) -> dict[str, Any]:
    result = run(
        "restore", "postgres", "db", "--to", to, "--target-dir", str(target),
        "--start", "--port", str(port), "--password-file", str(archived.password_file), "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


@pytest.mark.parametrize("pg_major", [18, 15], indirect=True)
def test_restore_to_a_time_holds_exactly_the_rows_committed_by_then_and_latest_holds_all(
    run: Run, archived: Archived, stream: Stream, pg_scratch: Path, pg_major: int
) -> None:
    """On 15, the incremental jobs fall back to fulls (incremental_fallback: full)."""
    incremental = pg_major >= 17
    cluster = archived.cluster
    stream.wait_for(20)
    full = run("backup", "db-full", "--json")
    assert full.code == 0, full.err
    stream.wait_for(30)
    first = run("backup", "db-incr", "--json")
    assert first.code == 0, first.err
    stream.wait_for(30)
    # T: right after one commit returned; the next insert starts after it, so exactly the
    # rows up to this one committed at or before T.
    chosen_id, chosen_at = stream.committed[-1]
    stream.wait_for(30)
    second = run("backup", "db-incr", "--json")
    assert second.code == 0, second.err
    assert json.loads(second.out)["source"]["type"] == ("incremental" if incremental else "full")
    stream.wait_for(30)
    stream.finish()
    newest_id = stream.committed[-1][0]
    switch_and_wait_archived(cluster)
    status = run("wal", "status", "--json")
    assert status.code == 0, status.err
    state = json.loads(status.out)["locations"][0]
    assert state["gaps"] == []
    assert state["files"] >= 3
    checked = run("check", "postgres", "db", "--read-data", "--json")
    assert checked.code == 0, checked.err
    whole = run("check", "--repo", "local", "--read-data")  # WAL objects are no damage to it
    assert whole.code == 0, whole.err
    report = json.loads(checked.out)["locations"][0]
    assert len(report["base_backups"]) == 3
    assert report["wal_read"] == report["wal_files"] >= 3
    assert report["window"]["end"] >= datetime.fromtimestamp(chosen_at, UTC).isoformat()

    cluster.stop()
    shutil.rmtree(cluster.data_dir)  # the disaster

    target_time = datetime.fromtimestamp(chosen_at, UTC).isoformat()
    port = free_port()
    at_t = restore(run, archived, pg_scratch / "at-t", target_time, port)
    try:
        # The full and the incremental taken before T (on 15: the full taken instead).
        assert len(at_t["chain"]) == (2 if incremental else 1)
        ids = restored_ids(port, cluster.password)
        assert ids == list(range(1, int(chosen_id) + 1))
        assert at_t["reached"]["last_transaction"] is not None
        reached = datetime.fromisoformat(at_t["reached"]["last_transaction"])
        assert reached <= datetime.fromtimestamp(chosen_at, UTC)
        amcheck(cluster, port)
    finally:
        stop_restored(cluster, pg_scratch / "at-t")

    port = free_port()
    latest = restore(run, archived, pg_scratch / "latest", "latest", port)
    try:
        assert len(latest["chain"]) == (3 if incremental else 1)  # full and both incrementals
        ids = restored_ids(port, cluster.password)
        assert ids == list(range(1, newest_id + 1))
    finally:
        stop_restored(cluster, pg_scratch / "latest")


def segments_with_times(cluster: PgCluster, count: int) -> list[tuple[str, float]]:
    """Archive ``count`` segments, each holding a committed row; (segment, a time after that
    commit and before the segment was archived)."""
    out = []
    for _ in range(count):
        cluster.sql("insert into readings (meter, kwh) values (1, 1)")
        committed = time.time()
        out.append((switch_and_wait_archived(cluster), committed))
    return out


@pytest.mark.parametrize("pg_major", [18, 15], indirect=True)
def test_restore_refuses_targets_outside_the_window_and_gaps_and_stops_at_damage(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    cluster = archived.cluster
    cluster.sql("create table readings (id serial, meter int, kwh float8)")
    before_backup = time.time()
    assert run("backup", "db-full").code == 0
    segments = segments_with_times(cluster, 4)
    target = pg_scratch / "restored"

    def restore_to(to: str, *extra: str) -> Result:
        return run(
            "restore", "postgres", "db", "--to", to, "--target-dir", str(target),
            "--password-file", str(archived.password_file), *extra,
        )  # fmt: skip

    too_early = restore_to(datetime.fromtimestamp(before_backup - 60, UTC).isoformat())
    assert too_early.code == 19
    assert "before the oldest point" in too_early.err
    assert "the window is" in too_early.err
    too_late = restore_to(datetime.fromtimestamp(time.time() + 3600, UTC).isoformat())
    assert too_late.code == 19
    assert "no WAL that recent is archived" in too_late.err
    assert not target.exists()  # refused before anything was written

    storage = LocalStorage(archived.repo)
    damaged_name = segments[1][0]
    victim = next(i.name for i in storage.list(WAL_PREFIX) if f"/{damaged_name}." in i.name)
    data = bytearray((archived.repo / victim).read_bytes())
    data[-40] ^= 0x01
    (archived.repo / victim).write_bytes(bytes(data))
    checked = run("check", "postgres", "db", "--read-data")
    assert checked.code == 13
    assert damaged_name in checked.err
    cluster.stop()
    damaged = restore_to("latest", "--start", "--port", str(free_port()))
    assert damaged.code == 1, damaged.err  # PostgreSQL stopped instead of ending recovery early
    assert f"fetching {damaged_name} failed" in damaged.err
    assert "damaged" in damaged.err
    stop_restored(cluster, target)

    (archived.repo / victim).unlink()  # now a gap in the middle of the chain
    status = run("wal", "status", "--json")
    assert status.code == 1
    assert json.loads(status.out)["locations"][0]["gaps"][0]["first"] == damaged_name
    checked = run("check", "postgres", "db")
    assert checked.code == 13
    assert f"WAL {damaged_name} to {damaged_name} is missing" in checked.err
    gap = restore_to("latest", "--force")
    assert gap.code == 19
    assert f"WAL {damaged_name} to {damaged_name} is missing" in gap.err
    before_gap = restore_to(datetime.fromtimestamp(segments[0][1], UTC).isoformat(), "--force")
    assert before_gap.code == 0, before_gap.err  # the part of the window before the gap serves


def test_a_restore_that_fills_the_disk_fails_cleanly(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    assert run("backup", "db-full").code == 0
    small = pg_scratch / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        result = run(
            "restore", "postgres", "db", "--to", "latest", "--target-dir", str(small / "data"),
            "--password-file", str(archived.password_file),
        )  # fmt: skip
        assert result.code != 0
        assert "No space left on device" in result.err
        assert len(result.err.strip().splitlines()) == 1
        assert "Traceback" not in result.err
        assert not (small / "data").exists()  # nothing half-restored is left to start
        assert list(small.iterdir()) == []  # nor staging
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_restore_killed_midway_leaves_nothing_that_passes_for_a_data_directory(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    archived.cluster.sql("create table filler as select g, repeat('x', 500) from"
                         " generate_series(1, 200000) g")  # fmt: skip
    assert run("backup", "db-full").code == 0
    target = pg_scratch / "data"
    marked = target.with_name("data.drplan-incomplete")
    argv = [str(Path(sys.executable).with_name("drplan")), "restore", "postgres", "db",
            "--to", "latest", "--target-dir", str(target),
            "--password-file", str(archived.password_file)]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: (marked / "PG_VERSION").exists() or proc.poll() is not None,
               "the restore to be writing")  # fmt: skip
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()  # the cluster takes its name only once verified
    assert marked.exists()  # and what was written says what it is
    again = run("restore", "postgres", "db", "--to", "latest", "--target-dir", str(target),
                "--password-file", str(archived.password_file))  # fmt: skip
    assert again.code == 0, again.err
    assert (target / "PG_VERSION").exists()
    assert not marked.exists()


@pytest.mark.parametrize("pg_major", [18, 15], indirect=True)
def test_forget_removes_only_wal_no_kept_base_backup_can_use_and_explains_it(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    cluster = archived.cluster
    cluster.sql("create table readings (id serial, meter int, kwh float8)")
    assert run("backup", "db-full").code == 0
    old = segments_with_times(cluster, 3)
    second = run("backup", "db-full", "--json")
    assert second.code == 0, second.err
    kept_start = json.loads(second.out)["source"]["start_lsn"]
    segments_with_times(cluster, 2)
    before = {w.file for w in _archived(archived)}

    dry = run("forget", "--repo", "local", "--keep-last", "1", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    wal = json.loads(dry.out)["wal"][0]
    assert wal["system"] == "db"
    assert wal["keep_from"] == segment_of(kept_start)
    assert "oldest kept base backup" in wal["reason"]
    assert set(wal["remove"]) >= {name for name, _ in old[:2]}
    assert all(name < wal["keep_from"] for name in wal["remove"])
    assert {w.file for w in _archived(archived)} == before  # a dry run deletes nothing

    text = run("forget", "--repo", "local", "--keep-last", "1", "--dry-run")
    assert f"WAL of db: kept from {wal['keep_from']}" in text.out
    assert "would remove" in text.out

    done = run("forget", "--repo", "local", "--keep-last", "1")
    assert done.code == 0, done.err
    after = {w.file for w in _archived(archived)}
    assert after == before - set(wal["remove"])
    assert all(name >= wal["keep_from"] for name in after if len(name) == 24)
    checked = run("check", "postgres", "db", "--read-data")
    assert checked.code == 0, checked.err  # what is left still recovers without a gap
    cluster.stop()
    port = free_port()
    latest = restore(run, archived, pg_scratch / "after-forget", "latest", port)
    try:
        assert latest["chain"] == [json.loads(second.out)["snapshot"]]
        assert restored_ids(port, cluster.password)[-1] == 5
    finally:
        stop_restored(cluster, pg_scratch / "after-forget")


def _archived(archived: Archived) -> list[ArchivedWal]:
    from drplan.repo.repository import Repository  # noqa: PLC0415

    repo = Repository.open(LocalStorage(archived.repo), PASSWORD.encode())
    return WalArchive(repo, "db").files()


def segment_of(lsn: str) -> str:
    return segment_name(1, lsn_segment(lsn))


@pytest.mark.parametrize("pg_major", [18, 15], indirect=True)
def test_wal_stream_ships_segments_and_the_one_being_written_so_latest_loses_seconds(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    cluster = archived.cluster
    cluster.sql("alter system set archive_command = '/bin/true'")  # streaming alone
    cluster.sql("select pg_reload_conf()")
    cluster.sql("create table readings (id serial, meter int, kwh float8)")
    received = pg_scratch / "stream"
    received.mkdir()
    give_to_server(received)
    program = server_can_run_drplan()
    log = pg_scratch / "stream.log"
    # The stream ships the partial segment as often as the plan says (no --partial-every).
    plan = yaml.safe_load(archived.plan.read_text())
    plan["jobs"]["db-wal"] |= {"stream": True, "partial_every": "0.5s"}
    archived.plan.write_text(yaml.safe_dump(plan))

    def explain() -> str:
        return f"{sorted(p.name for p in received.iterdir())}\n{log.read_text()}"

    with open(log, "w") as err_file:
        stream = subprocess.Popen(
            [*cluster.run_as, program, "--plan", str(archived.plan), "wal", "stream",
             "--password-file", str(archived.password_file), "--dir", str(received)],
            stderr=err_file,
        )  # fmt: skip
    try:  # streaming starts where the slot was made: receiving, before writing
        wait_until(lambda: any(received.glob("*.partial")), "pg_receivewal", explain=explain)
        assert run("backup", "db-full").code == 0
        cluster.sql("insert into readings (meter, kwh) select 1, 1 from generate_series(1, 10)")
        segment = str(cluster.sql("select pg_walfile_name(pg_switch_wal())")[0][0])
        wait_until(
            lambda: segment in {w.file for w in _archived(archived)},
            f"{segment} shipped",
            explain=explain,
        )
        for meter in (2, 3):  # each write shipped within seconds: the plan's 0.5s, not 10s
            before = time.time()
            cluster.sql(f"insert into readings (meter, kwh) select {meter}, 2"
                        " from generate_series(1, 5)")  # fmt: skip

            def shipped(since: float = before) -> bool:
                """The partial segment as received since the write began, shipped after its
                last change (its content is checked by the restore below). Not "shipped
                0.2 s after the write": the stream ships that fast, and the partial it ships
                then does not change again."""
                partials = [p.stat().st_mtime for p in received.glob("*.partial")]
                local = max(partials, default=0.0)  # none for a moment at a segment's end
                return local >= since - 0.01 and any(  # (a file system clock is coarser)
                    w.file.endswith(".partial") and w.mtime >= local for w in _archived(archived)
                )

            wait_until(
                shipped,
                "the segment being written to be shipped",
                timeout=4.0,
                explain=explain,
            )  # fmt: skip
        assert stream.poll() is None
    finally:
        stream.terminate()
        stream.wait(timeout=60)
    err = log.read_text()
    assert stream.returncode == 0, err
    assert "stopped;" in err
    assert cluster.password not in err
    status = run("wal", "status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["locations"][0]["newest"].endswith(".partial")

    cluster.stop()
    port = free_port()
    restore(run, archived, pg_scratch / "streamed", "latest", port)
    try:  # the last ten rows were in no complete segment: only the .partial had them
        assert restored_ids(port, cluster.password) == list(range(1, 21))
    finally:
        stop_restored(cluster, pg_scratch / "streamed")


def test_wal_status_names_a_server_that_archives_nothing(run: Run, archived: Archived) -> None:
    cluster = archived.cluster
    cluster.sql("alter system set archive_mode = off")
    cluster.restart()
    assert cluster.sql("show archive_mode") == [("off",)]
    status = run("wal", "status")
    assert status.code == 1
    assert "WAL of db is not being archived: archive_mode is off" in status.err
    assert "drplan-wal-push" in status.err
    assert "no drplan wal stream connected" in status.out


def test_wal_status_names_a_server_that_is_down_and_still_shows_the_archive(
    run: Run, archived: Archived
) -> None:
    cluster = archived.cluster
    assert run("backup", "db-full").code == 0
    cluster.sql("create table readings (id serial, meter int, kwh float8)")  # WAL to switch
    switch_and_wait_archived(cluster)
    cluster.stop()
    status = run("wal", "status")
    assert status.code == 1
    assert "local: newest 0000000" in status.out  # the archive reads without the server
    assert "no gaps" in status.out
    assert "server of db: cannot be reached (system db: cannot connect to PostgreSQL" in status.out
    assert status.err.startswith("drplan: system db: cannot connect to PostgreSQL (")
    assert "whether its WAL is being archived cannot be told" in status.err
    assert len(status.err.strip().splitlines()) == 1
    as_json = run("wal", "status", "--json")
    assert as_json.code == 1
    report = json.loads(as_json.out)
    assert report["server"]["error"].startswith("system db: cannot connect to PostgreSQL")
    assert report["locations"][0]["newest"] is not None


def test_a_mistyped_recovery_target_is_refused_before_anything_is_written(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    assert run("backup", "db-full").code == 0
    target = pg_scratch / "restored"
    typo = run(
        "restore", "postgres", "db", "--to", "yesterday-ish", "--target-dir", str(target),
        "--password-file", str(archived.password_file),
    )  # fmt: skip
    assert typo.code == 2, typo.err
    assert not target.exists()
    assert "'yesterday-ish' is not a recovery target" in typo.err
    for form in ("latest", "'2026-11-25 10:15:00+00'", "0/3000148", "name:NAME", "snapshot id"):
        assert form in typo.err
    assert "--to name:yesterday-ish" in typo.err
    assert len(typo.err.strip().splitlines()) == 1


def test_a_restore_point_is_looked_up_in_the_archive_before_anything_is_written(
    run: Run, archived: Archived, pg_scratch: Path
) -> None:
    cluster = archived.cluster
    cluster.sql("create table readings (id serial, meter int, kwh float8)")
    assert run("backup", "db-full").code == 0
    cluster.sql("insert into readings (meter, kwh) values (1, 1)")
    cluster.sql("select pg_create_restore_point('exists')")
    cluster.sql("insert into readings (meter, kwh) values (2, 2)")
    switch_and_wait_archived(cluster)
    cluster.stop()
    target = pg_scratch / "restored"

    nope = run(
        "restore", "postgres", "db", "--to", "name:nope", "--target-dir", str(target),
        "--password-file", str(archived.password_file),
    )  # fmt: skip
    assert not target.exists()
    assert nope.code == 19, nope.err
    assert "restore point 'nope' is not in the WAL archived in" in nope.err
    assert "searched" in nope.err
    assert "segment(s)" in nope.err

    port = free_port()
    found = restore(run, archived, target, "name:exists", port)
    try:
        assert found["to"] == "exists"
        assert restored_ids(port, cluster.password) == [1]  # stopped at the restore point
    finally:
        stop_restored(cluster, target)

    # Without pg_waldump the archive cannot tell: said plainly, and the restore goes on.
    tools = pg_scratch / "bin"
    tools.mkdir()
    for tool in cluster.bin_dir.iterdir():
        if tool.name != "pg_waldump":
            (tools / tool.name).symlink_to(tool)
    plan = yaml.safe_load(archived.plan.read_text())
    plan["systems"]["db"]["bin_dir"] = str(tools)
    (pg_scratch / "no-waldump.yaml").write_text(yaml.safe_dump(plan))
    unchecked = run(
        "--plan", str(pg_scratch / "no-waldump.yaml"), "restore", "postgres", "db",
        "--to", "name:nope", "--target-dir", str(pg_scratch / "unchecked"),
        "--password-file", str(archived.password_file), "--json",
    )  # fmt: skip
    assert unchecked.code == 0, unchecked.err
    assert "warning: cannot check that restore point 'nope' is in the WAL of" in unchecked.err
    assert "pg_waldump is not in" in unchecked.err

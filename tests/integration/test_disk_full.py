"""A full disk, on a small tmpfs, at every place drplan writes: a backup's location at each
stage of its write order (packs, index, snapshot), a restore's target, the catalog (the
daemon's and a drill's), the drills' evidence, and the WAL: archive_command's spool,
the location it writes to, the prefetch spool of a recovery, and the directory
`drplan wal stream` receives into. Each time: one clear line and its exit code (or a
logged error the daemon retries), nothing reported done that is not, everything left
consistent, and once there is room again the same command completes and nothing is lost.

Tests run as root (here and in CI): each mounts its own tmpfs and unmounts it after."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import SUCCEEDED, Catalog
from drplan.drills.evidence import write_evidence
from drplan.drills.results import DrillResult
from drplan.errors import DrplanError
from drplan.repo.repository import Repository
from drplan.sources.postgres.wal_agent import NamedArchive, run_fetch_agent
from drplan.sources.postgres.wal_archive import WAL_LEVEL, WalArchive, segment_name
from drplan.sources.postgres.wal_spool import FETCH_SPOOL
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import free_port
from tests.integration.conftest import PASSWORD, init_repo
from tests.integration.test_postgres_pitr import (  # the fixture, by name
    Archived,
    _archived,
    archived,  # noqa: F401
)
from tests.integration.test_serve import files_plan, prepared

Run = Callable[..., Result]
PAGE = 4096
SEGMENT = 16 << 20


@contextlib.contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(fs: Path, leave: int = 0) -> Path:
    """A file taking all of ``fs``'s room but ``leave`` bytes (whole pages); its path."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        room = free(fs) - leave
        while room > 0:
            try:
                room -= f.write(b"\0" * min(room, 1 << 20))
            except OSError:
                break  # full: nothing can be left
    return filler


def one_line(result: Result) -> str:
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    return result.err


def objects(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}


def test_a_backup_filling_its_location_at_any_stage_leaves_it_intact(
    run: Run, tmp_path: Path, password: str
) -> None:
    """Room for half the data, for the data but not the index, for the index but not the
    snapshot, page by page: each failure is one line naming what could not be written,
    checks clean, leaves no temporary file and no snapshot; with one page more the
    backup is saved."""
    source = tmp_path / "src"
    source.mkdir()
    with small_fs(tmp_path / "small", "8m") as fs:
        repo = fs / "repo"
        init_repo(LocalStorage(repo))

        def backup() -> Result:  # 200 KiB of new data: one chunk, so the same size each time
            (source / "data.bin").write_bytes(os.urandom(200 * 1024))
            return run("backup", "files", str(source), "--repo", str(repo))

        before = free(fs)
        assert backup().code == 0
        needed = (before - free(fs)) // PAGE + 1  # and a page for the lock, while it runs
        stages, snapshots = set(), 1
        for room in (needed // 2, needed - 3, needed - 2, needed - 1, needed):
            there = objects(repo)
            filler = fill(fs, room * PAGE)
            result = backup()
            filler.unlink()
            listed = json.loads(run("snapshots", "--repo", str(repo), "--json").out)
            check = run("check", "--read-data", "--repo", str(repo))
            assert check.code == 0, (room, check.out + check.err)
            assert not list(repo.rglob(".tmp-*")), room
            if result.code == 0:
                snapshots += 1
                assert len(listed) == snapshots
                stages.add("saved")
                continue
            assert result.code == 1, (room, result.err)
            line = one_line(result)
            assert "no space left on device while writing " in line
            assert len(listed) == snapshots  # no snapshot of a backup that failed
            stage = line.split("while writing ", 1)[1].split("/", 1)[0]
            added = {name.split("/")[0] for name in objects(repo) - there}
            assert "snapshots" not in added
            if stage == "snapshots":  # written in order: the index before the snapshot
                assert "index" in added, added
            else:
                assert "index" not in added, (stage, added)
            stages.add(stage)
    assert stages == {"data", "index", "snapshots", "saved"}


def test_a_restore_onto_a_full_disk_stops_in_one_line_and_a_rerun_completes_it(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, same_tree: Callable[[Path, Path], None]
) -> None:
    for i in range(3):
        (source / f"large-{i}.bin").write_bytes(os.urandom(2 << 20))
    saved = run("backup", "files", str(source), "--repo", repo_dir, "--json")
    assert saved.code == 0, saved.err
    with small_fs(tmp_path / "small", "16m") as fs:
        filler = fill(fs, 5 << 20)  # room for about half of the 11 MiB restored
        target = fs / "restored"
        restore = ("restore", "latest", "--target", str(target), "--special-files")
        stopped = run(*restore, "--repo", repo_dir)
        assert stopped.code == 1, stopped.err
        line = one_line(stopped)
        assert f"drplan: restore into {target} stopped: its file system is full" in line
        assert "partly written (kept, to resume): " in line
        assert "run the same restore again" in line
        restored = target / str(source).lstrip("/")
        # Nothing looks complete that is not: a file with the size and time of the
        # original holds its bytes (a rerun skips such files without reading them).
        for original in source.rglob("*"):
            copy = restored / original.relative_to(source)
            if original.is_file() and not original.is_symlink() and copy.is_file():
                st, cp = original.stat(), copy.stat()
                if (st.st_size, st.st_mtime_ns) == (cp.st_size, cp.st_mtime_ns):
                    assert copy.read_bytes() == original.read_bytes(), copy
        named = line.split("to resume): ", 1)[1].split(";", 1)[0].split(", ")
        for partly in named:
            if " and " not in partly:
                copy = restored / Path(partly).relative_to(source)
                assert copy.exists(), partly  # kept, to resume
        filler.unlink()
        again = run(*restore, "--repo", repo_dir)
        assert again.code == 0, again.err
        assert "already complete" in again.out
        same_tree(source, restored)


def test_a_daemon_whose_catalog_disk_fills_logs_it_and_records_once_there_is_room(
    tmp_path: Path, source: Path, password: str
) -> None:
    plan = files_plan(tmp_path, source, "2s")
    with small_fs(tmp_path / "small", "2m") as fs:
        url = sqlite_url(str(fs / "catalog.db"))
        drplan, env = prepared(plan, url)
        log = (tmp_path / "serve.log").open("wb")
        daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{free_port()}"],
                                  env=env, stdout=log, stderr=log)  # fmt: skip

        def explain() -> str:
            return (tmp_path / "serve.log").read_text()

        def succeeded() -> list[Any]:
            catalog = Catalog.open(url)
            try:
                return [r for r in catalog.runs("web", limit=1000) if r.status == SUCCEEDED]
            finally:
                catalog.close()

        try:
            wait_until(lambda: len(succeeded()) >= 2, "runs", 60, explain)
            recorded = {r.id for r in succeeded()}
            filler = fill(fs)
            full = f"catalog {fs / 'catalog.db'} cannot be written: its file system is full"
            wait_until(lambda: full in explain(), "the full disk logged", 60, explain)
            assert daemon.poll() is None, explain()
            assert f"free space in {fs}" in explain()
            with sqlite3.connect(fs / "catalog.db") as db:  # as it is, under the daemon
                assert db.execute("pragma quick_check").fetchall() == [("ok",)]
            db.close()
            filler.unlink()
            wait_until(lambda: len(succeeded()) >= len(recorded) + 2, "runs once there is room",
                       60, explain)  # fmt: skip
            assert recorded <= {r.id for r in succeeded()}  # no history lost
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            log.close()
        assert code == 0, explain()
        assert "Traceback" not in explain()


def test_a_drill_whose_catalog_disk_is_full_is_exit_20_and_runs_once_there_is_room(
    run: Run, tmp_path: Path, source: Path, password: str
) -> None:
    plan = files_plan(tmp_path, source, "1h")
    raw = yaml.safe_load(plan.read_text())
    raw["drills"] = {"web-restore": {"kind": "service", "systems": ["web"]}}
    plan.write_text(yaml.safe_dump(raw))
    drplan, env = prepared(plan, "")
    assert subprocess.run([*drplan, "backup", "web"], env=env, check=False).returncode == 0
    with small_fs(tmp_path / "small", "1m") as fs:
        url = sqlite_url(str(fs / "catalog.db"))
        Catalog.open(url).close()
        filler = fill(fs)
        drill = ("--plan", str(plan), "drill", "run", "web-restore", "--catalog", url)
        refused = run(*drill)
        assert refused.code == 20, refused.err
        line = one_line(refused)
        assert f"catalog {fs / 'catalog.db'} cannot be written: its file system is full" in line
        drills = tmp_path / "xdg-state" / "drplan" / "drills"
        assert not drills.exists() or [p.name for p in drills.iterdir()] == ["evidence"]
        filler.unlink()
        done = run(*drill, "--json")
        assert done.code == 0, done.err
        listed = run("--plan", str(plan), "drill", "list", "--catalog", url, "--json")
        (row,) = json.loads(listed.out)
        assert row["last_run"]["passed"] is True


def test_drill_evidence_on_a_full_disk_is_one_line_and_leaves_no_half_file(
    tmp_path: Path,
) -> None:
    result = DrillResult(
        "web-restore", "service", None, "a1b2c3", datetime(2026, 11, 26, tzinfo=UTC)
    )
    with small_fs(tmp_path / "small", "1m") as fs:
        evidence = fs / "evidence"
        evidence.mkdir()
        filler = fill(fs)
        with pytest.raises(DrplanError) as info:
            write_evidence(result, evidence)
        assert "its evidence could not be written: No space left on device" in info.value.message
        assert "\n" not in info.value.message
        assert f"free space in {evidence}" in (info.value.hint or "")
        assert list(evidence.iterdir()) == []  # no temporary file taking the room
        filler.unlink()
        path, digest = write_evidence(result, evidence)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def wal_plan(tmp_path: Path, repo: Path) -> Path:
    """A plan whose system `db` archives its WAL into the local location at ``repo``."""
    plan = clean_plan()
    plan["locations"] = {"local": {"role": "primary", "kind": "local", "path": str(repo)}}
    plan["data_classes"]["database"]["locations"] = ["local"]
    plan["systems"].pop("web")
    plan["jobs"] = {"db-wal": {**plan["jobs"]["db-wal"], "locations": ["local"]}}
    for key in ("scenarios", "runbooks", "drills"):
        plan.pop(key, None)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_archive_command_on_a_full_disk_archives_nothing_and_everything_once_there_is_room(
    tmp_path: Path, password: str
) -> None:
    """`drplan wal push`, as PostgreSQL runs it, with its spool (in pg_wal) on a full file
    system, then with its location on one: not archived (exit 1, one line saying what),
    and archived whole once there is room."""
    env = {**os.environ, "TEST_DB_PASSWORD": "unused", "DRPLAN_STATE_DIR": str(tmp_path / "s")}
    with small_fs(tmp_path / "pg_wal", "20m") as pg_wal, small_fs(tmp_path / "disk", "20m") as disk:
        repo = disk / "repo"
        init_repo(LocalStorage(repo))
        plan = wal_plan(tmp_path, repo)
        archive = WalArchive(Repository.open(LocalStorage(repo), PASSWORD.encode()), "db")
        push = [sys.executable, "-m", "drplan", "--plan", str(plan), "wal", "push"]
        segments = {segment_name(1, n): os.urandom(SEGMENT // 2) for n in (1, 2)}
        for name, data in segments.items():
            (pg_wal / name).write_bytes(data)
        first, second = segments
        try:
            filler = fill(pg_wal)  # the spool cannot be written
            pushed = subprocess.run([*push, str(pg_wal / first)], env=env, capture_output=True,
                                    text=True, timeout=300, check=False)  # fmt: skip
            assert pushed.returncode == 1, pushed.stderr
            assert pushed.stderr.count("\n") == 1, pushed.stderr
            assert pushed.stderr.startswith(f"drplan: archiving {first} failed: No space left")
            assert "not archived" in pushed.stderr
            assert archive.fetch(first) is None
            filler.unlink()
            disk_filler = fill(disk)  # the location cannot be written
            pushed = subprocess.run([*push, str(pg_wal / second)], env=env, capture_output=True,
                                    text=True, timeout=300, check=False)  # fmt: skip
            assert pushed.returncode == 1, pushed.stderr
            assert pushed.stderr.count("\n") == 1, pushed.stderr
            assert f"archiving {second} failed: location local:" in pushed.stderr
            assert "no space left on device" in pushed.stderr
            assert archive.fetch(second) is None
            disk_filler.unlink()
            for name, data in segments.items():  # PostgreSQL tries again
                pushed = subprocess.run([*push, str(pg_wal / name)], env=env,
                                        capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
                assert pushed.returncode == 0, pushed.stderr
                assert archive.fetch(name) == data
            check = subprocess.run([sys.executable, "-m", "drplan", "check", "--read-data",
                                    "--repo", str(repo)], env=env, capture_output=True, text=True,
                                   check=False)  # fmt: skip
            assert check.returncode == 0, check.stdout + check.stderr
        finally:
            stop_agent(pg_wal / "drplan-archive")


def stop_agent(spool: Path) -> None:
    """The WAL agent a push started (it outlives the push): asked to stop, by its pid."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((spool / "agent.pid").read_text().strip())
        (spool / "agent.stop").write_text("")
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the WAL agent to stop", 30)


def test_a_full_prefetch_spool_answers_with_the_error_and_keeps_no_half_segment(
    tmp_path: Path, password: str
) -> None:
    """Recovery asks for segments faster than it replays them, or its pg_wal is small:
    the agent says the spool is full (restore_command then stops recovery) instead of
    leaving PostgreSQL waiting with half a segment taking the room; once recovery has
    taken the segment before it, the next one is fetched whole."""
    repo = init_repo(LocalStorage(tmp_path / "repo"))
    archive = WalArchive(repo, "db")
    segments = {segment_name(1, n): os.urandom(SEGMENT) for n in (1, 2)}
    for name, data in segments.items():
        archive.push(name, data, WAL_LEVEL)
    first, second = segments
    with small_fs(tmp_path / "pg_wal", "24m") as pg_wal:
        spool = pg_wal / FETCH_SPOOL
        spool.mkdir()
        stop = threading.Event()
        agent = threading.Thread(
            target=run_fetch_agent,
            args=([NamedArchive("local", archive)], str(spool)),
            kwargs={"idle_exit": 120.0, "should_stop": stop.is_set, "prefetch": 0},
        )
        agent.start()

        def ask(name: str) -> None:  # as restore_command does (wal_spool._fetch)
            (spool / f"{name}.req").write_bytes(b"")

        def answered(name: str) -> bool:
            return (spool / name).exists() or (spool / f"{name}.error").exists()

        try:
            ask(first)
            wait_until(lambda: answered(first), "the first segment", 60)
            assert (spool / first).read_bytes() == segments[first]
            ask(second)  # 16 MiB more do not fit beside it
            wait_until(lambda: answered(second), "an answer for the second", 60)
            error = (spool / f"{second}.error").read_text()
            assert "No space left on device" in error
            assert not list(spool.glob("*.tmp"))  # no half segment kept
            (spool / first).unlink()  # replayed by recovery: room again
            (spool / f"{second}.error").unlink()  # restore_command took the answer
            ask(second)
            wait_until(lambda: answered(second), "the second segment", 60)
            assert (spool / second).read_bytes() == segments[second]
        finally:
            stop.set()
            agent.join(60)


def test_the_wal_stream_on_a_full_disk_recovers_once_there_is_room_and_loses_nothing(
    archived: Archived,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """pg_receivewal fills the stream's directory as it opens a segment (it writes the
    16 MiB of a new segment first): it stops, and the stream restarts it. Once there is
    room, streaming goes on from where the slot held the server, and every segment in
    between reaches the archive: no gap."""
    cluster = archived.cluster
    cluster.sql("alter system set archive_command = '/bin/true'")  # the stream alone
    cluster.sql("select pg_reload_conf()")
    cluster.sql("create table t (i int)")

    def switch() -> str:
        cluster.sql("insert into t select generate_series(1, 1000)")
        return str(cluster.sql("select pg_walfile_name(pg_switch_wal())")[0][0])

    def shipped() -> set[str]:
        return {w.file for w in _archived(archived)}

    # Room for what pg_receivewal receives again after a restart: from where the slot
    # holds the server, which is behind what was shipped (shipping is not confirmed).
    with small_fs(tmp_path / "stream", "80m") as received:
        log = tmp_path / "stream.log"

        def explain() -> str:
            return f"{sorted(p.name for p in received.iterdir())}\n{log.read_text()}"

        with open(log, "w") as err:
            stream = subprocess.Popen(
                [sys.executable, "-m", "drplan", "--plan", str(archived.plan), "wal", "stream",
                 "--password-file", str(archived.password_file), "--dir", str(received)],
                stderr=err,
            )  # fmt: skip
        try:
            wait_until(lambda: any(received.glob("*.partial")), "pg_receivewal", explain=explain)
            first = switch()
            wait_until(lambda: first in shipped(), f"{first} shipped", explain=explain)
            filler = fill(received, SEGMENT // 2)  # the next segment's 16 MiB do not fit
            later = [switch() for _ in range(2)]
            wait_until(lambda: "No space left on device" in log.read_text(),
                       "the full disk told", explain=explain)  # fmt: skip
            assert stream.poll() is None, explain()
            filler.unlink()
            later.append(switch())
            wait_until(lambda: set(later) <= shipped(), "every segment shipped", explain=explain)
            assert stream.poll() is None
        finally:
            stream.terminate()
            stream.wait(timeout=60)
    assert stream.returncode == 0, log.read_text()
    names = sorted(w for w in shipped() if not w.endswith(".partial") and len(w) == 24)
    numbers = [int(w[8:16], 16) * 0x100 + int(w[16:], 16) for w in names]
    start = numbers.index(int(first[8:16], 16) * 0x100 + int(first[16:], 16))
    assert numbers[start:] == list(range(numbers[start], numbers[-1] + 1)), names  # no gap

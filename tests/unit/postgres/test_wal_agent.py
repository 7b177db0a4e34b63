"""The fetch agent and the WAL archive's edge cases, without a server: a failed read-ahead
must not decide a later request, and partial segments are replaced, never conflicts."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from drplan.recovery.postgres import RECOVERY_SETTINGS, _promote_on_start, become_production
from drplan.sources.postgres import wal_spool
from drplan.sources.postgres.wal_agent import (
    CATCH_UP_BACKLOG,
    NamedArchive,
    run_fetch_agent,
    run_push_agent,
)
from drplan.sources.postgres.wal_archive import CATCH_UP_LEVEL, WAL_LEVEL, WalArchive
from drplan.storage import TransientError
from drplan.storage.local import LocalStorage
from tests.integration.conftest import init_repo


class Flaky(WalArchive):
    """Fails the first read of one file, as a location does on a passing network error."""

    def __init__(self, archive: WalArchive, victim: str) -> None:
        super().__init__(archive.repo, archive.system)
        self.victim = victim
        self.failed = False

    def fetch(self, file: str) -> bytes | None:
        if file == self.victim and not self.failed:
            self.failed = True
            raise TransientError(f"reading {file}: connection reset")
        return super().fetch(file)


class Recording(WalArchive):
    """Remembers the compression level each file was pushed at."""

    def __init__(self, archive: WalArchive) -> None:
        super().__init__(archive.repo, archive.system)
        self.levels: dict[str, int] = {}

    def push(self, file: str, data: bytes, level: int = WAL_LEVEL) -> bool:
        self.levels[file] = level
        return super().push(file, data, level)


def names(n: int) -> list[str]:
    return [f"0000000100000000000000{i:02X}" for i in range(1, n + 1)]


@pytest.fixture
def archive(tmp_path: Path) -> WalArchive:
    wal = WalArchive(init_repo(LocalStorage(tmp_path / "repo")), "db")
    for name in names(4):
        wal.push(name, name.encode() * 100)
    return wal


def test_a_failed_read_ahead_is_fetched_again_when_recovery_asks_for_it(
    archive: WalArchive, tmp_path: Path
) -> None:
    pg_wal = tmp_path / "restored" / "pg_wal"
    spool = pg_wal / wal_spool.FETCH_SPOOL
    spool.mkdir(parents=True)
    flaky = Flaky(archive, names(4)[2])  # segment 3 fails once, while read ahead
    lock = wal_spool.agent_lock(str(spool))  # this test's agent is the spool's agent
    assert lock is not None
    agent = threading.Thread(
        target=run_fetch_agent,
        args=([NamedArchive("local", flaky)], str(spool)),
        kwargs={"idle_exit": 1.0},
    )
    agent.start()
    try:
        for name in names(4):  # PostgreSQL asks for each in turn
            call = wal_spool.WalCall("fetch", [], [], [name, str(pg_wal / "RECOVERYXLOG")])
            assert wal_spool.run(call) == 0, name
            assert (pg_wal / "RECOVERYXLOG").read_bytes() == name.encode() * 100
        assert flaky.failed  # the read-ahead did fail, and it decided nothing
        missing = wal_spool.WalCall("fetch", [], [], [names(6)[5], str(pg_wal / "X")])
        assert wal_spool.run(missing) == wal_spool.NOT_ARCHIVED
    finally:
        agent.join(30)
        os.close(lock)
    assert not any(p.suffix in (".error", ".missing") for p in spool.iterdir())


def test_partial_segments_replace_each_other_and_serve_when_the_segment_is_missing(
    archive: WalArchive,
) -> None:
    segment = "000000010000000000000009"
    assert archive.push(f"{segment}.partial", b"first part" * 10)
    assert archive.push(f"{segment}.partial", b"first part, and more" * 10)  # no conflict
    assert len(archive.stored_as(f"{segment}.partial")) == 1
    assert archive.fetch(segment) == b"first part, and more" * 10
    archive.push(segment, b"the whole segment" * 10)
    assert archive.fetch(segment) == b"the whole segment" * 10  # complete wins


def test_a_restore_clears_recovery_settings_an_earlier_restore_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "postgresql.auto.conf").write_text(
        "work_mem = '64MB'\n"
        "restore_command = 'false'\n"
        "recovery_target = 'immediate'\n"
        "Recovery_Target_Time = '2026-01-01 00:00:00+00'\n"
        "archive_mode = on\n"
        "primary_conninfo 'host=production'\n"
    )
    (data / "standby.signal").touch()  # a backup of a standby carries it
    _promote_on_start(data, "\nrestore_command = 'drplan wal fetch %f %p'\n")
    conf = (data / "postgresql.auto.conf").read_text()
    assert "work_mem = '64MB'" in conf
    assert "recovery_target = 'immediate'" not in conf
    assert "Recovery_Target_Time" not in conf
    assert conf.count("restore_command") == 1
    active = [line for line in conf.splitlines() if not line.startswith("#")]
    assert "archive_mode = 'off'" in active
    assert "archive_mode = on" not in active
    become_production(data)  # the copy takes production's place: it archives as it did
    active = [line for line in (data / "postgresql.auto.conf").read_text().splitlines()
              if not line.startswith("#")]  # fmt: skip
    assert "archive_mode = on" in active
    assert "archive_mode = 'off'" not in active
    assert "restore_command = 'drplan wal fetch %f %p'" in active  # it still recovers
    assert (data / "recovery.signal").exists()
    assert not (data / "standby.signal").exists()  # it would make the copy follow production
    assert "primary_conninfo" not in conf
    assert "recovery_target = 'immediate'" in RECOVERY_SETTINGS  # the default still says it


@pytest.mark.parametrize("waiting", [2, CATCH_UP_BACKLOG + 4])
def test_pushing_trades_compression_for_speed_only_while_behind(
    tmp_path: Path, waiting: int
) -> None:
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    spool = pg_wal / wal_spool.PUSH_SPOOL
    spool.mkdir()
    for name in names(waiting):
        (pg_wal / name).write_bytes(name.encode() * 4096)
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    archive = Recording(WalArchive(init_repo(LocalStorage(tmp_path / "repo")), "db"))
    run_push_agent([NamedArchive("local", archive)], str(spool), idle_exit=0.2)
    assert sorted(p.name for p in spool.iterdir()) == [f"{n}.ok" for n in names(waiting)]
    expected = CATCH_UP_LEVEL if waiting > CATCH_UP_BACKLOG else WAL_LEVEL
    assert set(archive.levels.values()) == {expected}
    for name in names(waiting):  # what was stored either way is the file, whole
        assert archive.fetch(name) == name.encode() * 4096


def test_a_fetch_agent_whose_recovery_is_gone_exits_at_once(
    archive: WalArchive, tmp_path: Path
) -> None:
    """A drill torn down (or killed) removes the scratch directory with its spool: the agent
    it left must not linger until its idle timeout, or after its test run."""
    spool = tmp_path / "restored" / "pg_wal" / wal_spool.FETCH_SPOOL
    spool.mkdir(parents=True)
    agent = threading.Thread(
        target=run_fetch_agent,
        args=([NamedArchive("local", archive)], str(spool)),
        kwargs={"idle_exit": 600.0},
    )
    agent.start()
    shutil.rmtree(tmp_path / "restored")
    agent.join(10)
    assert not agent.is_alive()

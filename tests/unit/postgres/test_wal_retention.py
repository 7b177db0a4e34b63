"""Which archived WAL `forget` may delete: only what no kept base backup, and no point
of the plan's point-in-time window, can use."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drplan.plan.model import Plan
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.sources.postgres.wal_retention import plan_wal_retention, wal_window
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.integration.conftest import init_repo

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def base(start_segment: int, days_ago: int) -> Snapshot:
    stop = NOW - timedelta(days=days_ago)
    return Snapshot(
        time=stop - timedelta(minutes=5),
        tree=b"\0" * 32,
        paths=["postgres:db"],
        host="h",
        user="u",
        system="db",
        source={
            "kind": "postgres",
            "start_lsn": f"0/{start_segment:X}000028",
            "stop_lsn": f"0/{start_segment:X}000100",
            "timeline": 1,
            "stop_time": stop.isoformat(),
        },
        id=f"{start_segment:08x}" * 8,
    )


def archive(tmp_path: Path) -> Repository:
    repo = init_repo(LocalStorage(tmp_path / "repo"))
    wal = WalArchive(repo, "db")
    for n in range(1, 11):
        wal.push(f"0000000100000000000000{n:02X}", bytes([n]) * 64)
    wal.push("00000002.history", b"1\t0/3000000\tno recovery target specified\n")
    return repo


def removed(repo: Repository, kept: list[Snapshot], window: timedelta | None) -> list[str]:
    return [w.file for w in plan_wal_retention(repo, "db", kept, NOW, window).doomed]


def test_wal_older_than_the_oldest_kept_base_backup_goes_and_history_stays(
    tmp_path: Path,
) -> None:
    repo = archive(tmp_path)
    kept = [base(4, 40), base(8, 1)]
    assert removed(repo, kept, None) == [f"0000000100000000000000{n:02X}" for n in range(1, 4)]
    decision = plan_wal_retention(repo, "db", kept, NOW)
    assert decision.keep_from == "000000010000000000000004"
    assert "oldest kept base backup" in decision.reason


def test_a_point_in_time_window_keeps_wal_from_the_newest_base_backup_before_it(
    tmp_path: Path,
) -> None:
    repo = archive(tmp_path)
    kept = [base(2, 40), base(5, 20), base(8, 1)]
    # Every point in the last 30 days needs the backup of 40 days ago and all WAL after it.
    assert removed(repo, kept, timedelta(days=30)) == ["000000010000000000000001"]
    # In the last 10 days, the one of 20 days ago serves: older WAL goes, and the older
    # backup stays restorable to its own end (it carries its WAL).
    decision = plan_wal_retention(repo, "db", kept, NOW, timedelta(days=10))
    assert decision.keep_from == "000000010000000000000005"
    assert "10-day point-in-time window" in decision.reason
    assert [w.file for w in decision.doomed][-1] == "000000010000000000000004"


def test_without_a_kept_base_backup_here_all_wal_stays(tmp_path: Path) -> None:
    repo = archive(tmp_path)
    decision = plan_wal_retention(repo, "db", [], NOW, timedelta(days=1))
    assert decision.doomed == []
    assert decision.keep_from is None
    assert "all of its WAL stays" in decision.reason


def test_the_window_comes_from_the_wal_job_else_the_data_classes() -> None:
    raw = clean_plan()
    raw["jobs"]["db-wal"]["retention"] = {"keep_within": "30d"}
    raw["data_classes"]["database"]["retention"]["wal"] = "14d"
    assert wal_window(Plan.model_validate(copy.deepcopy(raw)), "db") == timedelta(days=30)
    raw["jobs"]["db-wal"].pop("retention")
    assert wal_window(Plan.model_validate(copy.deepcopy(raw)), "db") == timedelta(days=14)
    raw["data_classes"]["database"]["retention"].pop("wal")
    assert wal_window(Plan.model_validate(raw), "db") is None

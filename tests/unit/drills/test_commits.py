"""The commits pg_waldump lists, and which archived segments hold a span of WAL."""

from __future__ import annotations

from datetime import UTC, datetime

from drplan.drills.commits import Commit, parse_commits, segments_for
from drplan.sources.postgres.wal_archive import ArchivedWal

SIZE = 16 * 1024 * 1024
WALDUMP = """\
rmgr: Transaction len (rec/tot):     34/    34, tx:        947, lsn: 0/0300AB40, prev 0/0300AB00, desc: COMMIT 2026-12-07 22:49:32.869142 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        949, lsn: 0/0300AC10, prev 0/0300ABD0, desc: ABORT 2026-12-07 22:49:32.870001 UTC
rmgr: Transaction len (rec/tot):    405/   405, tx:        948, lsn: 0/0300ACA8, prev 0/0300AC60, desc: COMMIT 2026-12-07 22:49:32.872464 UTC; inval msgs: catcache 11 catcache 10; sync
rmgr: Transaction len (rec/tot):     66/    66, tx:          0, lsn: 0/0300AE40, prev 0/0300ADF0, desc: COMMIT_PREPARED 950: 2026-12-07 22:49:33 UTC
"""  # pg_waldump's lines as it prints them


def test_commits_are_read_with_their_transaction_position_and_microsecond() -> None:
    assert parse_commits(WALDUMP) == [
        Commit(947, "0/0300AB40", datetime(2026, 12, 7, 22, 49, 32, 869142, UTC)),
        Commit(948, "0/0300ACA8", datetime(2026, 12, 7, 22, 49, 32, 872464, UTC)),
        Commit(0, "0/0300AE40", datetime(2026, 12, 7, 22, 49, 33, 0, UTC)),
    ]  # the abort changed nothing: it is not a step


def wal(*names: str) -> list[ArchivedWal]:
    return [ArchivedWal(n, f"wal/{n}", 1, 0.0) for n in names]


def test_the_segments_of_a_span_come_from_the_newest_timeline_holding_them_all() -> None:
    files = wal(
        "000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
        "000000020000000000000003", "000000020000000000000004.partial",
    )  # fmt: skip
    assert segments_for(files, 3, 4, SIZE) == [
        "000000020000000000000003", "000000020000000000000004",
    ]  # fmt: skip
    assert segments_for(files, 2, 3, SIZE) == [
        "000000010000000000000002", "000000010000000000000003",
    ]  # fmt: skip
    assert segments_for(files, 4, 5, SIZE) is None  # 5 was never archived
    assert (
        segments_for(wal("000000010000000000000002", "000000010000000000000004"), 2, 4, SIZE)
        is None
    )

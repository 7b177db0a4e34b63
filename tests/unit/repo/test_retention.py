"""Retention decisions: which snapshots each rule keeps, and the reasons shown to the user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drplan.repo.retention import Policy, apply_policy, keep_chains
from drplan.repo.snapshot import Snapshot

START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


def hourly_snapshots(count: int) -> list[Snapshot]:
    return [
        Snapshot(
            time=START + timedelta(hours=i),
            tree=b"",
            paths=["/x"],
            host="h",
            user="u",
            id=f"{i:064x}",
        )
        for i in range(count)
    ]


def kept(policy: Policy, snapshots: list[Snapshot]) -> list[int]:
    return sorted(int(d.snapshot.id, 16) for d in apply_policy(snapshots, policy) if d.keep)


def test_empty_policy_keeps_everything() -> None:
    assert kept(Policy(), hourly_snapshots(5)) == [0, 1, 2, 3, 4]


def test_keep_last_and_hourly() -> None:
    snaps = hourly_snapshots(48)
    assert kept(Policy(last=3), snaps) == [45, 46, 47]
    assert kept(Policy(hourly=5), snaps) == [43, 44, 45, 46, 47]


def test_daily_keeps_the_newest_of_each_day() -> None:
    snaps = hourly_snapshots(72)  # 3 days, 00:30 to 23:30
    assert kept(Policy(daily=2), snaps) == [47, 71]
    assert kept(Policy(daily=10), snaps) == [23, 47, 71]


def test_within_counts_from_the_newest_snapshot() -> None:
    snaps = hourly_snapshots(10)
    assert kept(Policy(within=timedelta(hours=3)), snaps) == [6, 7, 8, 9]


def test_tags_and_reasons() -> None:
    snaps = hourly_snapshots(4)
    snaps[0].tags = ["golden"]
    decisions = {
        int(d.snapshot.id, 16): d
        for d in apply_policy(snaps, Policy(last=1, tags=frozenset({"golden"})))
    }
    assert decisions[0].reasons == ["tag golden"]
    assert decisions[3].reasons == ["last 1"]
    assert not decisions[1].keep
    assert decisions[1].reasons == []


def test_weekly_monthly_yearly_buckets() -> None:
    snaps = [
        Snapshot(
            time=START + timedelta(days=d), tree=b"", paths=[], host="h", user="u", id=f"{d:064x}"
        )
        for d in range(0, 800, 1)
    ]
    assert len(kept(Policy(weekly=4), snaps)) == 4
    assert kept(Policy(monthly=2), snaps)[-1] == 799
    assert len(kept(Policy(yearly=5), snaps)) == 3  # 2026, 2027, 2028


def test_a_kept_incremental_keeps_the_backups_it_builds_on() -> None:
    snaps = hourly_snapshots(6)
    full, incr1, incr2 = snaps[0], snaps[3], snaps[5]
    incr1.source = {"kind": "postgres", "type": "incremental", "chain": [full.id]}
    incr2.source = {"kind": "postgres", "type": "incremental", "chain": [full.id, incr1.id]}
    decisions = apply_policy(snaps, Policy(last=1))
    keep_chains(decisions)
    by_id = {d.snapshot.id: d for d in decisions}
    assert {int(i, 16) for i, d in by_id.items() if d.keep} == {0, 3, 5}
    assert by_id[full.id].reasons == [f"needed by {incr2.short_id}"]

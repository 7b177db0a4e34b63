"""RPO exposure as the plan's owners read it: per data class and location, from the
newest snapshot of a job covering the class or the end of archived WAL, against the
class's RPO with the plan's at-risk fraction; a location that cannot be read is
unknown, not fine; a class never backed up somewhere it must be is breached."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drplan.errors import RepositoryNotFoundError
from drplan.observability.rpo import (
    AT_RISK,
    BREACHED,
    OK,
    UNKNOWN,
    LocationFacts,
    assess,
    gather,
    overall,
    windows,
)
from drplan.plan.model import Plan
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.integration.conftest import PASSWORD, init_repo

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def plan(**changes: Any) -> Plan:
    raw = copy.deepcopy(clean_plan())
    raw.update(changes)
    return Plan.model_validate(raw)


def snapshot(job: str, system: str, minutes_ago: float, **source: Any) -> Snapshot:
    when = NOW - timedelta(minutes=minutes_ago)
    return Snapshot(time=when, tree=b"\0" * 32, paths=["x"], host="h", user="u", job=job,
                    system=system, source=source, id=os.urandom(32).hex())  # fmt: skip


def by_key(exposures: list[Any]) -> dict[tuple[str, str], str]:
    return {(e.data_class, e.location): e.status for e in exposures}


def test_exposure_is_judged_against_each_classes_rpo_in_each_location() -> None:
    p = plan()  # database 15m (db-full, db-wal); configuration 4h (web); both in local, cloud
    facts = [
        LocationFacts("local", snapshots=[
            snapshot("db-full", "db", 20, kind="postgres",
                     stop_time=(NOW - timedelta(minutes=11)).isoformat()),
            snapshot("web", "web", 60),
        ]),
        LocationFacts("cloud", snapshots=[snapshot("web", "web", 230)]),
    ]  # fmt: skip
    exposures = assess(p, facts, NOW)
    assert by_key(exposures) == {
        ("database", "local"): OK,  # 11 min of 15: a base backup counts from its end
        ("database", "cloud"): BREACHED,  # never backed up where the class must be
        ("configuration", "local"): OK,
        ("configuration", "cloud"): AT_RISK,  # 230 min of 240: past 80%
    }
    local_db = next(e for e in exposures if (e.data_class, e.location) == ("database", "local"))
    assert local_db.exposure(NOW) == timedelta(minutes=11)
    assert "db-full" in str(local_db.source)
    best = overall(exposures)
    assert best["database"].location == "local"
    assert best["configuration"].location == "local"


def test_the_at_risk_fraction_comes_from_the_plan() -> None:
    raw = copy.deepcopy(clean_plan())
    raw["objectives"]["at_risk"] = 0.5
    p = Plan.model_validate(raw)
    facts = [LocationFacts("local", snapshots=[snapshot("web", "web", 150)]),
             LocationFacts("cloud", snapshots=[snapshot("web", "web", 100)])]  # fmt: skip
    statuses = by_key(assess(p, facts, NOW))
    assert statuses[("configuration", "local")] == AT_RISK  # 150 of 240 > 50%
    assert statuses[("configuration", "cloud")] == OK


def test_an_unreadable_location_is_unknown_and_not_counted_as_recoverable() -> None:
    facts = [LocationFacts("local", snapshots=[snapshot("web", "web", 10)]),
             LocationFacts("cloud", error="s3://dr-test: access denied")]  # fmt: skip
    exposures = assess(plan(), facts, NOW)
    cloud = [e for e in exposures if e.location == "cloud"]
    assert {e.status for e in cloud} == {UNKNOWN}
    assert all(e.error == "s3://dr-test: access denied" for e in cloud)
    assert overall(exposures)["configuration"].location == "local"


def test_archived_wal_and_base_backups_in_real_locations(tmp_path: Path) -> None:
    """gather reads real repositories: WAL archived after a base backup carries the
    database's newest point to the archive's end; a location with no repository is
    reported, not raised."""
    local = init_repo(LocalStorage(tmp_path / "local"))
    base = snapshot("db-full", "db", 60, kind="postgres", stop_lsn="0/1000100", timeline=1,
                    start_lsn="0/1000028", stop_time=(NOW - timedelta(minutes=59)).isoformat())  # fmt: skip
    local.save_snapshot(base)
    wal = WalArchive(local, "db")
    for n, minutes_ago in ((1, 58), (2, 30), (3, 4)):  # segments after the base backup
        name = f"0000000100000000000000{n:02X}"
        wal.push(name, bytes([n]) * 64)
        (obj,) = wal.stored_as(name)
        stamp = (NOW - timedelta(minutes=minutes_ago)).timestamp()
        os.utime(tmp_path / "local" / obj, (stamp, stamp))

    def open_location(name: str) -> Repository:
        if name == "cloud":
            raise RepositoryNotFoundError("no repository at s3://dr-test")
        return Repository.open(LocalStorage(tmp_path / "local"), PASSWORD.encode())

    facts = gather(plan(), open_location)
    statuses = by_key(assess(plan(), facts, NOW))
    assert statuses[("database", "local")] == OK  # WAL up to 4 minutes ago
    assert statuses[("database", "cloud")] == UNKNOWN
    start, end = windows(facts)["db"]
    assert start == NOW - timedelta(minutes=59)
    assert end == NOW - timedelta(minutes=4)

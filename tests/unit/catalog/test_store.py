"""The catalog on SQLite: runs recorded and read back in UTC, orphans of a dead daemon
closed, leases held by one holder until they expire, and a catalog from a newer drplan
refused rather than misread."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from drplan.catalog.paths import sqlite_url
from drplan.catalog.schema import MIGRATIONS
from drplan.catalog.store import ABANDONED, FAILED, RUNNING, SUCCEEDED, Catalog, RunStart
from drplan.errors import CatalogError

T0 = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.open(sqlite_url(str(tmp_path / "catalog.db")))


def test_runs_are_recorded_and_read_back_newest_first_in_utc(catalog: Catalog) -> None:
    berlin = timezone(timedelta(hours=1))
    first = catalog.start_run("db-full", "host-a", T0.astimezone(berlin), slot=T0)
    catalog.finish_run(first, SUCCEEDED, T0 + timedelta(minutes=3), snapshot="ab12",
                       location="primary", bytes_added=1000, bytes_stored=400)  # fmt: skip
    second = catalog.start_run(
        "db-full", "host-a", T0 + timedelta(days=1), slot=T0 + timedelta(days=1)
    )
    catalog.finish_run(
        second, FAILED, T0 + timedelta(days=1, minutes=1), error="location primary: no space left"
    )
    catalog.start_run("db-wal", "host-a", T0, slot=None)  # fmt: skip
    runs = catalog.runs("db-full")
    assert [r.id for r in runs] == [second, first]
    assert runs[1].started_at == T0
    assert runs[1].started_at.tzinfo is not None
    assert (runs[1].status, runs[1].snapshot, runs[1].bytes_added) == (SUCCEEDED, "ab12", 1000)
    assert runs[0].error == "location primary: no space left"
    assert catalog.last_slot("db-full") == T0 + timedelta(days=1)
    assert catalog.last_slot("db-wal") is None  # asked-for runs have no slot
    assert len(catalog.runs()) == 3


def test_runs_a_dead_daemon_left_running_are_closed_once_its_lease_expires(
    tmp_path: Path,
) -> None:
    url = sqlite_url(str(tmp_path / "catalog.db"))
    before = Catalog.open(url)
    orphan = before.start_run("db-full", "host-a:1", T0, slot=T0)
    assert before.acquire("job:db-full", "host-a:1", T0, T0 + timedelta(seconds=30))
    watched = before.start_run("web", "host-b:2", T0, slot=T0)
    assert before.acquire("job:web", "host-b:2", T0, T0 + timedelta(hours=2))
    before.close()
    after = Catalog.open(url)  # a daemon starts; host-a's died, host-b's lives on
    assert after.abandon_orphans(T0 + timedelta(seconds=10)) == 0  # host-a's lease holds
    assert after.abandon_orphans(T0 + timedelta(minutes=1)) == 1
    status = {r.id: r.status for r in after.runs()}
    assert status == {orphan: ABANDONED, watched: RUNNING}


def test_a_lease_has_one_holder_until_it_expires(catalog: Catalog) -> None:
    until = T0 + timedelta(seconds=30)
    assert catalog.acquire("job:db-full", "a", T0, until)
    assert not catalog.acquire("job:db-full", "b", T0 + timedelta(seconds=10), until)
    assert catalog.acquire("job:db-full", "a", T0 + timedelta(seconds=10), until)  # renewal
    # a dies: once its lease has expired, b takes over
    assert catalog.acquire(
        "job:db-full", "b", until + timedelta(seconds=1), until + timedelta(minutes=1)
    )
    assert not catalog.acquire("job:db-full", "a", until + timedelta(seconds=2), until)
    catalog.release("job:db-full", "b")
    assert catalog.acquire(
        "job:db-full", "a", until + timedelta(seconds=3), until + timedelta(minutes=1)
    )


def test_a_lease_of_a_process_of_this_host_that_is_gone_is_taken_at_once(
    catalog: Catalog,
) -> None:
    """kill -9 leaves a lease no one releases: on its own host, its holder is seen gone."""
    host, gone, far = socket.gethostname(), _pid_of_ended(), T0 + timedelta(hours=1)
    assert catalog.acquire("drill:db", f"{host}:{gone}:run-1", T0, far)
    assert catalog.acquire(
        "drill:db", f"{host}:{os.getpid()}:run-2", T0 + timedelta(seconds=1), far
    )
    # Another host's processes cannot be seen from here: its lease waits for its expiry.
    assert catalog.acquire("job:web", f"elsewhere:{gone}", T0, far)
    assert not catalog.acquire("job:web", f"{host}:{os.getpid()}", T0 + timedelta(seconds=1), far)


def _pid_of_ended() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_two_catalog_handles_on_one_file_share_leases(tmp_path: Path) -> None:
    url = sqlite_url(str(tmp_path / "catalog.db"))
    one, two = Catalog.open(url), Catalog.open(url)
    assert one.acquire("job:x", "one", T0, T0 + timedelta(minutes=1))
    assert not two.acquire("job:x", "two", T0, T0 + timedelta(minutes=1))


def test_a_catalog_from_a_newer_drplan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    Catalog.open(sqlite_url(str(path))).close()
    with sqlite3.connect(path) as db:
        db.execute("update catalog_meta set value = ? where key = 'schema_version'",
                   (str(len(MIGRATIONS) + 1),))  # fmt: skip
    with pytest.raises(CatalogError, match="schema version") as info:
        Catalog.open(sqlite_url(str(path)))
    assert info.value.exit_code == 20


def test_reopening_a_catalog_keeps_its_history(tmp_path: Path) -> None:
    url = sqlite_url(str(tmp_path / "catalog.db"))
    first = Catalog.open(url)
    run = first.start_run("db-full", "h", T0, slot=T0)
    first.close()
    assert [r.id for r in Catalog.open(url).runs()] == [run]  # migrations not re-applied


def test_an_unreachable_catalog_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    unreachable = tmp_path / "not-a-dir" / "catalog.db"
    with pytest.raises(CatalogError, match="cannot be used") as info:
        Catalog.open(sqlite_url(str(unreachable)))
    assert "reachable" in (info.value.hint or "")


def test_a_catalog_in_a_state_directory_not_made_yet_is_created(tmp_path: Path) -> None:
    fresh = tmp_path / "state" / "drplan" / "catalog.db"
    Catalog.open(sqlite_url(str(fresh))).close()
    assert fresh.exists()
    assert (fresh.parent.stat().st_mode & 0o777) == 0o700


def test_a_run_that_ends_after_a_failover_is_recorded_whole_and_touches_no_other(
    tmp_path: Path,
) -> None:
    """A daemon started a run in one catalog; the run ends once the daemon's catalog is
    another database (a failover, a new server), which never saw it start and gave its
    id to a run of another job: that run is left alone, the ended one recorded whole."""
    before = Catalog.open(sqlite_url(str(tmp_path / "before.db")))
    run_id = before.start_run("web", "host:1", T0, slot=T0)
    before.close()
    after = Catalog.open(sqlite_url(str(tmp_path / "after.db")))
    other = after.start_run("db-full", "host:1", T0 + timedelta(minutes=1), slot=T0)
    assert other == run_id
    after.finish_run(run_id, SUCCEEDED, T0 + timedelta(minutes=2), snapshot="ab12",
                     location="primary", start=RunStart("web", "host:1", T0, T0, 1))  # fmt: skip
    runs = {r.job: r for r in after.runs()}
    assert runs["db-full"].status == RUNNING
    assert runs["db-full"].snapshot is None
    web = runs["web"]
    assert (web.status, web.snapshot, web.location) == (SUCCEEDED, "ab12", "primary")
    assert (web.started_at, web.slot, web.ended_at) == (T0, T0, T0 + timedelta(minutes=2))
    assert after.last_slot("web") == T0  # the daemon does not run that slot again
    # In the catalog that saw it start, the run is found by what it is and updated.
    again = Catalog.open(sqlite_url(str(tmp_path / "before.db")))
    again.finish_run(run_id, SUCCEEDED, T0 + timedelta(minutes=2),
                     start=RunStart("web", "host:1", T0, T0, 1))  # fmt: skip
    assert [(r.id, r.status) for r in again.runs()] == [(run_id, SUCCEEDED)]


def test_an_incident_timeline_is_appended_once_and_never_forked(catalog: Catalog) -> None:
    def row(seq: int, digest: str) -> dict[str, object]:
        return {"seq": seq, "at": T0 + timedelta(seconds=seq), "kind": "note",
                "body": f"body {seq}", "hash": digest}  # fmt: skip

    assert catalog.add_incident_events("INC-AAAA", [row(1, "a"), row(2, "b")]) == 2
    assert catalog.add_incident_events("INC-AAAA", [row(1, "a"), row(2, "b"), row(3, "c")]) == 1
    assert catalog.incident_events("INC-AAAA") == [("body 1", "a"), ("body 2", "b"),
                                                   ("body 3", "c")]  # fmt: skip
    with pytest.raises(CatalogError, match="holds another entry 3 of incident INC-AAAA"):
        catalog.add_incident_events("INC-AAAA", [row(3, "elsewhere"), row(4, "d")])
    assert len(catalog.incident_events("INC-AAAA")) == 3  # nothing of the fork was added
    catalog.add_incident_events("INC-BBBB", [row(1, "z")])
    assert catalog.incident_ids() == ["INC-AAAA", "INC-BBBB"]

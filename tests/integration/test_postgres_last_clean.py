"""`restore postgres SYSTEM --to last-clean` on a real PostgreSQL 18: a live insert
stream with WAL archived by drplan, an attacker's session at T (a rogue admin row, a
superuser role, readings rewritten), legitimate writes before and after; the search
finds the attacker's own commit and restores every legitimate commit before it. Also:
checks failing everywhere (nothing restored, exit 19), passing everywhere (inside an
incident, as a runbook action: the newest point before the disaster moment), and a
system without security checks (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from drplan import clock
from testbed.plans import local_only
from tests.conftest import Result
from tests.fixtures.postgres import PgCluster, free_port, give_to_server
from tests.integration.test_incident_postgres import approved_restore
from tests.integration.test_postgres_pitr import (  # noqa: F401 - fixtures
    Archived,
    Stream,
    archived,
    restored_ids,
    stop_restored,
    stream,
    switch_and_wait_archived,
)

Run = Callable[..., Result]
CHANGE_WINDOW = "2021-01-01 00:00:00+00"  # the last change window: no admin made since
SECURITY_CHECKS = [
    {"name": "no admin created after the change window",
     "query": "select count(*) = 0 from app_users where role = 'admin'"
              f" and created_at > '{CHANGE_WINDOW}'"},
    {"name": "no superuser but postgres",
     "query": "select count(*) = 0 from pg_roles where rolsuper and rolname <> 'postgres'"},
]  # fmt: skip


@dataclass
class Attack:
    xid: int  # the attacker's transaction
    began: datetime  # before its commit (the server's clock, inside it)
    ended: datetime  # after its commit returned
    legit_before: int  # the newest reading committed before it


def app_users(cluster: PgCluster) -> None:
    """The application's accounts, its one admin made before the change window."""
    cluster.sql(
        "create table app_users (id serial primary key, name text, role text,"
        " created_at timestamptz not null default clock_timestamp())"
    )
    cluster.sql("insert into app_users (name, role, created_at) values"
                " ('ops', 'admin', '2020-06-01+00'), ('ann', 'user', '2020-06-02+00')")  # fmt: skip


def backed_up(run: Run, where: Archived, inserts: Stream, breach: bool = False) -> None:
    """The accounts, some inserts (and with ``breach`` the attack), then the base backup
    the window starts at."""
    app_users(where.cluster)
    inserts.wait_for(20)
    if breach:
        attack(where.cluster)
    assert run("backup", "db-full").code == 0


def archived_to_here(where: Archived, inserts: Stream) -> None:
    """The stream stopped and every segment of its WAL archived."""
    inserts.finish()
    switch_and_wait_archived(where.cluster)


def attack(cluster: PgCluster) -> Attack:
    """The attacker's session, one transaction. Its lock holds the legitimate stream back
    while it runs, so which readings committed before it is known exactly: the newest it
    sees. The stream's next insert commits right after it, within the same second."""
    with cluster.connect() as conn, conn.transaction():
        conn.execute("lock table readings in exclusive mode")
        legit = conn.execute("select max(id) from readings").fetchone()
        conn.execute("insert into app_users (name, role) values ('mallory', 'admin')")
        conn.execute("create role mallory superuser login")
        conn.execute("update readings set kwh = -1 where id <= 10")
        row = conn.execute("select pg_current_xact_id()::text, clock_timestamp()").fetchone()
    ended = datetime.now(UTC)
    assert legit is not None
    assert row is not None
    return Attack(int(str(row[0])), row[1], ended, int(str(legit[0])))  # type: ignore[arg-type]


def plan_with(where: Archived, checks: list[dict[str, str]] | None, **extra: Any) -> None:
    plan = local_only(yaml.safe_load(where.plan.read_text()))
    if checks is not None:
        plan["systems"]["db"]["security_checks"] = checks
    plan.update(extra)
    where.plan.write_text(yaml.safe_dump(plan))


def scratch_drill(where: Archived) -> dict[str, Any]:
    """A database drill of db, its scratch targets where the server's user can work."""
    scratch = where.repo.parent / "drills"
    scratch.mkdir()
    give_to_server(scratch)
    return {"db-check": {
        "kind": "database", "systems": ["db"], "from_location": "local",
        "scratch_dir": str(scratch),
        "validations": {"amcheck": False, "checksums": False, "sql": [
            {"name": "no reading missing", "query": "select count(*) = max(id) from readings"},
        ]},
    }}  # fmt: skip


def restore(run: Run, where: Archived, target: Path, port: int) -> Result:
    return run("restore", "postgres", "db", "--to", "last-clean", "--target-dir", str(target),
               "--start", "--port", str(port), "--password-file", str(where.password_file),
               "--json")  # fmt: skip


def query(port: int, password: str, sql: str) -> list[tuple[Any, ...]]:
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, password=password, autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


def when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f+00").replace(tzinfo=UTC)


def test_last_clean_finds_the_attackers_commit_and_keeps_every_legitimate_one_before(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
) -> None:
    cluster = archived.cluster
    backed_up(run, archived, stream)
    stream.wait_for(150)  # some seconds of legitimate inserts, each its own commit
    hit = attack(cluster)
    stream.wait_for(100)
    archived_to_here(archived, stream)
    drills = scratch_drill(archived)
    plan_with(archived, SECURITY_CHECKS, drills=drills)

    target = pg_scratch / "last-clean"
    port = free_port()
    done = restore(run, archived, target, port)
    assert done.code == 0, done.err
    try:
        result = json.loads(done.out)
        search = result["last_clean"]
        found = when(result["to"])
        # the point found is before T, within a second of it ...
        assert hit.began - timedelta(seconds=1) < found < hit.ended
        # ... the last commit before the attacker's: the first one failing is its own
        first = search["first_failing"]
        assert first["xid"] == hit.xid
        assert hit.began <= datetime.fromisoformat(first["time"]) <= hit.ended
        assert search["note"] is None
        assert not search["newest_passed"]
        assert len(search["probes"]) <= search["limit"]
        assert [p["good"] for p in search["probes"][:2]] == [False, True]  # newest, oldest
        failed = next(p for p in search["probes"] if not p["good"])["detail"]
        assert "security: no admin created after the change window" in failed
        # every legitimate reading committed before T, none after, none rewritten
        assert restored_ids(port, cluster.password) == list(range(1, hit.legit_before + 1))
        assert query(port, cluster.password, "select count(*) from readings where kwh < 0") == [
            (0,)
        ]
        assert query(port, cluster.password, "select name from app_users order by id") == [
            ("ops",), ("ann",),
        ]  # fmt: skip
        assert (
            query(port, cluster.password, "select rolname from pg_roles where rolname = 'mallory'")
            == []
        )
    finally:
        stop_restored(cluster, target)
    assert not any(Path(drills["db-check"]["scratch_dir"]).iterdir())  # every scratch torn down


def test_a_breach_older_than_every_backup_has_no_clean_point_and_nothing_is_restored(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
) -> None:
    backed_up(run, archived, stream, breach=True)  # before the oldest base backup
    stream.wait_for(50)
    archived_to_here(archived, stream)
    plan_with(archived, SECURITY_CHECKS, drills=scratch_drill(archived))

    target = pg_scratch / "never"
    done = run("restore", "postgres", "db", "--to", "last-clean", "--target-dir", str(target),
               "--password-file", str(archived.password_file))  # fmt: skip
    assert done.code == 19, done.err
    (error,) = [line for line in done.err.splitlines() if not line.startswith("last-clean: ")]
    assert error.startswith("drplan: no clean point of db in local (")
    assert (
        "the oldest it can recover to fails the security checks (with drill db-check's) too"
        in error
    )
    assert "security: no admin created after the change window: it returned False" in error
    assert "nothing was restored; the breach is older than the oldest base backup" in error
    assert not target.exists()


def test_in_an_incident_a_window_clean_throughout_restores_just_before_the_disaster(
    run: Run,
    archived: Archived,  # noqa: F811
    stream: Stream,  # noqa: F811
    pg_scratch: Path,
) -> None:
    backed_up(run, archived, stream)
    stream.wait_for(60)
    last_before, at = stream.committed[-1]  # the disaster moment: right after this commit
    since = datetime.fromtimestamp(at, UTC)
    stream.wait_for(60)
    archived_to_here(archived, stream)

    target = pg_scratch / "recovered"
    give_to_server(pg_scratch)
    port = free_port()
    plan = local_only(yaml.safe_load(archived.plan.read_text()))
    plan["systems"]["db"]["security_checks"] = SECURITY_CHECKS  # no drill: these alone
    action = (f"restore postgres db --to last-clean --target-dir {target} --start"
              f" --port {port} --password-file {archived.password_file} --json")  # fmt: skip
    _, _, step = approved_restore(run, archived, plan, action, since, target)
    try:
        restored = json.loads(step["output"])
        search = restored["last_clean"]
        assert search["newest_passed"]
        assert len(search["probes"]) == 1
        assert search["drill"] is None
        assert restored["to"] == f"just before {since.strftime('%Y-%m-%d %H:%M:%S.%f')}+00"
        ids = restored_ids(port, archived.cluster.password)
        assert ids == [i for i, _ in stream.committed if i <= last_before]
        assert clock.parse_rfc3339(restored["reached"]["last_transaction"]) < since
    finally:
        stop_restored(archived.cluster, target)


def test_a_system_without_security_checks_is_refused_in_one_line(
    run: Run, write_plan: Callable[[dict[str, Any]], Path], plan_data: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    plan = write_plan(plan_data)  # db has no security_checks
    target = tmp_path / "never"
    done = run("--plan", str(plan), "restore", "postgres", "db", "--to", "last-clean",
               "--target-dir", str(target))  # fmt: skip
    assert done.code == 2
    (line,) = done.err.strip().splitlines()
    assert line.startswith(
        "drplan: --to last-clean needs security checks of db: SQL that holds at a point clean"
        " of the breach; add security_checks to systems.db"
    )
    assert not target.exists()

"""Checking a PostgreSQL cluster before a backup: real PostgreSQL 18 servers on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from drplan.sources.postgres.binaries import BinariesError, find_binaries
from drplan.sources.postgres.cluster import ClusterError, preflight
from tests.conftest import Result
from tests.fixtures.postgres import PgCluster
from tests.integration.test_postgres_pitr import Archived, archived  # noqa: F401 - a fixture

Run = Callable[..., Result]
Start = Callable[..., PgCluster]


def test_a_ready_cluster_passes_and_its_identity_is_read(
    pg_cluster: Start, pg_binaries: Path
) -> None:
    cluster = pg_cluster()
    ready = preflight(cluster.dsn, cluster.password, str(pg_binaries), "db", "incremental")
    assert ready.info.major == 18
    assert ready.info.timeline == 1
    assert ready.info.system_identifier.isdigit()
    assert ready.info.can_replicate
    assert ready.binaries.major == 18


def test_every_missing_setting_is_named_with_its_fix(pg_cluster: Start, pg_binaries: Path) -> None:
    cluster = pg_cluster(archive_mode="off", summarize_wal="off")
    cluster.sql("create role backup login password 'pw-for-test-only'")
    dsn = f"host=127.0.0.1 port={cluster.port} user=backup dbname=postgres"
    with pytest.raises(ClusterError) as info:
        preflight(dsn, "pw-for-test-only", str(pg_binaries), "db", "wal")
    message = info.value.message
    assert "archive_mode is off: set archive_mode = on" in message
    assert "archive_command = 'drplan-wal-push --plan PLAN %p'" in message
    assert "role backup may not replicate: ALTER ROLE backup REPLICATION" in message
    assert "pw-for-test-only" not in message
    with pytest.raises(ClusterError, match="summarize_wal is off"):
        preflight(cluster.dsn, cluster.password, str(pg_binaries), "db", "incremental")
    # A full backup needs neither.
    preflight(cluster.dsn, cluster.password, str(pg_binaries), "db", "full")


def test_wrong_connection_details_say_what_failed_without_the_password(
    pg_cluster: Start, pg_binaries: Path
) -> None:
    cluster = pg_cluster()
    with pytest.raises(ClusterError) as wrong_password:
        preflight(cluster.dsn, "not-the-password-123", str(pg_binaries), "db", "full")
    assert "system db: cannot connect to PostgreSQL" in wrong_password.value.message
    assert "password authentication failed" in wrong_password.value.message
    assert "not-the-password-123" not in wrong_password.value.message
    closed = f"host=127.0.0.1 port={cluster.port + 1} user=postgres connect_timeout=2"
    with pytest.raises(ClusterError, match="cannot connect"):
        preflight(closed, cluster.password, None, "db", "full")


DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-client-15 (.ci/run)


def test_tools_of_another_major_version_are_refused(pg_binaries: Path) -> None:
    assert (DEBIAN_15 / "pg_basebackup").is_file(), "apt-get install postgresql-client-15"
    with pytest.raises(BinariesError) as info:
        find_binaries(str(DEBIAN_15), 18)
    assert "version 15, the server is 18" in info.value.message
    assert "bin_dir" in (info.value.hint or "")
    assert find_binaries(str(pg_binaries), 18).major == 18
    # Without bin_dir, the first candidate of the server's version is taken.
    assert find_binaries(None, 18).major == 18


def test_a_backup_warns_of_a_wal_setup_that_cannot_meet_the_rpo_as_the_server_has_it(
    run: Run,
    archived: Archived,  # noqa: F811 - the fixture imported above
) -> None:
    """The issue's setup (archive_command alone, no archive_timeout, a 1 minute RPO) is
    named before a crash, not after; the backup itself goes on."""
    cluster = archived.cluster
    plan = yaml.safe_load(archived.plan.read_text())
    plan["objectives"]["rpo"]["database"] = "1m"
    archive_only = plan["jobs"]["db-wal"]

    def backup(**wal: str | bool) -> list[str]:
        plan["jobs"]["db-wal"] = {**archive_only, **wal}
        archived.plan.write_text(yaml.safe_dump(plan))
        done = run("backup", "db-full")
        assert done.code == 0, done.err
        return [line for line in done.err.splitlines() if line.startswith("drplan: warning:")]

    (unbounded,) = backup()
    assert "and the server's archive_timeout is 0 (off): on a quiet server nothing bounds" in (
        unbounded
    )
    assert "against the 1m RPO of 'database' data: set `stream: true` on job 'db-wal'" in unbounded
    assert "set archive_timeout = '20s' on the server (a reload is enough)" in unbounded

    # The plan says the server switches every 20s; the server says otherwise.
    mismatch, still = backup(archive_timeout="20s")
    assert mismatch == (
        "drplan: warning: system db: the plan relies on archive_timeout 20s (job db-wal), but"
        " the server's archive_timeout is 0 (off): set archive_timeout = '20s' on the server"
        " (a reload is enough)"
    )
    assert still == unbounded

    cluster.sql("alter system set archive_timeout = '5min'")
    cluster.sql("select pg_reload_conf()")
    mismatch, slow = backup(archive_timeout="20s")
    assert "but the server's is 300s: set archive_timeout = '20s'" in mismatch
    assert "archive_command hands over a segment at least every 5m (archive_timeout)" in slow

    cluster.sql("alter system set archive_timeout = '20s'")
    cluster.sql("select pg_reload_conf()")
    assert backup(archive_timeout="20s") == []
    assert backup() == []  # the server's setting counts, declared or not
    # Streaming meets it whatever the server's archive_timeout.
    cluster.sql("alter system reset archive_timeout")
    cluster.sql("select pg_reload_conf()")
    assert backup(stream=True) == []

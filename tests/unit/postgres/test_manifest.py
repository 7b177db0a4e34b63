"""What a base backup stream must hold before it is saved: its manifest's files, from its cluster."""

from __future__ import annotations

import json

import pytest

from drplan.sources.postgres.basebackup import BaseBackupError, check_received, identity

LABEL = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: drplan db\n"


def kept(files: list[dict[str, object]], sysid: int | None = 7) -> dict[str, bytes]:
    manifest: dict[str, object] = {
        "PostgreSQL-Backup-Manifest-Version": 2,
        "Files": files,
        "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000120"}],
    }
    if sysid is not None:
        manifest["System-Identifier"] = sysid
    return {"backup_label": LABEL, "backup_manifest": json.dumps(manifest).encode()}


def test_a_complete_stream_from_the_checked_cluster_passes() -> None:
    ident = identity(kept([{"Path": "PG_VERSION", "Size": 3}]))
    assert (ident.start_lsn, ident.stop_lsn, ident.timeline) == ("0/2000028", "0/2000120", 1)
    check_received(ident, {"PG_VERSION": 3, "pg_wal/000000010000000000000002": 16}, "7")


def test_a_missing_or_short_file_is_refused() -> None:
    ident = identity(
        kept([{"Path": "base/1/1259", "Size": 8192}, {"Path": "PG_VERSION", "Size": 3}])
    )
    with pytest.raises(BaseBackupError, match="does not match its manifest: 1 file"):
        check_received(ident, {"PG_VERSION": 3}, "7")
    with pytest.raises(BaseBackupError, match="base/1/1259"):
        check_received(ident, {"PG_VERSION": 3, "base/1/1259": 4096}, "7")


def test_a_backup_of_another_cluster_is_refused() -> None:
    with pytest.raises(BaseBackupError, match="comes from cluster 8"):
        check_received(identity(kept([], sysid=8)), {}, "7")
    check_received(identity(kept([], sysid=None)), {}, "7")  # PostgreSQL 13-16 do not say


def test_tablespaces_on_servers_before_15_are_named_as_the_problem() -> None:
    from drplan.sources.postgres.cluster import ServerInfo, problems  # noqa: PLC0415

    settings = {"wal_level": "replica", "max_wal_senders": "10", "archive_mode": "on"}
    old = ServerInfo(140010, "1", 1, "postgres", True, False, tablespaces=2, settings=settings)
    assert any("2 tablespace(s)" in p and "15 or later" in p for p in problems(old, "full"))
    new = ServerInfo(150004, "1", 1, "postgres", True, False, tablespaces=2, settings=settings)
    assert problems(new, "full") == []

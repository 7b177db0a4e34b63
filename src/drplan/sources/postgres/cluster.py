"""Reaching a PostgreSQL cluster and checking, before any work, that it can be backed up.

Every check says exactly what is missing and what to change: a backup that fails
halfway on a setting that could have been read up front wastes an RPO window. Beside
what stops a backup, the pre-flight warns of a WAL setup whose worst case misses the
RPO, as the server really has it (``wal_loss_warnings``): that stops no backup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import psycopg

from drplan.errors import SourceError
from drplan.sources.postgres.binaries import Binaries, BinariesError, find_binaries
from drplan.sources.postgres.protocol import PROTOCOL_SINCE

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.plan.wal_loss import WalSetup

SUPPORTED = range(13, 19)  # major versions
INCREMENTAL_SINCE = 17
CONNECT_TIMEOUT = 10  # seconds
Purpose = Literal["full", "incremental", "wal"]
_SETTINGS = (
    "server_version_num",
    "wal_level",
    "archive_mode",
    "archive_command",
    "archive_timeout",
    "summarize_wal",
    "max_wal_senders",
    "data_directory",
    "wal_segment_size",
)


class ClusterError(SourceError):
    """The cluster cannot be reached, or is not set up for what was asked."""


@dataclass(frozen=True)
class ServerInfo:
    version_num: int
    system_identifier: str
    timeline: int
    role: str
    can_replicate: bool
    in_recovery: bool
    current_lsn: str = "0/0"  # where WAL is written now (where it is replayed, in recovery)
    tablespaces: int = 0  # user tablespaces (besides pg_default and pg_global)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def setting(self, name: str) -> str:
        return self.settings.get(name, "")


def connect(dsn: str, password: str | None, system: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to ``dsn`` (libpq syntax; PGPASSWORD and .pgpass apply when no password)."""
    try:
        return psycopg.connect(
            dsn, password=password, connect_timeout=CONNECT_TIMEOUT, autocommit=True
        )
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"system {system}: cannot connect to PostgreSQL ({reason})",
            hint="check the system's connection (host, port, user, dbname) and its password",
        ) from None


def server_info(conn: psycopg.Connection[tuple[object, ...]]) -> ServerInfo:
    with conn.cursor() as cur:
        settings = {
            str(name): str(value)
            for name, value in cur.execute(
                "select name, setting from pg_settings where name = any(%s)", [list(_SETTINGS)]
            ).fetchall()
        }
        row = cur.execute(
            "select system_identifier::text, pg_is_in_recovery(),"
            " r.rolname, r.rolreplication or r.rolsuper"
            " from pg_control_system(), pg_roles r where r.rolname = current_user"
        ).fetchone()
        assert row is not None
        # The timeline WAL is written on now: right after a promotion the last checkpoint
        # (pg_control_checkpoint) can still be on the old one.
        timeline = cur.execute(
            "select case when pg_is_in_recovery() then (select timeline_id from"
            " pg_control_checkpoint()) else ('x' || substr(pg_walfile_name("
            "pg_current_wal_lsn()), 1, 8))::bit(32)::int end"
        ).fetchone()
        spaces = cur.execute(
            "select count(*) from pg_tablespace where spcname not in ('pg_default', 'pg_global')"
        ).fetchone()
        lsn = cur.execute(
            "select case when pg_is_in_recovery() then pg_last_wal_replay_lsn()"
            " else pg_current_wal_lsn() end::text"
        ).fetchone()
    return ServerInfo(
        version_num=int(settings.get("server_version_num", "0")),
        system_identifier=str(row[0]),
        timeline=int(timeline[0]) if timeline else 1,  # type: ignore[call-overload]
        role=str(row[2]),
        can_replicate=bool(row[3]),
        in_recovery=bool(row[1]),
        current_lsn=str(lsn[0]) if lsn and lsn[0] else "0/0",
        tablespaces=int(str(spaces[0])) if spaces else 0,
        settings=settings,
    )


def problems(info: ServerInfo, purpose: Purpose) -> list[str]:
    """What stops a backup of this kind, each with the change that fixes it."""
    found = []
    if info.major not in SUPPORTED:
        found.append(f"PostgreSQL {info.major} is not supported (13 to 18 are); upgrade the server")
    if info.setting("wal_level") not in ("replica", "logical"):
        found.append(
            f"wal_level is {info.setting('wal_level')}: set wal_level = replica and restart the server"
        )
    if not info.can_replicate:
        found.append(
            f"role {info.role} may not replicate: ALTER ROLE {info.role} REPLICATION"
            " (and allow it in pg_hba.conf for replication connections)"
        )
    if info.setting("max_wal_senders") in ("", "0"):
        found.append("max_wal_senders is 0: set it to at least 2 and restart the server")
    if purpose == "wal" and info.setting("archive_mode") not in ("on", "always"):
        found.append(
            f"archive_mode is {info.setting('archive_mode') or 'off'}: set archive_mode = on and"
            " archive_command = 'drplan-wal-push --plan PLAN %p' (or 'drplan wal push %p'),"
            " then restart the server, or run `drplan wal stream`"
        )
    if purpose == "incremental":
        found += incremental_problems(info)
    if purpose != "wal" and info.tablespaces and info.major < PROTOCOL_SINCE:
        found.append(
            f"the cluster has {info.tablespaces} tablespace(s): drplan backs those up on"
            f" PostgreSQL {PROTOCOL_SINCE} or later (this server is {info.major})"
        )
    return found


def incremental_problems(info: ServerInfo) -> list[str]:
    """What stops an incremental backup (and not a full) of this server."""
    if info.major < INCREMENTAL_SINCE:
        return [
            f"incremental backups need PostgreSQL {INCREMENTAL_SINCE} or later"
            f" (this server is {info.major})"
        ]
    if info.setting("summarize_wal") != "on":
        return [
            "summarize_wal is off: incremental backups need it;"
            " set summarize_wal = on (a reload is enough)"
        ]
    return []


@dataclass(frozen=True)
class Preflight:
    info: ServerInfo
    binaries: Binaries


def preflight(
    dsn: str, password: str | None, bin_dir: str | None, system: str, purpose: Purpose
) -> Preflight:
    """Connect, read the server's settings and find matching tools; raise with every
    problem found, not just the first."""
    with connect(dsn, password, system) as conn:
        info = server_info(conn)
    found = problems(info, purpose)
    binaries = None
    try:
        binaries = find_binaries(bin_dir, info.major)
    except BinariesError as exc:
        found.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    if found:
        raise ClusterError(
            f"system {system} cannot be backed up ({purpose}): " + "; ".join(found),
            hint="fix the settings named, then run again",
        )
    assert binaries is not None
    return Preflight(info, binaries)


def server_wal_setup(info: ServerInfo, planned: WalSetup) -> WalSetup:
    """The system's WAL setup as the server has it: the plan's stream (drplan's own), and
    archive_command, archive_mode and archive_timeout as the server runs them."""
    from drplan.plan.wal_loss import WalSetup  # noqa: PLC0415 - slow to import; only this needs it

    mode, command = info.setting("archive_mode"), info.setting("archive_command")
    timeout = timedelta(seconds=int(info.setting("archive_timeout") or 0))
    if mode not in ("on", "always"):
        return WalSetup(planned.stream_every, None, f"archive_mode is {mode or 'off'}", False)
    if "drplan" not in command:
        said = f"archive_command is '{command}'" if command else "archive_command is not set"
        return WalSetup(planned.stream_every, None, f"{said}, which is not drplan's", False)
    if not timeout:
        return WalSetup(planned.stream_every, None, "the server's archive_timeout is 0 (off)")
    return WalSetup(planned.stream_every, timeout)


def wal_loss_warnings(plan: Plan, system: str, info: ServerInfo, now: datetime) -> list[str]:
    """What the pre-flight warns of, one line each with its fix: an archive_timeout the
    plan relies on that the server does not have, and a WAL setup whose worst case, as the
    server has it, misses the RPO of the system's data."""
    from drplan.plan.durations import format_duration  # noqa: PLC0415
    from drplan.plan.wal_loss import planned_setup, shortfalls, wal_jobs  # noqa: PLC0415

    jobs = wal_jobs(plan, system)
    if not jobs:
        return []
    planned = planned_setup(jobs.values())
    actual = server_wal_setup(info, planned)
    found = []
    declared = planned.archive_timeout
    if declared is not None and (actual.archive_timeout or timedelta.max) > declared:
        seconds = f"{int(declared.total_seconds())}s"
        if not actual.archiving:
            fix = (
                "set archive_mode = on, archive_command = 'drplan-wal-push --plan PLAN %p'"
                f" and archive_timeout = '{seconds}', then restart the server"
            )
        else:
            fix = f"set archive_timeout = '{seconds}' on the server (a reload is enough)"
        has = (
            f"the server's is {int(actual.archive_timeout.total_seconds())}s"
            if actual.archive_timeout
            else actual.unbounded_because
        )
        found.append(
            f"system {system}: the plan relies on archive_timeout {format_duration(declared)}"
            f" (job {next(iter(jobs))}), but {has}: {fix}"
        )
    found += [
        f"{s.message}: {s.hint}"
        for s in shortfalls(plan, now, {system: actual})
        if s.system == system
    ]
    return found

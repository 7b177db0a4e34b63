"""Opening the catalog and reading and writing it: runs, notifications, leases.

SQLite (one file, WAL mode, for one daemon) or PostgreSQL (for daemons on several
hosts, which share work through leases). Every write is its own short transaction: a
daemon killed at any moment leaves at most a run marked ``running`` that no daemon
holds, which ``abandon_orphans`` closes once its lease has expired.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.exc import IntegrityError as DuplicateKey
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from drplan.catalog.schema import (
    MIGRATIONS,
    VERSION_KEY,
    catalog_meta,
    leases,
    notifications,
    schema_version,
)
from drplan.catalog.schema import drills as drills_table
from drplan.catalog.schema import runs as runs_table
from drplan.errors import CatalogError
from drplan.storage.registry import redact

RUNNING, SUCCEEDED, PARTIAL, FAILED, ABANDONED, TIMED_OUT = (
    "running",
    "succeeded",
    "partial",  # saved, but not everywhere or not everything: see the error
    "failed",
    "abandoned",
    "timed_out",
)
ORPHANED = "the daemon running it stopped or died during the run"
SQLITE_BUSY_MS = 10_000  # another process writing: wait this long before failing


@dataclass(frozen=True)
class Run:
    id: int
    job: str
    slot: datetime | None
    attempt: int
    host: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    snapshot: str | None
    location: str | None
    bytes_added: int | None
    bytes_stored: int | None
    error: str | None


class Catalog:
    """One catalog database. Open with ``Catalog.open(url)``; ``close`` when done."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url  # redacted: safe to show

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Connect, create or upgrade the schema. CatalogError (exit 20) when the database
        cannot be reached or was written by a newer drplan."""
        shown = redact(url)
        if url.startswith("postgresql://"):  # psycopg 3, the driver drplan ships with
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ValueError) as exc:
            raise CatalogError(
                f"catalog {shown}: not a database URL ({type(exc).__name__})",
                hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
            ) from None
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:":  # the state directory, on first use
                with contextlib.suppress(OSError):  # else opening it says what is wrong
                    os.makedirs(os.path.dirname(os.path.abspath(database)), 0o700, exist_ok=True)
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        catalog = cls(engine, shown)
        catalog._migrate()
        return catalog

    def close(self) -> None:
        self.engine.dispose()

    def _begin(self) -> _Transaction:
        return _Transaction(self)

    def _migrate(self) -> None:
        with self._begin() as conn:
            catalog_meta.create(conn, checkfirst=True)
            version = schema_version(conn)
            if version > len(MIGRATIONS):
                raise CatalogError(
                    f"catalog {self.url} has schema version {version}; this drplan knows"
                    f" up to {len(MIGRATIONS)}",
                    hint="run the newer drplan that wrote it, or point at another catalog",
                )
            for step in MIGRATIONS[version:]:
                step(conn)
            if version == 0:
                conn.execute(insert(catalog_meta).values(key=VERSION_KEY, value="0"))
            conn.execute(
                update(catalog_meta)
                .where(catalog_meta.c.key == VERSION_KEY)
                .values(value=str(len(MIGRATIONS)))
            )

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self, job: str, host: str, started_at: datetime, slot: datetime | None, attempt: int = 1
    ) -> int:
        with self._begin() as conn:
            result = conn.execute(
                insert(runs_table).values(
                    job=job, slot=_utc(slot), attempt=attempt, host=host,
                    started_at=_utc(started_at), status=RUNNING,
                )
            )  # fmt: skip
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        ended_at: datetime,
        *,
        snapshot: str | None = None,
        location: str | None = None,
        bytes_added: int | None = None,
        bytes_stored: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(
                    status=status, ended_at=_utc(ended_at), snapshot=snapshot, location=location,
                    bytes_added=bytes_added, bytes_stored=bytes_stored, error=error,
                )
            )  # fmt: skip

    def abandon_orphans(self, now: datetime, caller: str | None = None) -> int:
        """Close the runs left ``running`` by a daemon that died: those whose daemon (the
        run's ``host``, a lease holder) no longer holds its job's lease (``job:NAME``),
        expired or taken over. The ``caller``'s own runs are never orphans: it is alive,
        whatever its lease says after its clock jumped. How many there were."""
        with self._begin() as conn:
            running = conn.execute(
                select(runs_table.c.id, runs_table.c.job, runs_table.c.host).where(
                    runs_table.c.status == RUNNING
                )
            ).all()
            alive = {
                (row.name.removeprefix("job:"), row.holder)
                for row in conn.execute(select(leases))
                if (_utc(row.expires_at) or now) > now
            }
            orphans = [
                row.id for row in running if (row.job, row.host) not in alive and row.host != caller
            ]
            if orphans:
                conn.execute(
                    update(runs_table)
                    .where(runs_table.c.id.in_(orphans))
                    .values(status=ABANDONED, ended_at=_utc(now), error=ORPHANED)
                )
            return len(orphans)

    def runs(self, job: str | None = None, limit: int = 100) -> list[Run]:
        """The newest runs first (of one job, or of all)."""
        query = select(runs_table).order_by(runs_table.c.started_at.desc(), runs_table.c.id.desc())
        if job is not None:
            query = query.where(runs_table.c.job == job)
        with self._begin() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query.limit(limit))]
        for row in rows:
            for column in ("slot", "started_at", "ended_at"):
                row[column] = _utc(row[column])
        return [Run(**row) for row in rows]

    def last_run(self, job: str) -> Run | None:
        runs = self.runs(job, limit=1)
        return runs[0] if runs else None

    def last_slot(self, job: str) -> datetime | None:
        """The slot of the job's newest scheduled run, whatever its outcome: a failed run is
        retried by backoff, not by the slot coming round again."""
        query = (
            select(runs_table.c.slot)
            .where(runs_table.c.job == job, runs_table.c.slot.is_not(None))
            .order_by(runs_table.c.slot.desc())
            .limit(1)
        )
        with self._begin() as conn:
            row = conn.execute(query).first()
        return _utc(row[0]) if row else None

    # -- notifications ------------------------------------------------------------------------

    def log_notification(
        self, channel: str, problem: str, event: str, at: datetime, status: str, detail: str
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                insert(notifications).values(
                    channel=channel, problem=problem, event=event, at=_utc(at),
                    status=status, detail=detail,
                )
            )  # fmt: skip

    def notifications(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest first: channel, problem, event, at, status, detail."""
        query = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        with self._begin() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:
            row["at"] = _utc(row["at"])
        return rows

    # -- drills -----------------------------------------------------------------------------

    def record_drill(self, row: dict[str, Any]) -> None:
        """One drill run (see schema.drills for the columns)."""
        values = {k: (_utc(v) if isinstance(v, datetime) else v) for k, v in row.items()}
        with self._begin() as conn:
            conn.execute(insert(drills_table).values(**values))

    def drills(self, drill: str | None = None, since: datetime | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
        """Drill runs, the newest first (of one drill; since a time)."""
        query = select(drills_table).order_by(drills_table.c.started_at.desc()).limit(limit)
        if drill is not None:
            query = query.where(drills_table.c.drill == drill)
        if since is not None:
            query = query.where(drills_table.c.started_at >= _utc(since))
        with self._begin() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:
            row["started_at"], row["ended_at"] = _utc(row["started_at"]), _utc(row["ended_at"])
        return rows

    # -- leases -----------------------------------------------------------------------------

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``until``: True when held.
        Another holder's lease is taken only once it has expired (its daemon died or hung),
        or when its holder (``HOST:PID...``) was a process of this host that is gone."""
        try:
            with self._begin() as conn:
                query = select(leases).where(leases.c.name == name)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                row = conn.execute(query).first()
                if row is None:
                    if conn.dialect.name == "postgresql" and _exists(conn, name):
                        return False  # another daemon is deciding about it right now
                    conn.execute(
                        insert(leases).values(name=name, holder=holder, expires_at=_utc(until))
                    )
                    return True
                expires = _utc(row.expires_at)
                if (
                    row.holder != holder
                    and expires is not None
                    and expires > now
                    and not _dead_here(row.holder)
                ):
                    return False
                conn.execute(
                    update(leases)
                    .where(leases.c.name == name)
                    .values(holder=holder, expires_at=_utc(until))
                )
                return True
        except DuplicateKey:
            return False  # another daemon inserted it first

    def release(self, name: str, holder: str) -> None:
        with self._begin() as conn:
            conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))


def _dead_here(holder: str) -> bool:
    """Whether ``holder`` (``HOST:PID`` then anything) names a process of this host that no
    longer runs: killed, its lease cannot have been released. A pid in use again counts
    as alive: the lease then waits for its expiry, as any other."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


class _Transaction:
    """A transaction that reports an unreachable database as CatalogError (exit 20)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._context: Any = None

    def __enter__(self) -> Connection:
        try:
            self._context = self.catalog.engine.begin()
            conn: Connection = self._context.__enter__()
            return conn
        except OperationalError as exc:
            raise _unreachable(self.catalog.url, exc) from None

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._context.__exit__(*exc_info)
        except OperationalError as exc:
            raise _unreachable(self.catalog.url, exc) from None
        failure = exc_info[1]
        if isinstance(failure, OperationalError):  # the database went away mid-statement
            raise _unreachable(self.catalog.url, failure) from None


def _unreachable(url: str, exc: OperationalError) -> CatalogError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return CatalogError(
        f"catalog {url} cannot be used: {redact(reason)}",
        hint="check that the database is up and reachable; the daemon retries on its own",
    )


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(leases.c.name).where(leases.c.name == name)).first() is not None


def _utc(value: datetime | None) -> datetime | None:
    """Stored and read back in UTC: SQLite keeps no offset and hands back naive values."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions begin in _sqlite_begin, not the driver
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock at the start: a transaction that reads a lease and then writes
    # it must not find, at its write, that another process wrote in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")

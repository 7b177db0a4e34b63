"""Opening the catalog and reading and writing it: runs, notifications, leases.

SQLite (one file, WAL mode, for one daemon) or PostgreSQL (for daemons on several
hosts, which share work through leases). Every write is its own short transaction: a
daemon killed at any moment leaves at most a run marked ``running`` that no daemon
holds, which ``abandon_orphans`` closes once its lease has expired.

Every database failure is a CatalogError (exit 20): unreachable, full, or damaged (a
SQLite file is checked when opened, see ``sqlite_file``). After one, the next use checks
the schema again: the server that answers may be another one (a failover, a new empty
database), and a SQLite file moved aside and rebuilt is opened anew.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.exc import DatabaseError, SQLAlchemyError
from sqlalchemy.exc import IntegrityError as DuplicateKey

from drplan.catalog.schema import (
    MIGRATIONS,
    VERSION_KEY,
    catalog_meta,
    incident_events,
    leases,
    notifications,
    schema_version,
)
from drplan.catalog.schema import drills as drills_table
from drplan.catalog.schema import runs as runs_table
from drplan.catalog.sqlite_file import (
    DAMAGE_CODES,
    damaged,
    error_code,
    full,
    identity,
    is_full,
    quick_check,
)
from drplan.errors import CatalogError
from drplan.liveness import alive
from drplan.storage.registry import redact

log = logging.getLogger("drplan.catalog")

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
    # What asked for the run when no slot did: {"event", "source", "detail", "count"}.
    triggered_by: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunStart:
    """What a daemon knows of a run it started, whatever the catalog now holds: enough to
    find the run again, or to record it whole in a catalog that never saw it start."""

    job: str
    host: str
    started_at: datetime
    slot: datetime | None
    attempt: int
    triggered_by: dict[str, Any] | None = None


class Catalog:
    """One catalog database. Open with ``Catalog.open(url)``; ``close`` when done."""

    def __init__(self, engine: Engine, url: str, path: str | None = None) -> None:
        self.engine = engine
        self.url = url  # redacted: safe to show
        self.path = path  # the SQLite file, if it is one
        self._identity: tuple[int, int] | None = None  # which file that was when opened
        self._stale = True  # the file and schema are to be checked before the next use
        self._preparing = threading.Lock()  # one thread checks and migrates, the others wait

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
        path = None
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:":  # the state directory, on first use
                path = os.path.abspath(database)
                with contextlib.suppress(OSError):  # else opening it says what is wrong
                    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        catalog = cls(engine, shown, path)
        catalog._prepare()
        return catalog

    def close(self) -> None:
        self.engine.dispose()

    def transaction(self) -> _Transaction:
        """A transaction for the tables of :mod:`drplan.catalog.schema` that other modules
        own (the web server's accounts, the audit trail): ``with catalog.transaction() as
        conn``. A database failure is CatalogError; a duplicate key is the caller's."""
        return self._begin()

    def _begin(self) -> _Transaction:
        if self.path is not None and identity(self.path) != self._identity:
            if self._identity is not None:  # not after a failed check: said once
                # Moved aside (a rebuild) or removed: what is at the path now is the catalog.
                log.warning("catalog %s was replaced or removed: opening it anew", self.path)
                self._identity = None
            self.engine.dispose()
            self._stale = True
        if self._stale:
            with self._preparing:
                if self._stale:  # not done meanwhile by the thread that held the lock
                    self._prepare()
        return _Transaction(self)

    def _prepare(self) -> None:
        """Check the SQLite file, create or upgrade the schema: on open, and again after a
        failure (the database that answers next may be another, or empty)."""
        if self.path is not None:
            self._check_file()
        self._migrate()
        if self.path is not None:
            self._identity = identity(self.path)
        self._stale = False

    def _check_file(self) -> None:
        try:
            conn = self.engine.raw_connection()
        except (DatabaseError, sqlite3.Error) as exc:
            raise self.failed(exc) from None
        try:
            problem = quick_check(conn.driver_connection)
        except sqlite3.Error as exc:
            raise self.failed(exc) from None
        finally:
            conn.close()
        if problem is not None:
            assert self.path is not None
            raise damaged(self.path, problem)

    def failed(self, exc: DatabaseError | sqlite3.Error) -> CatalogError:
        """The CatalogError a database failure is (SQLAlchemy's, or the SQLite driver's own,
        raised as a connection opens); the schema is checked at the next use."""
        self._stale = True
        orig = exc.orig if isinstance(exc, DatabaseError) else exc
        code = error_code(orig)
        reason = _reason(orig, exc)
        if self.path is not None and code in DAMAGE_CODES:
            return damaged(self.path, reason)
        if self.path is not None and is_full(self.path, code):
            return full(self.path, reason)
        return CatalogError(
            f"catalog {self.url} cannot be used: {reason}",
            hint="check that the database is up and reachable; the daemon retries on its own",
        )

    def _migrate(self) -> None:
        try:
            self._migrate_once()
        except DuplicateKey:  # another process made the schema at the same moment: it is there
            self._migrate_once()

    def _migrate_once(self) -> None:
        with _Transaction(self) as conn:
            catalog_meta.create(conn, checkfirst=True)
            version = schema_version(conn)
            if version > len(MIGRATIONS):
                raise CatalogError(
                    f"catalog {self.url} has schema version {version}; this drplan knows"
                    f" up to {len(MIGRATIONS)}",
                    hint="run the newer drplan that wrote it, or point at another catalog",
                )
            if version == len(MIGRATIONS):
                return  # nothing to write: a catalog on a full disk can still be read
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
        self,
        job: str,
        host: str,
        started_at: datetime,
        slot: datetime | None,
        attempt: int = 1,
        triggered_by: dict[str, Any] | None = None,
    ) -> int:
        with self._begin() as conn:
            result = conn.execute(
                insert(runs_table).values(
                    job=job, slot=_utc(slot), attempt=attempt, host=host,
                    started_at=_utc(started_at), status=RUNNING,
                    triggered_by=_dumped(triggered_by),
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
        start: RunStart | None = None,
    ) -> None:
        """Record how run ``run_id`` ended. With ``start``, the run is found by what it is,
        not by its id alone, and recorded whole when the catalog does not have it: one that
        failed over since the run started may lack it, or give its id to another run."""
        values = {
            "status": status, "ended_at": _utc(ended_at), "snapshot": snapshot,
            "location": location, "bytes_added": bytes_added, "bytes_stored": bytes_stored,
            "error": error,
        }  # fmt: skip
        query = update(runs_table).where(runs_table.c.id == run_id)
        if start is not None:
            query = query.where(
                runs_table.c.job == start.job,
                runs_table.c.host == start.host,
                runs_table.c.started_at == _utc(start.started_at),
            )
        with self._begin() as conn:
            if conn.execute(query.values(**values)).rowcount == 0 and start is not None:
                conn.execute(
                    insert(runs_table).values(
                        job=start.job, slot=_utc(start.slot), attempt=start.attempt,
                        host=start.host, started_at=_utc(start.started_at),
                        triggered_by=_dumped(start.triggered_by), **values,
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
            row["triggered_by"] = _loaded(row.get("triggered_by"))
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

    # -- incidents ----------------------------------------------------------------------------

    def add_incident_events(self, incident: str, rows: list[dict[str, Any]]) -> int:
        """Append the events (``seq``, ``at``, ``kind``, ``body``, ``hash``) of ``incident``
        the catalog lacks; how many were added. CatalogError when the catalog holds a
        different event at one of those places (another copy of the timeline went on)."""
        with self._begin() as conn:
            held = {
                row.seq: row.hash
                for row in conn.execute(
                    select(incident_events.c.seq, incident_events.c.hash).where(
                        incident_events.c.incident == incident
                    )
                )
            }
            for row in rows:
                if row["seq"] in held and held[row["seq"]] != row["hash"]:
                    raise CatalogError(
                        f"the catalog holds another entry {row['seq']} of incident {incident}:"
                        " its timeline went on elsewhere",
                        hint=f"`drplan incident verify {incident}` compares the copies",
                    )
            new = [{**row, "incident": incident, "at": _utc(row["at"])}
                   for row in rows if row["seq"] not in held]  # fmt: skip
            if new:
                conn.execute(insert(incident_events), new)
            return len(new)

    def incident_events(self, incident: str, after: int = 0) -> list[tuple[str, str]]:
        """The events of ``incident`` in order, those after the ``after``th: (body, hash)."""
        query = (
            select(incident_events.c.body, incident_events.c.hash)
            .where(incident_events.c.incident == incident, incident_events.c.seq > after)
            .order_by(incident_events.c.seq)
        )
        with self._begin() as conn:
            return [(row.body, row.hash) for row in conn.execute(query)]

    def incident_lengths(self) -> dict[str, int]:
        """How many events the catalog holds of each incident."""
        query = select(incident_events.c.incident, func.max(incident_events.c.seq)).group_by(
            incident_events.c.incident
        )
        with self._begin() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def incident_ids(self) -> list[str]:
        """Every incident the catalog knows, the first declared first."""
        query = (
            select(incident_events.c.incident)
            .where(incident_events.c.seq == 1)
            .order_by(incident_events.c.at)
        )
        with self._begin() as conn:
            return [row[0] for row in conn.execute(query)]

    # -- rebuilding (see catalog.rebuild) ------------------------------------------------------

    def recorded_snapshots(self) -> set[str]:
        """The snapshots some run of the catalog saved."""
        query = select(runs_table.c.snapshot).where(runs_table.c.snapshot.is_not(None))
        with self._begin() as conn:
            return {row[0] for row in conn.execute(query)}

    def recorded_drills(self) -> set[str]:
        """The drill runs (their ``run`` ids) the catalog holds."""
        with self._begin() as conn:
            return {row[0] for row in conn.execute(select(drills_table.c.run))}

    def add_runs(self, rows: list[dict[str, Any]]) -> None:
        """Whole runs (see schema.runs for the columns), in one transaction."""
        if not rows:
            return
        values = [{k: (_utc(v) if isinstance(v, datetime) else v) for k, v in row.items()}
                  for row in rows]  # fmt: skip
        with self._begin() as conn:
            conn.execute(insert(runs_table), values)

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
    longer runs: killed, its lease cannot have been released."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


class _Transaction:
    """A transaction that reports a database failure as CatalogError (exit 20): the server
    unreachable or gone mid-statement, the disk full, the file damaged, the schema missing
    (a new server). A duplicate key is left to the caller (``acquire`` expects them)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._context: Any = None

    def __enter__(self) -> Connection:
        try:
            self._context = self.catalog.engine.begin()
            conn: Connection = self._context.__enter__()
            return conn
        except (DatabaseError, sqlite3.Error) as exc:
            raise self.catalog.failed(exc) from None

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._context.__exit__(*exc_info)
        except DuplicateKey:
            raise
        except DatabaseError as exc:
            raise self.catalog.failed(exc) from None
        failure = exc_info[1]
        if isinstance(failure, DatabaseError) and not isinstance(failure, DuplicateKey):
            raise self.catalog.failed(failure) from None


def _reason(orig: BaseException | None, exc: BaseException) -> str:
    """The driver's first line, credentials redacted."""
    text = str(orig).strip() if orig is not None else ""
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(leases.c.name).where(leases.c.name == name)).first() is not None


def _dumped(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loaded(value: str | None) -> dict[str, Any] | None:
    """A run's trigger as recorded; a value this drplan cannot read is shown, not lost."""
    if not value:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return {"detail": value}
    return found if isinstance(found, dict) else {"detail": str(found)}


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

"""The drill's sentinel: a row written into the source at the disaster moment, looked for
in the recovered copy. Present, nothing committed before the disaster was lost; absent,
the data lost is the time from the disaster back to the last transaction replayed.

The row goes into ``drplan.drill_sentinel`` in the system's connection database (schema
and table made when missing); each drill's row names the drill and its run.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from drplan.errors import SourceError
from drplan.sources.postgres.cluster import connect

CREATE = (
    "create schema if not exists drplan;"
    " create table if not exists drplan.drill_sentinel ("
    " drill text not null, run text primary key,"
    " written_at timestamptz not null default clock_timestamp())"
)


def write(dsn: str, password: str | None, system: str, drill: str, run: str) -> datetime:
    """Write the sentinel and commit it; its time (the server's clock) is the disaster."""
    try:
        with connect(dsn, password, system) as conn:
            conn.execute(CREATE.encode())
            row = conn.execute(
                "insert into drplan.drill_sentinel (drill, run) values (%s, %s)"
                " returning written_at",
                (drill, run),
            ).fetchone()
            conn.commit()
    except psycopg.Error as exc:
        raise SourceError(
            f"system {system}: the drill's sentinel could not be written: {_first_line(exc)}",
            hint="grant the connection's role CREATE on the database, or set the drill's"
            " `sentinel: false` (the loss is then measured from the last transaction replayed)",
        ) from None
    assert row is not None
    assert isinstance(row[0], datetime)
    return row[0]


def find(conn: psycopg.Connection[tuple[object, ...]], run: str) -> datetime | None:
    """The sentinel of ``run`` in a recovered cluster, if it is there."""
    try:
        row = conn.execute(
            "select written_at from drplan.drill_sentinel where run = %s", (run,)
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return None
    return None if row is None else row[0]  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["unknown error"])[0]

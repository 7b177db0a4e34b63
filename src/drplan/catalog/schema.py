"""The catalog's tables (SQLAlchemy Core) and the migrations that create them, in order.

Each migration is applied once, in a transaction, and the version it reached is
recorded in ``catalog_meta``: a catalog written by an older drplan is upgraded on
open; one written by a newer drplan is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

metadata = MetaData()

catalog_meta = Table(
    "catalog_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(128), nullable=False),
    Column("slot", DateTime(timezone=True)),  # the scheduled time; None when asked for
    Column("attempt", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("snapshot", String(64)),
    Column("location", String(128)),
    Column("bytes_added", BigInteger),
    Column("bytes_stored", BigInteger),
    Column("error", Text),
    # What asked for a run that no slot did (JSON: event, source, detail, count); None for
    # scheduled runs and for catalogs written before triggers (schema version 5).
    Column("triggered_by", Text),
    Index("runs_by_job", "job", "started_at"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(128), nullable=False),
    Column("problem", String(255), nullable=False),  # the de-duplication key
    Column("event", String(16), nullable=False),  # trigger, resolve, info
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # sent, failed, suppressed
    Column("detail", Text),
    Index("notifications_by_problem", "problem", "at"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


# One row per drill run: the figures KPIs are computed from, the whole result (so that a
# catalog shared by several hosts has it all), and where its evidence file is, with the
# SHA-256 of that file's content.
drills = Table(
    "drills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(64), nullable=False, unique=True),
    Column("drill", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("passed", Integer, nullable=False),  # 1 or 0
    Column("rto_seconds", Float),  # the slowest system's, None when it did not recover
    Column("rto_met", Integer),
    Column("rpo_seconds", Float),  # the largest loss
    Column("rpo_met", Integer),
    Column("integrity", Integer),  # 1 when every validation passed (or did not apply)
    Column("evidence", Text),  # path of the JSON evidence file
    Column("sha256", String(64)),
    Column("summary", Text),  # the failures, or empty
    Column("result", Text),  # the whole result as JSON, as in the evidence file
    Index("drills_by_name", "drill", "started_at"),
)


# One row per event of an incident's timeline, as the journal holds it: the canonical
# body (which carries the previous event's hash) and its own hash. Never updated: the
# primary key keeps two hosts from appending different events at one place.
incident_events = Table(
    "incident_events",
    metadata,
    Column("incident", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("hash", String(64), nullable=False),
)


# Who may use the web dashboard and the API: local accounts (an argon2 hash; none for
# accounts that log in through OIDC only), API tokens (a SHA-256 of the secret, which is
# shown once and never stored), and login sessions (a SHA-256 of the cookie's value).
web_users = Table(
    "web_users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("email", String(255)),
    Column("password", Text),  # argon2id, with its parameters; None: no local login
    Column("roles", Text, nullable=False),  # JSON list of the plan's roles
    Column("access", String(16)),  # granted besides the roles', or None
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public: the token's first part
    Column("name", String(128), nullable=False),
    Column("user", String(128), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("origin", String(16), nullable=False),  # local (the account is read anew), oidc
    Column("roles", Text, nullable=False),  # JSON: as they were at login (OIDC claims)
    Column("access", String(16), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Every change made through the web server or the API, and every change to who may make
# them: a hash chain like the incidents' timelines (each row's hash covers its body,
# which names the previous row's hash), so an edited or removed row is detected.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("hash", String(64), nullable=False),
)


def _v1(conn: Connection) -> None:
    for table in (runs, notifications, leases):
        table.create(conn)


def _v2(conn: Connection) -> None:
    drills.create(conn)


def _v3(conn: Connection) -> None:
    incident_events.create(conn)


def _v4(conn: Connection) -> None:
    for table in (web_users, api_tokens, web_sessions, audit_events):
        table.create(conn)


def _v5(conn: Connection) -> None:
    # A catalog made by this version has the column from _v1's table already.
    if "triggered_by" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        conn.execute(text("ALTER TABLE runs ADD COLUMN triggered_by TEXT"))


# Appended to, never edited: the catalog's version is the number of steps applied.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5]
VERSION_KEY = "schema_version"


def schema_version(conn: Connection) -> int:
    row = conn.execute(
        select(catalog_meta.c.value).where(catalog_meta.c.key == VERSION_KEY)
    ).first()
    return int(row[0]) if row else 0

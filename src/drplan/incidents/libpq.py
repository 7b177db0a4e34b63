"""The libpq environment (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``,
``PGPASSWORD``) that reaches a PostgreSQL connection string: what smoke checks and a
runbook's shell steps are given. Kept apart from the checks themselves, which import
much more, so that a shell step starts without waiting on them."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict


def libpq_env(connection: str, password: str | None) -> dict[str, str]:
    """The libpq environment that reaches ``connection``."""
    params = conninfo_to_dict(connection)
    host, port = str(params.get("host") or ""), str(params.get("port") or "5432")
    env = {"PGHOST": host, "PGPORT": port, "PGUSER": str(params.get("user") or ""),
           "PGDATABASE": str(params.get("dbname") or "postgres")}  # fmt: skip
    if password:
        env["PGPASSWORD"] = password
    return env

"""What proves a recovered cluster good, each check reported on its own with its outcome
and duration: pg_verifybackup (during the rebuild), pg_amcheck, data checksums, tables
compared with the source, the plan's SQL checks and smoke-test commands.

A check that cannot run is a failure, not a pass: a drill that could not look has not
proven anything. A check that does not apply (checksums on a cluster without them) is
``skipped``, and says why.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg import sql

from drplan.errors import DrplanError
from drplan.plan.model.assurance import CommandCheck, SqlCheck, TableCheck

Outcome = Literal["passed", "failed", "skipped"]
COMMAND_TIMEOUT = timedelta(minutes=10)
DETAIL_LINES = 5  # of a failing tool's output, kept in the report


@dataclass
class Validation:
    name: str
    kind: str  # verifybackup, amcheck, checksums, table, sql, command
    outcome: Outcome
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "outcome": self.outcome,
                "seconds": round(self.seconds, 3), "detail": self.detail}  # fmt: skip


def timed(name: str, kind: str, check: Callable[[], tuple[Outcome, str]]) -> Validation:
    """Run ``check`` and time it; an exception is the check's failure, with its message."""
    started = time.monotonic()
    try:
        outcome, detail = check()
    except DrplanError as exc:
        outcome, detail = "failed", exc.message
    except (psycopg.Error, OSError, subprocess.SubprocessError) as exc:
        outcome, detail = "failed", _first_line(exc)
    return Validation(name, kind, outcome, time.monotonic() - started, detail)


def amcheck(pg_amcheck: str, socket_dir: str, port: int, user: str) -> tuple[Outcome, str]:
    """Every heap and B-tree index of every database (the extension installed where missing)."""
    proc = subprocess.run(
        [pg_amcheck, "--host", socket_dir, "--port", str(port), "--username", user,
         "--all", "--install-missing", "--heapallindexed", "--no-password"],
        capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT.total_seconds(),
    )  # fmt: skip
    if proc.returncode == 0:
        return "passed", "every relation and index of every database"
    return "failed", _tail(proc.stdout + proc.stderr)


def checksums(pg_checksums: str, run_as: list[str], data_dir: str) -> tuple[Outcome, str]:
    """``pg_checksums --check`` on the stopped cluster."""
    proc = subprocess.run(
        [*run_as, pg_checksums, "--check", "-D", data_dir],
        capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT.total_seconds(),
        env={**os.environ, "LC_ALL": "C"},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "passed", " ".join(ln.strip() for ln in out.splitlines() if "Bad checksums" in ln)
    if "checksums are not enabled" in out:
        return "skipped", "the cluster has no data checksums"
    return "failed", _tail(out)


def table_fingerprint(
    conn: psycopg.Connection[tuple[object, ...]], check: TableCheck, disaster: datetime
) -> tuple[int, str]:
    """Row count and an order-independent checksum of the rows ``check`` selects."""
    parts = [sql.Identifier(p) for p in check.table.split(".")]
    query = sql.SQL(
        "select count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
        " from {} t"
    ).format(sql.SQL(".").join(parts))
    if check.where:
        condition = check.where.replace("{disaster}", disaster.isoformat())
        query = sql.SQL("{} where {}").format(query, sql.SQL(condition))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])  # type: ignore[call-overload]


def compare_table(
    source: psycopg.Connection[tuple[object, ...]],
    recovered: psycopg.Connection[tuple[object, ...]],
    check: TableCheck,
    disaster: datetime,
) -> tuple[Outcome, str]:
    want = table_fingerprint(source, check, disaster)
    got = table_fingerprint(recovered, check, disaster)
    if want == got:
        return "passed", f"{got[0]} rows, same checksum as the source"
    if want[0] != got[0]:
        return "failed", f"{got[0]} rows recovered, the source has {want[0]}"
    return "failed", f"{got[0]} rows on both sides, but their contents differ"


def sql_check(
    conn: psycopg.Connection[tuple[object, ...]],
    check: SqlCheck,
    point: datetime,
    disaster: datetime,
) -> tuple[Outcome, str]:
    query = check.query.replace("{point}", point.isoformat()).replace(
        "{disaster}", disaster.isoformat()
    )
    row = conn.execute(query.encode()).fetchone()
    value = None if row is None else row[0]
    if value is True:
        return "passed", ""
    return "failed", f"it returned {value!r}, not true"


def command_check(check: CommandCheck, env: dict[str, str]) -> tuple[Outcome, str]:
    limit = check.timeout or COMMAND_TIMEOUT
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", check.run], env=env, capture_output=True, text=True,
            check=False, timeout=limit.total_seconds(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "failed", f"still running after {limit}: stopped"
    if proc.returncode == 0:
        return "passed", _tail(proc.stdout, 1)
    return "failed", f"exit code {proc.returncode}: {_tail(proc.stderr + proc.stdout)}"


def _tail(text: str, lines: int = DETAIL_LINES) -> str:
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

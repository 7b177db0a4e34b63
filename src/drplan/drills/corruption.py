"""The corruption scenario: a recovered copy is damaged as a failing disk or controller
would damage it (a page of its largest relation overwritten), and the validations must
catch it: ``pg_checksums`` on the stopped cluster, ``pg_amcheck`` on the started one.
Each detection is reported as a check that passes when the damage was found. The drill
then recovers again, to the last point before the damage, and validates that copy.

Only the scratch copy is touched, never the source: the damage is done to files under
the drill's own scratch directory, after the copy has been recovered and checked.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import psycopg

from drplan.drills.results import SystemResult
from drplan.drills.scratch import Scratch
from drplan.drills.validations import Outcome, Validation, amcheck, checksums, timed
from drplan.recovery.postgres import start_cluster
from drplan.recovery.recover import Recovered

PAGE = 8192
DAMAGE = 512  # bytes overwritten in the page: tuple data, past its header


def corrupt_and_detect(
    first: SystemResult,
    recovered: Recovered,
    scratch: Scratch,
    run_as: list[str],
    env: dict[str, str],
    user: str,
) -> SystemResult:
    """Damage the (stopped) scratch copy recovered for ``first`` and run the detections;
    a SystemResult of stage ``corruption``."""
    outcome = SystemResult(first.system, first.disaster, first.location,
                           recovery_point=first.recovery_point, stage="corruption")  # fmt: skip
    outcome.rto_objective_seconds = first.rto_objective_seconds
    victim = damage(scratch.data_dir)
    where = victim.relative_to(scratch.data_dir)
    binaries = recovered.binaries
    outcome.validations.append(timed(
        "pg_checksums finds the damage", "checksums",
        lambda: _found(checksums(binaries.tool("pg_checksums"), run_as, str(scratch.data_dir)), where),
    ))  # fmt: skip
    start_cluster(binaries, scratch.data_dir, scratch.port, env, scratch.server_options())
    try:
        with psycopg.connect(host=str(scratch.socket_dir), port=scratch.port, user=user,
                             dbname="postgres", autocommit=True) as conn:  # fmt: skip
            row = conn.execute("select rolname from pg_roles where oid = 10").fetchone()
        superuser = str(row[0]) if row else user
        outcome.validations.append(timed(
            "pg_amcheck finds the damage", "amcheck",
            lambda: _found(amcheck(binaries.tool("pg_amcheck"), str(scratch.socket_dir),
                                   scratch.port, superuser), where),
        ))  # fmt: skip
    finally:
        subprocess.run(
            [*run_as, binaries.tool("pg_ctl"), "-D", str(scratch.data_dir), "stop", "-m",
             "immediate", "-w"], capture_output=True, check=False, timeout=120,
        )  # fmt: skip
    return outcome


def damage(data_dir: Path) -> Path:
    """Overwrite part of page 1 of the largest relation file of any database: the file."""
    files = [
        p for p in (data_dir / "base").rglob("*")
        if p.is_file() and p.name.isdigit() and p.stat().st_size >= 2 * PAGE
    ]  # fmt: skip
    if not files:
        raise OSError("no relation of two pages or more to damage")
    victim = max(files, key=lambda p: p.stat().st_size)
    fd = os.open(victim, os.O_WRONLY)
    try:
        os.pwrite(fd, secrets.token_bytes(DAMAGE), PAGE + PAGE // 2)
        os.fsync(fd)
    finally:
        os.close(fd)
    return victim


def _found(check: tuple[Outcome, str], where: Path) -> tuple[Outcome, str]:
    """A detection passes when the check failed (it saw the damage)."""
    outcome, detail = check
    if outcome == "failed":
        return "passed", f"found the damage to {where}: {detail}"
    if outcome == "skipped":
        return "skipped", detail
    return "failed", f"the damage to {where} went unnoticed"


__all__ = ["Validation", "corrupt_and_detect", "damage"]

"""``drplan drill run``: a recovery rehearsed for real, measured and judged.

For each PostgreSQL system of a database drill, in turn:

1. the disaster is declared: a sentinel row is written into the source (unless the
   drill says not to) and its commit time is the disaster moment;
2. the system is recovered into a scratch target (see ``scratch``) from the drill's
   location, to its recovery point, timed by phase: fetch (files out of the repository),
   rebuild (pg_combinebackup), verify (pg_verifybackup), start (until consistent), replay
   (WAL, until promoted), then validate;
3. the validations run (see ``validations``), each on its own;
4. the measured RTO (disaster to validated) and RPO (disaster back to the newest data
   present: nothing lost when the sentinel is there, else the last transaction replayed)
   are held against the system's objectives;
5. the scratch target is torn down, also on failure, Ctrl-C or the budget running out.

The drill passes when every validation passed (or did not apply) and every system met
its RTO and RPO. The time budget (the drill's ``budget``, else the tightest RTO of its
systems) stops the drill where it is and fails it.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from drplan import clock
from drplan.drills import platform, sentinel
from drplan.drills.corruption import corrupt_and_detect
from drplan.drills.results import DrillResult, SystemResult, new_result
from drplan.drills.scratch import SHIELD, Scratch, make_scratch, room_needed, scratch_base
from drplan.drills.snapshots import drill_snapshot_system
from drplan.drills.validations import (
    Validation,
    amcheck,
    checksums,
    command_check,
    compare_table,
    sql_check,
    timed,
)
from drplan.errors import DrillRefusedError, DrplanError, UsageError
from drplan.plan.model import Plan, PostgresSystem
from drplan.plan.model.assurance import Drill
from drplan.recovery.pitr import Target, parse_target
from drplan.recovery.recover import OpenLocation, Recovered, locations_of, recover
from drplan.sources.postgres.cluster import connect
from drplan.sources.postgres.scratch import server_user
from drplan.sources.postgres.wal_archive import lsn_segment, segment_number
from drplan.sources.postgres.wal_status import recoverable_window

LEASE_MARGIN = timedelta(minutes=5)  # past the budget: the drill tears down and records


class BudgetExceeded(BaseException):
    """The drill ran past its time budget. Not an Exception: raised from a signal wherever
    the drill is, it must not be taken for that code's own failure (a damaged snapshot)."""


@dataclass
class DrillContext:
    plan: Plan
    plan_path: str
    open_location: OpenLocation
    reach_of: Callable[[str, str], datetime | None]  # (location, system): newest point
    password_file: str | None
    server_env: dict[str, str]  # the scratch server's (its restore_command's) environment
    keep: bool = False
    rng: random.Random = field(default_factory=random.Random)
    # Leases (the catalog's): one drill per system at a time, on any host.
    history: list[dict[str, Any]] = field(default_factory=list)  # past runs, newest first
    acquire: Callable[[str, str, datetime, datetime], bool] | None = None
    release: Callable[[str, str], None] | None = None


def run_drill(ctx: DrillContext, name: str) -> DrillResult:
    plan = ctx.plan
    if name not in plan.drills:
        known = ", ".join(plan.drills) or "none"
        raise UsageError(f"the plan has no drill {name!r} (it has {known})",
                         hint="see `drplan drill list`")  # fmt: skip
    drill = plan.drills[name]
    systems = _systems(plan, name, drill)
    for system_name in systems:  # a plan that contradicts itself is refused up front
        _candidates(plan, name, drill, system_name)
    budget = drill.budget or (
        plan.objectives.rto.full_platform
        if drill.kind == "full_platform"
        else min(plan.rto_of(s) for s in systems)
    )
    result = DrillResult(name, drill.kind, drill.scenario, secrets.token_hex(6), clock.now(),
                         budget_seconds=budget.total_seconds())  # fmt: skip
    order = platform.levels(plan, systems)
    if drill.kind != "database":
        result.predicted_seconds = platform.predicted(plan, systems, ctx.history)
    holder = f"{socket.gethostname()}:{os.getpid()}:{result.run}"
    held = _hold(ctx, systems, holder, budget)
    try:
        with _budget(budget):
            for level in order:
                _recover_level(ctx, name, drill, level, result)
    except BudgetExceeded:
        result.error = f"the drill ran past its budget of {budget}: stopped and torn down"
    except DrillRefusedError:
        raise
    except DrplanError as exc:
        result.error = exc.message
    finally:
        if ctx.release is not None:
            for lease in held:
                ctx.release(lease, holder)
    result.ended_at = clock.now()
    if drill.kind != "database":
        _critical_path(plan, drill, systems, result)
    return result


def _critical_path(plan: Plan, drill: Drill, systems: list[str], result: DrillResult) -> None:
    """The chain that took longest, once every system recovered; for a full-platform
    drill, held against the full-platform RTO."""
    durations = {s.system: s.rto_seconds for s in result.systems
                 if s.stage == "recovery" and s.rto_seconds is not None}  # fmt: skip
    found = platform.critical_path(plan, durations) if len(durations) == len(systems) else None
    if found is not None:
        result.critical_path, result.critical_seconds = found
    if drill.kind == "full_platform":
        result.critical_objective_seconds = plan.objectives.rto.full_platform.total_seconds()


def _recover_level(
    ctx: DrillContext, name: str, drill: Drill, level: list[str], result: DrillResult
) -> None:
    """Recover the systems of one level, at the same time (each in its own scratch target)."""
    if len(level) == 1:
        result.systems += _drill_any(ctx, name, drill, level[0], result)
        return
    with ThreadPoolExecutor(len(level), thread_name_prefix="drplan-drill") as pool:
        futures = [pool.submit(_drill_any, ctx, name, drill, system, result) for system in level]
        for future in futures:
            result.systems += future.result()


def _drill_any(
    ctx: DrillContext, name: str, drill: Drill, system_name: str, result: DrillResult
) -> list[SystemResult]:
    if isinstance(ctx.plan.systems[system_name], PostgresSystem):
        return _drill_system(ctx, name, drill, system_name, result)
    outcome, kept = drill_snapshot_system(
        ctx.plan, name, drill, system_name, _candidates(ctx.plan, name, drill, system_name),
        ctx.open_location, ctx.keep,
    )  # fmt: skip
    if kept:
        result.kept = kept
    return [outcome]


def _hold(ctx: DrillContext, systems: list[str], holder: str, budget: timedelta) -> list[str]:
    """Take each system's drill lease for the budget (and a margin), or refuse the drill."""
    if ctx.acquire is None:
        return []
    now, held = clock.now(), list[str]()
    for system in systems:
        lease = f"drill:{system}"
        if not ctx.acquire(lease, holder, now, now + budget + LEASE_MARGIN):
            for taken in held:
                if ctx.release is not None:
                    ctx.release(taken, holder)
            raise DrillRefusedError(
                f"another drill of {system} is running: two at once would measure each other",
                hint="wait for it to end (`drplan drill list` shows it when it has)",
            )
        held.append(lease)
    return held


def _systems(plan: Plan, name: str, drill: Drill) -> list[str]:
    """The systems the drill recovers: a database drill's must be PostgreSQL systems; a
    full-platform drill naming none recovers every system of the plan."""
    if drill.kind == "database":
        wrong = [s for s in drill.systems if not isinstance(plan.systems.get(s), PostgresSystem)]
        if wrong:
            raise UsageError(
                f"drill {name} recovers {', '.join(wrong)}, which is not a PostgreSQL system",
                hint="a database drill names PostgreSQL systems; a service drill any",
            )
    return list(drill.systems) or list(plan.systems)


def _drill_system(
    ctx: DrillContext,
    name: str,
    drill: Drill,
    system_name: str,
    result: DrillResult,
    *,
    target: Target | None = None,
    stage: str = "recovery",
    point: datetime | None = None,
) -> list[SystemResult]:
    """Recover, validate and measure one system; with ``simulate: corruption``, then
    damage the recovered copy, show the validations catch it, and recover again to the
    last point before the damage (``stage`` names which recovery this is; ``point`` is
    the time of the target a later stage recovers to, its data loss measured from it)."""
    plan = ctx.plan
    system = plan.systems[system_name]
    assert isinstance(system, PostgresSystem)
    password = system.password.resolve() if system.password else None
    target = target or _target(ctx, name, drill, system_name)
    candidates = _candidates(plan, name, drill, system_name)
    needs = room_needed(ctx.open_location, candidates, system_name)
    run_as: list[str] = []
    pg_ctl: str | None = None
    scratch: Scratch | None = None
    try:  # the scratch target is torn down whatever happens, once it exists
        scratch = make_scratch(plan, scratch_base(drill.scratch_dir), name, drill.scratch_ports,
                               needs)  # fmt: skip
        scratch.refuse_long_socket()
        began = time.monotonic()
        disaster = point or _declare(drill, system, password, system_name, name, result.run)
        only = candidates[0] if len(candidates) == 1 else None
        outcome = new_result(plan, system_name, disaster, only, target.describe(), stage)
        outcomes = [outcome]
        try:
            recovered = recover(
                plan, ctx.plan_path, system_name, system, target, scratch.data_dir,
                open_location=ctx.open_location,
                reach_of=lambda ref: ctx.reach_of(ref, system_name),
                candidates=candidates, password_file=ctx.password_file,
                start=True, port=scratch.port, server_env=ctx.server_env,
                prepare=lambda data: _prepare(scratch, data), staged_wal=scratch.wal_dir,
            )  # fmt: skip
            pg_ctl = recovered.binaries.tool("pg_ctl")
            run_as = _owner_prefix(scratch.data_dir)
            _record_recovery(outcome, recovered)
            validating = time.monotonic()
            _validate(ctx, drill, system, outcome, recovered, scratch, password, run_as,
                      result.run if stage == "recovery" else None)  # fmt: skip
            outcome.phases["validate"] = round(time.monotonic() - validating, 3)
            outcome.rto_seconds = time.monotonic() - began
            if drill.simulate == "corruption" and stage == "recovery":
                user = str(conninfo_to_dict(system.connection).get("user") or "postgres")
                outcomes.append(
                    corrupt_and_detect(outcome, recovered, scratch, run_as, ctx.server_env, user)
                )
        except DrillRefusedError:
            raise
        except DrplanError as exc:
            outcome.error = exc.message
    finally:
        if scratch is None:
            pass  # refused: nothing was made
        elif ctx.keep:
            result.kept = str(scratch.root)
        else:
            scratch.teardown(run_as or _owner_prefix(scratch.data_dir), pg_ctl or _pg_ctl(system))
    if len(outcomes) > 1:  # the damage was shown: recover to the last point before it
        # By LSN: a time target needs a commit after it to be known reached.
        before = parse_target(outcome.reached_lsn) if outcome.reached_lsn else target
        outcomes += _drill_system(ctx, name, drill, system_name, result, target=before,
                                  stage="recovery before the corruption",
                                  point=outcome.last_transaction or outcome.disaster)  # fmt: skip
    return outcomes


def probe(
    ctx: DrillContext, name: str, drill: Drill, system_name: str, target: Target,
    candidates: list[str],
) -> SystemResult:  # fmt: skip
    """Recover ``system_name`` to ``target`` in a scratch target and judge it with the
    drill's checks, save those that compare with production (which may be the damaged
    thing) and its sentinel (nothing is written into production); always torn down.
    The point is good when the result has no ``error`` and no validation failed."""
    plan = ctx.plan
    system = plan.systems[system_name]
    assert isinstance(system, PostgresSystem)
    password = system.password.resolve() if system.password else None
    own = drill.model_copy(update={
        "validations": drill.validations.model_copy(update={"tables": []}), "sentinel": False,
    })  # fmt: skip
    outcome = new_result(plan, system_name, clock.now(), None, target.describe())
    run_as: list[str] = []
    scratch = make_scratch(plan, scratch_base(drill.scratch_dir), name, drill.scratch_ports)
    try:
        scratch.refuse_long_socket()
        recovered = recover(
            plan, ctx.plan_path, system_name, system, target, scratch.data_dir,
            open_location=ctx.open_location, reach_of=lambda ref: ctx.reach_of(ref, system_name),
            candidates=candidates, password_file=ctx.password_file, start=True,
            port=scratch.port, server_env=ctx.server_env,
            prepare=lambda data: _prepare(scratch, data), staged_wal=scratch.wal_dir,
        )  # fmt: skip
        run_as = _owner_prefix(scratch.data_dir)
        _record_recovery(outcome, recovered)
        _validate(ctx, own, system, outcome, recovered, scratch, password, run_as, None)
    except DrillRefusedError:
        raise
    except DrplanError as exc:
        outcome.error = exc.message
    finally:
        scratch.teardown(run_as or _owner_prefix(scratch.data_dir), _pg_ctl(system))
    return outcome


def candidates_of(plan: Plan, name: str, system_name: str) -> list[str]:
    """The locations drill ``name`` may recover ``system_name`` from."""
    return _candidates(plan, name, plan.drills[name], system_name)


def _declare(
    drill: Drill,
    system: PostgresSystem,
    password: str | None,
    system_name: str,
    name: str,
    run: str,
) -> datetime:
    """The disaster moment: the sentinel's commit time when the drill writes one."""
    if drill.sentinel:
        return sentinel.write(system.connection, password, system_name, name, run)
    return clock.now()


def _candidates(plan: Plan, name: str, drill: Drill, system_name: str) -> list[str]:
    """The locations the drill may restore from: its ``from_location``; for a scenario that
    names where to recover from (the data center is lost), only those; else every
    location of the system's jobs."""
    scenario = plan.scenarios.get(drill.scenario) if drill.scenario else None
    allowed = scenario.recover_from if scenario and scenario.recover_from else None
    if drill.from_location:
        if allowed is not None and drill.from_location not in allowed:
            raise UsageError(
                f"drill {name} restores from"
                f" {drill.from_location}, which its scenario {drill.scenario} declares lost",
                hint=f"restore from one of {', '.join(allowed)}",
            )
        return [drill.from_location]
    mine = locations_of(plan, system_name)
    return [loc for loc in mine if allowed is None or loc in allowed]


def _target(ctx: DrillContext, name: str, drill: Drill, system_name: str) -> Target:
    """The recovery point: as the drill says. ``random`` picks a point the archive surely
    holds: the start of a complete segment after a base backup, chosen at random among
    all such segments of the location (a random *time* could fall after the last commit
    archived, which PostgreSQL cannot know it reached); ``latest`` when there is none."""
    if drill.recovery_point != "random":
        return parse_target(drill.recovery_point)
    where = _candidates(ctx.plan, name, drill, system_name)[0]
    with ctx.open_location(where) as repo:
        window = recoverable_window(repo, system_name)
    size = window.segment_size
    points: set[int] = set()
    for reach in window.reaches:
        if reach.last_segment is None:
            continue
        stop = lsn_segment(str(reach.base.source.get("stop_lsn", "0/0")), size)
        points.update(range(stop + 1, segment_number(reach.last_segment, size) + 1))
    if not points:
        return parse_target("latest")
    lsn = ctx.rng.choice(sorted(points)) * size
    return parse_target(f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}")


def _prepare(scratch: Scratch, data: Path) -> str:
    owner = os.stat(data)
    scratch.prepare_server(owner.st_uid, owner.st_gid)
    return scratch.server_options()


def _owner_prefix(data: Path) -> list[str]:
    """Run as the owner of the restored files (PostgreSQL refuses root)."""
    if os.geteuid() != 0 or not data.exists():
        return []
    owner = os.stat(data)
    if owner.st_uid == 0:
        return server_user()[0]
    return ["setpriv", f"--reuid={owner.st_uid}", f"--regid={owner.st_gid}", "--clear-groups"]


def _pg_ctl(system: PostgresSystem) -> str | None:
    from drplan.sources.postgres.binaries import BinariesError, find_binaries  # noqa: PLC0415

    try:
        return find_binaries(system.bin_dir).tool("pg_ctl")
    except BinariesError:
        return None


def _record_recovery(outcome: SystemResult, recovered: Recovered) -> None:
    outcome.location = recovered.location
    outcome.snapshots = [s.id for s in recovered.result.chain]
    outcome.phases.update(recovered.phases)
    outcome.server_version = recovered.result.chain[-1].source.get("server_version")
    outcome.restored_bytes = sum(s.summary.bytes_total for s in recovered.result.chain)
    reached = recovered.reached
    if reached is not None:
        outcome.reached_lsn = reached.lsn
        outcome.last_transaction = reached.last_transaction
        start = recovered.result.chain[-1].source.get("start_lsn")
        if reached.lsn and start:
            from drplan.sources.postgres.wal_archive import lsn_value  # noqa: PLC0415

            outcome.wal_bytes = max(0, lsn_value(reached.lsn) - lsn_value(str(start)))


def _validate(
    ctx: DrillContext,
    drill: Drill,
    system: PostgresSystem,
    outcome: SystemResult,
    recovered: Recovered,
    scratch: Scratch,
    password: str | None,
    run_as: list[str],
    run: str | None,
) -> None:
    """Run the drill's checks; ``run`` is the sentinel to look for (None: none written)."""
    checks = drill.validations
    outcome.validations.append(Validation("pg_verifybackup", "verifybackup", "passed",
                                          recovered.phases.get("verify", 0.0),
                                          "every file against the backup manifest"))  # fmt: skip
    params = conninfo_to_dict(system.connection)
    database = str(params.get("dbname") or "postgres")
    user = str(params.get("user") or "postgres")

    def scratch_conn(dbname: str = database) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host=str(scratch.socket_dir), port=scratch.port, user=user,
                               dbname=dbname, autocommit=True, connect_timeout=10)  # fmt: skip

    with scratch_conn() as conn:
        found = sentinel.find(conn, run) if run else None
        row = conn.execute("select rolname from pg_roles where oid = 10").fetchone()
        superuser = str(row[0]) if row else user
    outcome.sentinel_found = (found is not None) if run else None
    newest = found or outcome.last_transaction or _base_end(recovered)
    outcome.rpo_seconds = max(0.0, (outcome.disaster - newest).total_seconds()) if newest else None
    point = outcome.last_transaction or outcome.disaster
    binaries = recovered.binaries
    if checks.amcheck:
        outcome.validations.append(timed("pg_amcheck", "amcheck", lambda: amcheck(
            binaries.tool("pg_amcheck"), str(scratch.socket_dir), scratch.port, superuser)))  # fmt: skip
    for table in checks.tables:
        db = table.database or database

        def compare(table: Any = table, db: str = db) -> Any:
            with connect(make_conninfo(system.connection, dbname=db), password, outcome.system) as src, \
                    scratch_conn(db) as got:  # fmt: skip
                return compare_table(src, got, table, outcome.disaster)

        outcome.validations.append(timed(f"table {table.table}", "table", compare))
    for check in checks.sql:

        def run_sql(check: Any = check) -> Any:
            with scratch_conn(check.database or database) as conn:
                return sql_check(conn, check, point, outcome.disaster)

        outcome.validations.append(timed(check.name, "sql", run_sql))
    env = {**os.environ, "PGHOST": str(scratch.socket_dir), "PGPORT": str(scratch.port),
           "PGUSER": user, "PGDATABASE": database}  # fmt: skip
    for command in checks.commands:
        outcome.validations.append(timed(command.name, "command",
                                         partial(command_check, command, env)))  # fmt: skip
    stopped = subprocess.run(
        [*run_as, binaries.tool("pg_ctl"), "-D", str(scratch.data_dir), "stop", "-m", "fast", "-w"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if checks.checksums:
        if stopped.returncode != 0:
            outcome.validations.append(Validation("pg_checksums", "checksums", "failed", 0.0,
                                                  "the scratch server did not stop cleanly"))  # fmt: skip
        else:
            outcome.validations.append(timed("pg_checksums", "checksums", lambda: checksums(
                binaries.tool("pg_checksums"), run_as, str(scratch.data_dir))))  # fmt: skip


def _base_end(recovered: Recovered) -> datetime | None:
    stop = recovered.result.chain[-1].source.get("stop_time")
    return datetime.fromisoformat(stop) if stop else None


@contextlib.contextmanager
def _budget(limit: timedelta) -> Iterator[None]:
    """Raise BudgetExceeded in this (the main) thread when ``limit`` has passed."""

    def stop() -> None:
        raise BudgetExceeded(f"the drill ran past its budget of {limit}")

    def expired(signum: int, frame: FrameType | None) -> None:
        if SHIELD.depth:  # a teardown is running: it finishes first
            SHIELD.pending = stop
            return
        stop()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(limit.total_seconds(), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["DrillContext", "DrillResult", "SystemResult", "run_drill"]

"""A system's RTO clock stopped: once a step that ``recovers`` it has succeeded and its
checks pass against the system itself (production, now recovered), not before.

The checks are the system's drill checks that read the system alone: for PostgreSQL a
connection that is out of recovery, the drill's SQL checks and its smoke commands; for
other systems, the smoke commands. (``pg_amcheck`` and checksums are not run against
production: they read every relation of a system just back in service, and the
recovered copy was verified with ``pg_verifybackup`` before it was switched in.) Then:

- measured RTO = the moment the checks passed - the disaster moment;
- measured RPO = the disaster moment - the newest transaction recovered (PostgreSQL's
  last replayed commit, ``pg_last_xact_replay_timestamp()``), unknown when the system
  cannot say.

A system whose checks fail keeps its clock running, and the timeline says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from drplan import clock
from drplan.drills.validations import Validation, command_check, sql_check, timed
from drplan.errors import DrplanError
from drplan.incidents.libpq import libpq_env
from drplan.incidents.rehearsal import stand_ins_of
from drplan.incidents.service import Incidents
from drplan.incidents.state import Incident, StepState
from drplan.incidents.timeline import Event, instant
from drplan.plan.model import Plan, PostgresSystem
from drplan.plan.model.assurance import DrillValidations

DRIVER = "drplan"  # the actor of what drplan records itself


@dataclass
class Checked:
    system: str
    validations: list[Validation] = field(default_factory=list)
    newest: datetime | None = None  # the newest transaction recovered, when known

    @property
    def passed(self) -> bool:
        """No check failed (a system the plan has no checks for passes, and says so)."""
        return all(v.outcome != "failed" for v in self.validations)

    def event(self, step: str, since: datetime, at: datetime) -> tuple[str, dict[str, Any]]:
        """The timeline event: the clock stopped, or the recovery not proven."""
        data: dict[str, Any] = {"system": self.system, "step": step,
                                "validations": [v.as_dict() for v in self.validations]}  # fmt: skip
        if not self.passed:
            return "recovery_unproven", data
        if not self.validations:
            data["note"] = "the plan has no checks for it: the step's success is taken as proof"
        data["rto_seconds"] = round((at - since).total_seconds(), 3)
        data["newest"] = instant(self.newest) if self.newest else None
        data["rpo_seconds"] = (round(max(0.0, (since - self.newest).total_seconds()), 3)
                               if self.newest else None)  # fmt: skip
        return "clock_stopped", data


def check_recovered(
    plan: Plan, system_name: str, since: datetime, stand_in: str | None = None
) -> Checked:
    """Run the system's checks against the system itself (``stand_in``: the connection of
    the server standing in for it in a rehearsal)."""
    checks = _checks_of(plan, system_name)
    found = Checked(system_name)
    system = plan.systems[system_name]
    env = dict(os.environ)
    if isinstance(system, PostgresSystem):
        env.update(_postgres(plan, system_name, system, checks, since, found, stand_in))
    for command in checks.commands:
        found.validations.append(
            timed(command.name, "command", partial(command_check, command, env))
        )
    return found


def _postgres(
    plan: Plan, name: str, system: PostgresSystem, checks: DrillValidations, since: datetime,
    found: Checked, stand_in: str | None,
) -> dict[str, str]:  # fmt: skip
    """The PostgreSQL checks, recorded in ``found``; the environment smoke commands get."""
    from drplan.sources.postgres.cluster import connect  # noqa: PLC0415

    connection = stand_in or system.connection
    where = "in production" if stand_in is None else "stand-in"
    try:
        password = system.password.resolve() if system.password else None
        with connect(connection, password, name) as conn:
            row = conn.execute(
                "select pg_is_in_recovery(), pg_last_xact_replay_timestamp()"
            ).fetchone()
            assert row is not None
            in_recovery, newest = bool(row[0]), row[1]
            found.newest = newest if isinstance(newest, datetime) else None
            found.validations.append(Validation(
                where, "connection", "failed" if in_recovery else "passed", 0.0,
                "still in recovery" if in_recovery else "accepts writes: out of recovery",
            ))  # fmt: skip
            point = found.newest or since
            for check in checks.sql:
                found.validations.append(
                    timed(check.name, "sql", partial(sql_check, conn, check, point, since))
                )
    except DrplanError as exc:
        found.validations.append(Validation(where, "connection", "failed", 0.0, exc.message))
        return {}
    return libpq_env(connection, password)


def _checks_of(plan: Plan, system: str) -> DrillValidations:
    """The checks of the first drill that recovers ``system`` (a database drill first)."""
    drills = sorted(plan.drills.values(), key=lambda d: d.kind != "database")
    for drill in drills:
        if system in drill.systems:
            return drill.validations
    return DrillValidations(amcheck=False, checksums=False)


def stop_clocks(
    service: Incidents, incident: Incident, step: StepState, plan: Plan,
    now: Callable[[], datetime] = clock.now,
) -> list[Event]:  # fmt: skip
    """After ``step`` succeeded: check each affected system it recovers, and stop its clock
    when the checks pass (the events recorded, in order, to the journal: the caller
    brings the catalog and the off-site copies up to date)."""
    events = []
    stand_ins = stand_ins_of(plan, incident.id) if incident.declared.get("rehearsal") else {}
    for system in step.recovers:
        if system not in incident.systems or system in incident.recovered:
            continue
        spec = plan.systems[system]
        stand_in = stand_ins.get(system)
        connection = (stand_in.connection(spec.connection)
                      if stand_in is not None and isinstance(spec, PostgresSystem) else None)  # fmt: skip
        checked = check_recovered(plan, system, incident.since, connection)
        kind, data = checked.event(step.id, incident.since, now())
        # The catalog and the off-site copy wait (the caller's): the next system's
        # clock is not kept running by them.
        events.append(service.record(incident.id, kind, DRIVER, data, now(), sync=False,
                                     copy=False))  # fmt: skip
    return events

"""What a declaration fixes for the life of an incident: the scenario, its systems and
their objectives, the disaster moment, and the runbook as the plan said it then.

All of it goes into the incident's first event, with the plan file's text (the version
automated steps run against), so that an incident keeps the plan it started with: a plan edited mid-incident (a step reworded, an RTO tightened) changes the
next incident, not this one, and the review judges this one by what responders had.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import UsageError
from drplan.incidents.state import slug
from drplan.incidents.timeline import instant

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.plan.model.response import Step

ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's: no I, L, O, U to misread
ID_LENGTH = 4
DEFAULT_COMMANDER = "incident-commander"
FUTURE_SLACK = timedelta(seconds=60)  # clocks differ a little between hosts


def new_id() -> str:
    """A short id a responder can say on a call: ``INC-7K3Q``."""
    return "INC-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def declaration(
    plan: Plan, plan_path: str, scenario: str, *, systems: list[str] | None,
    since: datetime | None, commander: str | None, note: str | None, rehearsal: bool,
    now: datetime, history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The first event's data; UsageError for an unknown scenario, system or role, a
    scenario without a runbook, or a disaster moment in the future."""
    spec = plan.scenarios.get(scenario)
    if spec is None:
        raise UsageError(f"no scenario {scenario!r} in the plan",
                         hint=_known("scenarios", plan.scenarios))  # fmt: skip
    if spec.runbook is None or spec.runbook not in plan.runbooks:
        raise UsageError(f"scenario {scenario} has no runbook to follow",
                         hint="give it `runbook:` in the plan")  # fmt: skip
    affected = systems if systems else (spec.affects or list(plan.systems))
    for name in affected:
        if name not in plan.systems:
            raise UsageError(f"no system {name!r} in the plan",
                             hint=_known("systems", plan.systems))  # fmt: skip
    commander = commander or (DEFAULT_COMMANDER if DEFAULT_COMMANDER in plan.roles else None)
    if commander is not None and commander not in plan.roles:
        raise UsageError(f"no role {commander!r} in the plan", hint=_known("roles", plan.roles))
    moment = since or now
    if moment > now + FUTURE_SLACK:
        raise UsageError(
            f"--since {clock.rfc3339(moment)} is in the future (it is {clock.rfc3339(now)})",
            hint="give the moment the disaster began, e.g. --since 2026-12-07T03:10:00Z",
        )
    whole = not systems and not spec.affects
    text = Path(plan_path).read_bytes()  # the version automated steps run against
    return {
        "scenario": scenario,
        "title": spec.title,
        "tier": spec.tier,
        "runbook": spec.runbook,
        "systems": affected,
        "whole_platform": whole,
        "recover_from": spec.recover_from,
        "since": instant(moment),  # to the microsecond: a recovery point is taken from it
        "plan": {"path": plan_path, "sha256": hashlib.sha256(text).hexdigest()},
        "plan_text": text.decode("utf-8"),
        "commander": commander,
        "note": note,
        "rehearsal": rehearsal,
        "objectives": {name: _objectives(plan, name) for name in affected},
        "owners": {name: plan.systems[name].owner for name in affected},
        "databases": databases(plan),
        # The variable each one's password is in (never its value): a shell step is given
        # it without the plan's model being built first.
        "database_passwords": database_passwords(plan),
        # Notices due to audiences with a deadline (a regulator's 72 hours), from now.
        "notices": [
            {"audience": name, "due_seconds": spec.deadline.total_seconds()}
            for name, spec in (plan.communication.audiences.items() if plan.communication else [])
            if spec.deadline is not None
        ],
        # What the systems' drills measured before the disaster (they do not change during
        # it): predictions and the review read these, not the catalog.
        "drilled": drilled(history or [], affected, moment),
        "full_platform_rto_seconds": (
            plan.objectives.rto.full_platform.total_seconds() if whole else None
        ),
        "review": list(plan.review.post_incident) if plan.review else [],
        "roles": {
            name: {"title": r.title, "holder": r.holder, "deputy": r.deputy, "phone": r.phone}
            for name, r in plan.roles.items()
        },
        "phases": [
            {
                "name": phase.name,
                "window": [phase.window.start.total_seconds(), phase.window.end.total_seconds()]
                if phase.window else None,
                "steps": [_step(f"{p}.{s}", step) for s, step in enumerate(phase.steps, 1)],
            }
            for p, phase in enumerate(plan.runbooks[spec.runbook].phases, 1)
        ],
    }  # fmt: skip


def databases(plan: Plan) -> dict[str, str]:
    """Each PostgreSQL system's connection, as the plan writes it (references unresolved):
    what a step is told as its target."""
    from drplan.plan.model import PostgresSystem  # noqa: PLC0415

    return {n: s.connection for n, s in plan.systems.items() if isinstance(s, PostgresSystem)}


def database_passwords(plan: Plan) -> dict[str, str | None]:
    """Each PostgreSQL system's password variable (None: it has no password)."""
    from drplan.plan.model import PostgresSystem  # noqa: PLC0415

    return {n: s.password.variable if s.password else None
            for n, s in plan.systems.items() if isinstance(s, PostgresSystem)}  # fmt: skip


def _step(number: str, step: Step) -> dict[str, Any]:
    return {
        "id": number, "slug": slug(step.title), "title": step.title, "owner": step.owner,
        "checklist": step.checklist, "action": step.action, "run": step.run,
        "recovers": step.recovers,
        "timeout": step.timeout.total_seconds() if step.timeout else None,
        "approve": step.approve, "rerun": step.rerun,
    }  # fmt: skip


def _objectives(plan: Plan, system: str) -> dict[str, float | None]:
    classes = plan.systems[system].data_classes
    rpos = [plan.objectives.rpo[c] for c in classes if c in plan.objectives.rpo]
    return {
        "rto_seconds": plan.rto_of(system).total_seconds(),
        "rpo_seconds": min(rpos).total_seconds() if rpos else None,
    }


def _known(what: str, names: Any) -> str:
    return f"the plan's {what}: {', '.join(sorted(names)) or '(none)'}"


def declared_plan(declared: dict[str, Any]) -> Plan:
    """The plan as the incident was declared with (its first event's copy)."""
    from drplan.plan.loader import load_plan_text  # noqa: PLC0415

    return load_plan_text(declared["plan_text"], declared["plan"]["path"]).plan


HISTORY = 10  # the newest drills of a system that count


def drilled(history: list[dict[str, Any]], systems: list[str], before: datetime
            ) -> dict[str, list[list[Any]]]:  # fmt: skip
    """Per system, its newest measured recoveries before ``before``: [[time, seconds,
    {phases, restored_bytes, wal_bytes}]] (what predictions scale to today's sizes)."""
    from drplan.drills.report import systems_of  # noqa: PLC0415

    found: dict[str, list[list[Any]]] = {name: [] for name in systems}
    for row in sorted(history, key=lambda r: r["started_at"], reverse=True):
        if row["started_at"] >= before:
            continue
        for system in systems_of(row) or []:
            seconds = (system.get("rto") or {}).get("seconds")
            name = str(system.get("system"))
            counted = name in found and system.get("stage") == "recovery"
            if counted and seconds is not None and len(found[name]) < HISTORY:
                size = system.get("size") or {}
                found[name].append([instant(row["started_at"]), float(seconds), {
                    "phases": system.get("phases") or {},
                    "restored_bytes": size.get("restored_bytes"),
                    "wal_bytes": size.get("wal_bytes"),
                }])  # fmt: skip
    return found

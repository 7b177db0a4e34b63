"""Whether the plan's testing schedule is kept: each scheduled drill's last run, next
slot, and whether it is overdue, which is reported like a failing backup. A drill run
only by hand (no schedule, ``manual`` or ``on EVENT``) has no slot and is never overdue.

A drill is overdue when a slot of its schedule passed more than its budget (the time it
may take) and ``GRACE`` ago, and no run of it started since that slot. A drill that has
never run is judged from ``since`` (when the daemon began to watch), so deploying a
plan is not an alarm before its first slot has come and gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan.plan.model import Plan
from drplan.plan.schedule import NeverFiresError

if TYPE_CHECKING:  # the catalog (SQLAlchemy) is imported only where it is used
    from drplan.catalog.store import Catalog

GRACE = timedelta(minutes=15)
EARLY = timedelta(minutes=1)  # a run started just before its slot counts for it


def newest_drills(catalog: Catalog, plan: Plan) -> dict[str, dict[str, Any]]:
    """The newest catalog row of each of the plan's drills that has run."""
    newest = {name: catalog.drills(name, limit=1) for name in plan.drills}
    return {name: rows[0] for name, rows in newest.items() if rows}


def drill_states(
    plan: Plan, last: dict[str, dict[str, Any]], now: datetime, since: datetime | None = None
) -> dict[str, dict[str, Any]]:
    states = {}
    for name, drill in plan.drills.items():
        row = last.get(name)
        started = row["started_at"] if row else None
        state: dict[str, Any] = {
            "kind": drill.kind,
            "schedule": None if drill.schedule is None else str(drill.schedule),
            "last_started": started,
            "last_passed": bool(row["passed"]) if row else None,
            "last_rto_seconds": row["rto_seconds"] if row else None,
            "last_rpo_seconds": row["rpo_seconds"] if row else None,
            "next_run": None,
            "overdue_since": None,
        }
        if drill.schedule is not None and drill.scheduled:
            try:
                upcoming = drill.schedule.next_runs(now, plan.timezone)
                slot = drill.schedule.previous_run(now, plan.timezone)
            except NeverFiresError:
                upcoming, slot = [], None
            state["next_run"] = upcoming[0] if upcoming else None
            systems = plan.drilled_systems(name)
            budget = drill.budget or min((plan.rto_of(s) for s in systems), default=GRACE)
            judged_from = started if started is not None else since
            if (
                slot is not None
                and now - slot > budget + GRACE
                and (started is None or started < slot - EARLY)
                and (judged_from is None or slot > judged_from)
            ):
                state["overdue_since"] = slot
        states[name] = state
    return states

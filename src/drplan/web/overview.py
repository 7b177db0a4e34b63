""" "Can we recover right now?": one row per system of the plan, from the daemon's last
assessment of the locations, the catalog's drills and the open incidents.

A row is red when the system cannot be recovered as the plan promises: a data class's
RPO breached, its last drill failed or slower than its RTO, or no drill at all; amber when
something is not known or at risk; green otherwise. Each says why, in words.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.drills.report import Kpis, Recovery, kpis
from drplan.plan.durations import seconds

if TYPE_CHECKING:
    from drplan.plan.model import Plan

RED, AMBER, GREEN = "red", "amber", "green"
DRILLS_FOR_MEDIAN = 5  # the newest drills a system's drilled RTO is the median of
KPI_DAYS = 90


@dataclass
class DataClassRow:
    name: str
    objective_seconds: float
    exposure_seconds: float | None
    status: str  # ok, at_risk, breached, unknown
    newest: dict[str, str | None]  # location: its newest good point


@dataclass
class SystemRow:
    name: str
    tier: str
    rto_seconds: float
    last_drill: dict[str, Any] | None
    drilled_median_seconds: float | None
    kpis: Kpis | None = None  # its recoveries of the last KPI_DAYS against the criteria
    data_classes: list[DataClassRow] = field(default_factory=list)
    verdict: str = GREEN
    why: list[str] = field(default_factory=list)

    def worse(self, verdict: str, why: str) -> None:
        order = (GREEN, AMBER, RED)
        if order.index(verdict) > order.index(self.verdict):
            self.verdict = verdict
        self.why.append(why)


def overview(plan: Plan, status: dict[str, Any] | None, drills: list[dict[str, Any]],
             recovered: list[Recovery] | None = None, now: datetime | None = None,
             ) -> list[SystemRow]:  # fmt: skip
    """The rows, in the plan's order of systems. ``drills``: the catalog's drill rows,
    any order; ``status``: the daemon's assessment (None: not here); ``recovered``: the
    recoveries (drills' and incidents') the KPIs of each system count, until ``now``."""
    runs_of = runs_by_system(plan, sorted(drills, key=lambda d: d["started_at"], reverse=True))
    since = (now or clock.now()) - timedelta(days=KPI_DAYS)
    by_system: dict[str, list[Recovery]] = {}
    for r in recovered or []:
        if r.at >= since:
            by_system.setdefault(r.system, []).append(r)
    rows = []
    for name, system in plan.systems.items():
        runs = runs_of.get(name, [])
        times = [d["rto_seconds"] for d in runs[:DRILLS_FOR_MEDIAN] if d["rto_seconds"] is not None]
        row = SystemRow(name, system.tier.value, float(seconds(plan.rto_of(name))),
                        runs[0] if runs else None,
                        statistics.median(times) if times else None)  # fmt: skip
        _judge_drills(row)
        if recovered is not None:
            row.kpis = kpis(plan, by_system.get(name, []))
            missed = [k.replace("_", " ") for k, met in row.kpis.met.items() if not met]
            if missed:
                row.worse(
                    AMBER, f"below the success criteria over {KPI_DAYS} days: {', '.join(missed)}"
                )
        for data_class in system.data_classes:
            row.data_classes.append(_data_class(plan, data_class, status, row))
        rows.append(row)
    return rows


def runs_by_system(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per system, the drill runs of ``rows`` that recovered it (a drill of the plan naming
    no systems recovers them all), in the order given."""
    covers = {name: plan.drilled_systems(name) for name in plan.drills}
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for system in covers.get(row["drill"], ()):
            found.setdefault(system, []).append(row)
    return found


def _judge_drills(row: SystemRow) -> None:
    if row.last_drill is None:
        row.worse(RED, "never drilled: its RTO is a hope, not a measurement")
        return
    if not row.last_drill["passed"]:
        row.worse(RED, f"its last drill ({row.last_drill['drill']}) failed")
    if row.drilled_median_seconds is not None and row.drilled_median_seconds > row.rto_seconds:
        row.worse(RED, f"drilled in {row.drilled_median_seconds:.0f} s (median), over its RTO"
                  f" of {row.rto_seconds:.0f} s")  # fmt: skip


def _data_class(plan: Plan, name: str, status: dict[str, Any] | None,
                row: SystemRow) -> DataClassRow:  # fmt: skip
    objective = plan.objectives.rpo.get(name)
    found = (status or {}).get("data_classes", {}).get(name)
    exposures = [e for e in (status or {}).get("exposures", []) if e["data_class"] == name]
    out = DataClassRow(
        name, float(seconds(objective)) if objective is not None else 0.0,
        found["exposure_seconds"] if found else None, found["status"] if found else "unknown",
        {e["location"]: e["newest_point"] for e in exposures},
    )  # fmt: skip
    if status is None:
        row.worse(AMBER, f"{name}: no assessment here (the daemon's is where it runs)")
    elif out.status == "breached":
        row.worse(RED, f"{name}: RPO breached, {out.exposure_seconds or 0:.0f} s of data at"
                  f" risk against {out.objective_seconds:.0f} s")  # fmt: skip
    elif out.status in ("at_risk", "unknown"):
        row.worse(AMBER, f"{name}: RPO {out.status.replace('_', ' ')}")
    return out


def newest(at: str | None, now: datetime) -> str:
    """An RFC 3339 instant as how long ago it is."""
    if at is None:
        return "none"
    then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    ago = (now - then).total_seconds()
    return (
        f"{ago:.0f} s ago"
        if ago < 120
        else f"{ago / 60:.0f} min ago"
        if ago < 7200
        else (f"{ago / 3600:.1f} h ago")
    )

"""The dashboard's history pages: each drill's runs with their trend against the RTO,
and the KPIs per window and source against the success criteria.

The trend is drawn on the server as an inline SVG (no script, nothing fetched): a
drill's measured RTO per run, oldest to newest, against the objective it must meet (the
smallest RTO of the systems it recovers), failed runs marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drplan.plan.durations import seconds

if TYPE_CHECKING:
    from drplan.plan.model import Plan

RUNS_SHOWN = 50
WIDTH, HEIGHT, PAD = 600, 160, 8


@dataclass
class DrillHistory:
    name: str
    kind: str
    objective_seconds: float | None
    runs: list[dict[str, Any]]  # the newest first
    points: list[tuple[float, float, bool]]  # x, y, passed: oldest first
    objective_y: float | None

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


def drill_histories(plan: Plan, rows: list[dict[str, Any]]) -> list[DrillHistory]:
    """One history per drill of the plan, from the catalog's rows (newest first)."""
    found = []
    for name, drill in plan.drills.items():
        runs = [r for r in rows if r["drill"] == name][:RUNS_SHOWN]
        systems = plan.drilled_systems(name)
        objective = min((float(seconds(plan.rto_of(s))) for s in systems), default=None)
        timed = [r for r in reversed(runs) if r["rto_seconds"] is not None]
        top = max([*(r["rto_seconds"] for r in timed), objective or 0.0, 1.0]) * 1.1
        step = (WIDTH - 2 * PAD) / max(len(timed) - 1, 1)

        def y(value: float, top: float = top) -> float:
            return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

        points = [(PAD + n * step, y(r["rto_seconds"]), bool(r["passed"]))
                  for n, r in enumerate(timed)]  # fmt: skip
        found.append(DrillHistory(name, drill.kind, objective, runs, points,
                                  y(objective) if objective is not None else None))  # fmt: skip
    return found


def when(at: datetime | str | None) -> str:
    if at is None:
        return "-"
    text = at if isinstance(at, str) else at.isoformat()
    return text.replace("T", " ")[:16] + " UTC"

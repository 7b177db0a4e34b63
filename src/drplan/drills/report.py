"""What the drills have shown over time: every run, each system's restore times as a
trend, and the plan's recovery KPIs against its success criteria.

A **recovery** is one system recovered by one drill run (its first recovery; the later
stages of a scenario are not counted twice), or by one real incident
(``incidents.outcomes``). Over rolling windows (30, 90 and 365 days) the KPIs are the
share of recoveries that finished within their RTO, that lost no more than their RPO,
and that passed every validation (data integrity), overall (drills and incidents
together), per source (``source:drill``, ``source:incident``), per tier and per data
class; each is held against the plan's ``success_criteria``. The figures
come from the catalog (each row holds the run's whole result; older rows point to their
evidence file); a run whose details are gone counts with what its row's figures say.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from drplan import clock
from drplan.plan.model import Plan
from drplan.render import html_page

DRILL_TITLE = "Drill report"
KPI_TITLE = "Recovery KPI report"
WINDOWS = {"30d": timedelta(days=30), "90d": timedelta(days=90), "365d": timedelta(days=365)}
KPI_SPAN = max(WINDOWS.values())


@dataclass(frozen=True)
class Recovery:
    """One system recovered by one drill run."""

    at: datetime
    drill: str
    system: str
    rto_met: bool
    rpo_met: bool
    intact: bool
    rto_seconds: float | None
    rpo_seconds: float | None
    source: str = "drill"  # or "incident"


@dataclass
class Kpis:
    recoveries: int = 0
    within_rto: float | None = None  # fractions of recoveries
    within_rpo: float | None = None
    integrity: float | None = None
    met: dict[str, bool] = field(default_factory=dict)  # against the success criteria


def recoveries(rows: list[dict[str, Any]]) -> list[Recovery]:
    """The recoveries of the drill runs in ``rows`` (catalog rows), oldest first."""
    found = []
    for row in rows:
        systems = systems_of(row)
        if systems is None:  # evidence gone: the row's figures, as one recovery
            found.append(Recovery(row["started_at"], row["drill"], "?", bool(row["rto_met"]),
                                  bool(row["rpo_met"]), bool(row["integrity"]),
                                  row["rto_seconds"], row["rpo_seconds"]))  # fmt: skip
            continue
        for system in systems:
            if system.get("stage", "recovery") != "recovery":
                continue
            rto, rpo = system.get("rto") or {}, system.get("rpo") or {}
            intact = system.get("error") is None and all(
                v.get("outcome") != "failed" for v in system.get("validations", [])
            )
            found.append(Recovery(row["started_at"], row["drill"], system["system"],
                                  bool(rto.get("met")), bool(rpo.get("met")), intact,
                                  rto.get("seconds"), rpo.get("seconds")))  # fmt: skip
    return sorted(found, key=lambda r: r.at)


def systems_of(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A run's systems: from the catalog's copy of its result, else its evidence file."""
    try:
        if row.get("result"):
            text = row["result"]
        elif row.get("evidence"):
            text = Path(row["evidence"]).read_text()
        else:
            return None
        systems: list[dict[str, Any]] = json.loads(text)["systems"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(systems, list) or not all(isinstance(s, dict) for s in systems):
        return None  # not a result drplan wrote: the row's own figures stand
    return systems


def kpis(plan: Plan, found: list[Recovery]) -> Kpis:
    out = Kpis(len(found))
    if not found:
        return out
    out.within_rto = sum(r.rto_met for r in found) / len(found)
    out.within_rpo = sum(r.rpo_met for r in found) / len(found)
    out.integrity = sum(r.intact for r in found) / len(found)
    criteria = plan.success_criteria
    out.met = {
        "rto_achievement": out.within_rto >= criteria.rto_achievement,
        "rpo_achievement": out.within_rpo >= criteria.rpo_achievement,
        "data_integrity": out.integrity >= criteria.data_integrity,
    }
    return out


def current_kpis(
    plan: Plan, rows: list[dict[str, Any]], now: datetime, incidents: list[Recovery] | None = None
) -> dict[str, Any]:
    """The KPI table from the catalog's rows of the last year and the incidents' recoveries
    (for /metrics)."""
    return kpi_table(plan, _merged(recoveries(rows), incidents), now)


def _merged(drilled: list[Recovery], incidents: list[Recovery] | None) -> list[Recovery]:
    return sorted([*drilled, *(incidents or [])], key=lambda r: r.at)


def kpi_table(plan: Plan, found: list[Recovery], now: datetime) -> dict[str, Any]:
    """KPIs per window: overall, per tier and per data class."""
    table: dict[str, Any] = {}
    for window, span in WINDOWS.items():
        recent = [r for r in found if r.at >= now - span]
        groups: dict[str, list[Recovery]] = {"all": recent}
        for r in recent:
            groups.setdefault(f"source:{r.source}", []).append(r)
            system = plan.systems.get(r.system)
            if system is None:
                continue
            groups.setdefault(f"tier:{system.tier.value}", []).append(r)
            for data_class in system.data_classes:
                groups.setdefault(f"class:{data_class}", []).append(r)
        table[window] = {name: vars(kpis(plan, group)) for name, group in groups.items()}
    return table


def trends(found: list[Recovery]) -> dict[str, dict[str, Any]]:
    """Per system: its measured RTOs oldest first, and how the last compares with the
    median of the ones before it."""
    by_system: dict[str, list[Recovery]] = {}
    for r in found:
        if r.rto_seconds is not None and r.system != "?":
            by_system.setdefault(r.system, []).append(r)
    out = {}
    for system, runs in sorted(by_system.items()):
        times = [float(r.rto_seconds or 0.0) for r in runs]
        before = times[:-1]
        change = (
            (times[-1] / statistics.median(before) - 1)
            if before and statistics.median(before)
            else None
        )
        out[system] = {
            "rto_seconds": [round(t, 3) for t in times],
            "at": [clock.rfc3339(r.at) for r in runs],
            "median_seconds": round(statistics.median(times), 3),
            "last_seconds": round(times[-1], 3),
            "change_from_median": None if change is None else round(change, 3),
        }
    return out


def report(
    plan: Plan, rows: list[dict[str, Any]], now: datetime, *, runs: bool = True,
    incidents: list[Recovery] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The drill report: runs (newest first), restore-time trends, KPIs; without ``runs``,
    the plan's recovery KPI report (trends and KPIs only). ``incidents``: the recoveries
    of real incidents, counted in the KPIs beside the drills (trends are the drills')."""
    drilled = recoveries(rows)
    found = _merged(drilled, incidents)
    data: dict[str, Any] = {
        "title": DRILL_TITLE if runs else KPI_TITLE,
        "time": clock.rfc3339(now),
        "trends": trends(drilled),
        "kpis": kpi_table(plan, found, now),
        "success_criteria": {
            "rto_achievement": plan.success_criteria.rto_achievement,
            "rpo_achievement": plan.success_criteria.rpo_achievement,
            "data_integrity": plan.success_criteria.data_integrity,
        },
    }
    if runs:
        data["runs"] = [_run(r) for r in rows]
    return data


def _run(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "drill": row["drill"],
        "kind": row.get("kind"),
        "run": row.get("run"),
        "started_at": clock.rfc3339(row["started_at"]),
        "passed": bool(row["passed"]),
        "rto_seconds": row["rto_seconds"],
        "rpo_seconds": row["rpo_seconds"],
        "failures": row["summary"] or "",
        "evidence": row["evidence"],
        "sha256": row["sha256"],
    }


def _met(met: dict[str, bool]) -> str:
    if not met:
        return "-"  # no recoveries to judge
    missed = [name for name, ok in met.items() if not ok]
    return "no: " + ", ".join(missed) if missed else "yes"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: the sections ``data`` holds (runs only in a drill report)."""
    lines = [f"# {data['title']} ({data['time']})", "", "## Recovery KPIs", ""]
    goals = data["success_criteria"]
    lines += [
        f"Success criteria: within RTO {_pct(goals['rto_achievement'])}, within RPO"
        f" {_pct(goals['rpo_achievement'])}, data integrity {_pct(goals['data_integrity'])}.",
        "",
        "| window | group | recoveries | within RTO | within RPO | integrity | criteria met |",
        "|---|---|---|---|---|---|---|",
    ]
    for window, groups in data["kpis"].items():
        for group, k in groups.items():
            lines.append(f"| {window} | {group} | {k['recoveries']} | {_pct(k['within_rto'])} |"
                         f" {_pct(k['within_rpo'])} | {_pct(k['integrity'])} | {_met(k['met'])} |")  # fmt: skip
    lines += _trends(data["trends"])
    if "runs" in data:
        lines += _runs(data["runs"])
    return "\n".join(lines) + "\n"


def _trends(trends: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "## Restore time per system", ""]
    if not trends:
        return [*lines, "No drill has measured a restore time yet."]
    lines += ["| system | drills | median | last | change from median | RTOs, oldest first |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for system, t in trends.items():
        change = t["change_from_median"]
        shown = "-" if change is None else f"{change * 100:+.0f}%"
        lines.append(f"| {system} | {len(t['rto_seconds'])} | {_secs(t['median_seconds'])} |"
                     f" {_secs(t['last_seconds'])} | {shown} |"
                     f" {', '.join(_secs(s) for s in t['rto_seconds'])} |")  # fmt: skip
    return lines


def _runs(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Runs", ""]
    if not runs:
        return [*lines, "No drill has run in this period."]
    lines += ["| started | drill | result | RTO | RPO | evidence |", "|---|---|---|---|---|---|"]
    for run in runs:
        # A pipe in a failure's text would split the table's cell.
        failures = str(run["failures"]).replace("|", "\\|")
        result = "passed" if run["passed"] else f"failed: {failures}"
        lines.append(f"| {run['started_at']} | {run['drill']} | {result} |"
                     f" {_secs(run['rto_seconds'])} | {_secs(run['rpo_seconds'])} |"
                     f" {run['evidence']} (sha256 {str(run['sha256'])[:12]}) |")  # fmt: skip
    return lines


def as_html(data: dict[str, Any]) -> str:
    """The markdown report's tables as a self-contained HTML page (no scripts, no fetches)."""
    return html_page(markdown(data), f"{data['title']} ({data['time']})")

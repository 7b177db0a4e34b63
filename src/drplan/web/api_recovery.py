"""The API's view of recoverability: each system's RPO exposure, newest points, location
lag, drills and predicted RTO; the KPIs against the success criteria; a drill's evidence
file for download; and a drill started on demand.

A drill's evidence is served only from the evidence directory (``STATE/drills/evidence``),
by the run's id, never by a name the request gives, and only while its content still has
the SHA-256 the catalog recorded: a catalog row edited to point elsewhere, or a file
changed since, is refused.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from drplan.drills.report import Recovery
from drplan.web.accounts import Principal
from drplan.web.auth import source_of
from drplan.web.context import WebContext
from drplan.web.overview import DRILLS_FOR_MEDIAN, overview, runs_by_system
from drplan.web.problems import Problem
from drplan.web.responses import download, page, respond


def evidence_dir() -> Path:
    from drplan.catalog.paths import state_dir  # noqa: PLC0415

    return Path(state_dir()) / "drills" / "evidence"


def add_recovery(api: APIRouter, ctx: WebContext) -> None:
    """The recoverability routes, on ``api``."""
    read = Depends(ctx.guard.require("viewer", "read"))
    run_drills = Depends(ctx.guard.require("commander", "drills:run"))

    @api.get("/systems", summary="Each system: RPO exposure now, the newest point per"
             " location, the locations' lag, the last drill's RTO and RPO, the predicted RTO.")  # fmt: skip
    def systems(request: Request, who: Principal = read) -> Response:
        return respond(request, {"systems": system_views(ctx), "assessed_at":
                                 (ctx.status() or {}).get("time")})  # fmt: skip

    @api.get("/kpis", summary="The KPIs per window (30, 90, 365 days), overall, per source"
             " (drills, incidents), tier and data class, against the success criteria.")  # fmt: skip
    def kpis(request: Request, who: Principal = read) -> Response:
        return respond(request, kpi_tables(ctx))

    @api.get("/locations/{location}/snapshots", summary="A location's snapshots, the newest"
             " first, of one system or job if asked.")  # fmt: skip
    def snapshots(request: Request, location: str, system: str | None = None,
                  job: str | None = None, limit: int = Query(100, ge=1, le=500),
                  offset: int = Query(0, ge=0), who: Principal = read) -> Response:  # fmt: skip
        plan = ctx.plan_of()
        if location not in plan.locations:
            raise Problem(404, f"no location {location!r} in the plan (its locations:"
                          f" {', '.join(plan.locations)})")  # fmt: skip
        if ctx.open_location is None:
            raise Problem(503, "this server holds no repository password: its snapshots are"
                          " listed where drplan serve runs (or give this one $DRPLAN_PASSWORD)")  # fmt: skip
        repo = ctx.open_location(plan, location)
        found = [s.as_dict() for s in sorted(repo.snapshots(), key=lambda s: s.time, reverse=True)
                 if (system is None or s.system == system) and (job is None or s.job == job)]  # fmt: skip
        return page(request, found, limit, offset)

    @api.get("/report", summary="The recovery KPI report, as `drplan report` makes it: KPIs"
             " of drills and incidents per window, and restore-time trends.")  # fmt: skip
    def kpi_report(request: Request, since: str = Query("365d", description="A duration back."),
                   format: str = Query("json", pattern="^(json|md|html)$"),
                   who: Principal = read) -> Response:  # fmt: skip
        from drplan.drills.report import as_html, markdown, report  # noqa: PLC0415
        from drplan.incidents.outcomes import from_catalog  # noqa: PLC0415
        from drplan.incidents.outcomes import recoveries as incident_recoveries  # noqa: PLC0415
        from drplan.plan.durations import parse_duration  # noqa: PLC0415

        try:
            start = ctx.now() - parse_duration(since)
        except ValueError:
            raise Problem(422, f"since: {since!r} is not a duration (e.g. 90d)") from None
        incidents, _ = from_catalog(ctx.catalog, start)
        data = report(ctx.plan_of(), ctx.catalog.drills(since=start, limit=100_000), ctx.now(),
                      runs=False, incidents=incident_recoveries(incidents))  # fmt: skip
        if format == "json":
            return respond(request, data)
        return download(as_html(data) if format == "html" else markdown(data), format,
                        "recovery-report")  # fmt: skip

    @api.get("/drills/{run}/evidence", summary="A drill run's evidence file (JSON), as written.")
    def evidence(request: Request, run: str, who: Principal = read) -> Response:
        path, digest = _evidence(ctx, run)
        headers = {"Content-Disposition": f'attachment; filename="{path.name}"',
                   "X-Content-SHA256": digest}  # fmt: skip
        return Response(path.read_bytes(), media_type="application/json", headers=headers)

    @api.get("/drills/{run}/evidence.sha256", summary="The evidence file's SHA-256, in"
             " `sha256sum` format (`sha256sum -c` checks the download).")  # fmt: skip
    def evidence_sum(request: Request, run: str, who: Principal = read) -> Response:
        path, digest = _evidence(ctx, run)
        return Response(f"{digest}  {path.name}\n", media_type="text/plain")

    @api.post("/drills/{drill}/runs", status_code=202,
              summary="Start a drill of the plan now (commander; drills:run).")  # fmt: skip
    def run_drill(request: Request, drill: str, who: Principal = run_drills) -> Response:
        plan = ctx.plan_of()
        if drill not in plan.drills:
            raise Problem(404, f"no drill {drill!r} in the plan (its drills:"
                          f" {', '.join(plan.drills) or 'none'})")  # fmt: skip
        log = evidence_dir().parent / "started"
        log.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = (log / f"{drill}.log").open("ab")
        # Its own session: the drill outlives the request, and a stop of this server.
        child = subprocess.Popen([sys.executable, "-m", "drplan", "--plan", ctx.plan_path,
                                  "drill", "run", drill, "--json"], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=out, start_new_session=True,
                                 env={**os.environ, "DRPLAN_PROGRESS_INTERVAL": "off"})  # fmt: skip
        out.close()
        ctx.record(who, "drill.run", source_of(request), drill=drill, pid=child.pid)
        return respond(request, {"drill": drill, "pid": child.pid, "runs":
                                 f"/api/v1/drills?drill={drill}"}, status=202)  # fmt: skip


def system_views(ctx: WebContext) -> list[dict[str, Any]]:
    """The overview's rows, with each location's lag and the drills' figures."""
    plan, status = ctx.plan_of(), ctx.status()
    drills = ctx.catalog.drills()
    lag = {
        name: loc.get("lagging", {}) for name, loc in (status or {}).get("locations", {}).items()
    }
    found = []
    runs_of = runs_by_system(plan, sorted(drills, key=lambda d: d["started_at"], reverse=True))
    for row in overview(plan, status, drills, recovered(ctx, drills), ctx.now()):
        view = asdict(row)
        runs = runs_of.get(row.name, [])
        times = [d["rto_seconds"] for d in runs[:DRILLS_FOR_MEDIAN] if d["rto_seconds"] is not None]
        view["last_drill"] = ({k: runs[0][k] for k in ("run", "drill", "started_at", "passed",
                                                       "rto_seconds", "rpo_seconds")}
                              if runs else None)  # fmt: skip
        view["predicted_rto"] = ({"median_seconds": statistics.median(times),
                                  "worst_seconds": max(times), "drills": len(times),
                                  "scaled": False} if times else None)  # fmt: skip
        jobs = [n for n, j in plan.jobs.items() if j.system == row.name]
        view["location_lag_seconds"] = {loc: {j: s for j, s in held.items() if j in jobs}
                                        for loc, held in lag.items()}  # fmt: skip
        found.append(view)
    return found


def recovered(ctx: WebContext, drills: list[dict[str, Any]]) -> list[Recovery]:
    """Every recovery the KPIs count: of the drill runs ``drills`` and of the incidents
    that are over, of the last year, oldest first."""
    from drplan.drills.report import KPI_SPAN, recoveries  # noqa: PLC0415
    from drplan.incidents.outcomes import from_catalog  # noqa: PLC0415
    from drplan.incidents.outcomes import recoveries as incident_recoveries  # noqa: PLC0415

    incidents, _ = from_catalog(ctx.catalog, ctx.now() - KPI_SPAN)
    return sorted([*recoveries(drills), *incident_recoveries(incidents)], key=lambda r: r.at)


def kpi_tables(ctx: WebContext) -> dict[str, Any]:
    """The KPI tables from the drills and the incidents that are over."""
    from drplan.drills.report import KPI_SPAN, kpi_table  # noqa: PLC0415

    plan, now = ctx.plan_of(), ctx.now()
    found = recovered(ctx, ctx.catalog.drills(since=now - KPI_SPAN))
    return {"criteria": plan.success_criteria.model_dump(mode="json"),
            "windows": kpi_table(plan, found, now)}  # fmt: skip


def _evidence(ctx: WebContext, run: str) -> tuple[Path, str]:
    """The evidence file of drill run ``run`` and its SHA-256, only from the evidence
    directory and only while unchanged; else 404 (nothing said of what is elsewhere)."""
    row = next((d for d in ctx.catalog.drills() if d["run"] == run), None)
    if row is None or not row.get("evidence"):
        raise Problem(404, f"no drill run {run!r} with evidence here")
    home = evidence_dir().resolve()
    path = Path(row["evidence"]).resolve()
    if path.parent != home or not path.is_file():
        raise Problem(404, f"the evidence of drill run {run} is not in this host's evidence"
                      " directory")  # fmt: skip
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if row.get("sha256") and digest != row["sha256"]:
        raise Problem(409, f"the evidence of drill run {run} changed since it was written"
                      " (its SHA-256 differs from the catalog's)")  # fmt: skip
    return path, digest

"""The REST API v1: the plan, job runs, drills, incidents, recoverability (systems, KPIs,
evidence), events that run jobs, and the audit trail, as JSON.

Every route needs credentials (see :mod:`drplan.web.auth`); reads need ``viewer`` and
the ``read`` scope. Lists are paginated (``limit``, ``offset``; a ``Link: rel="next"``
header while there is more) and filterable; every read carries an ``ETag`` and answers
``304`` to an ``If-None-Match`` that matches. Changes are audited.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request, Response

from drplan.web.accounts import Principal
from drplan.web.api_events import add_events
from drplan.web.api_incidents import add_changes
from drplan.web.api_recovery import add_recovery
from drplan.web.context import WebContext
from drplan.web.responses import download, load_incident, page, respond

MAX_LIMIT = 500


def router(ctx: WebContext) -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    read = Depends(ctx.guard.require("viewer", "read"))
    admin = Depends(ctx.guard.require("admin", "admin"))
    limit_q = Query(100, ge=1, le=MAX_LIMIT, description="Items per page.")
    offset_q = Query(0, ge=0, description="Items to skip.")

    @api.get("/me", summary="Who the credentials are, and what they may do.")
    def me(request: Request, who: Principal = read) -> Response:
        return respond(request, {"name": who.name, "roles": list(who.roles),
                                 "access": who.access, "via": who.via,
                                 "scopes": sorted(who.scopes) if who.scopes is not None else None})  # fmt: skip

    @api.get("/plan", summary="The plan (it holds references to secrets, never their values).")
    def plan(request: Request, who: Principal = read) -> Response:
        return respond(request, ctx.plan_of().model_dump(mode="json", exclude_none=True))

    @api.get("/runs", summary="Job runs, the newest first.")
    def runs(request: Request, job: str | None = None, status: str | None = None,
             limit: int = limit_q, offset: int = offset_q, who: Principal = read) -> Response:  # fmt: skip
        found = [asdict(r) for r in ctx.catalog.runs(job, limit=10_000)
                 if status is None or r.status == status]  # fmt: skip
        return page(request, found, limit, offset)

    @api.get("/drills", summary="Drill runs, the newest first, with their measured RTO and RPO.")
    def drills(request: Request, drill: str | None = None, passed: bool | None = None,
               limit: int = limit_q, offset: int = offset_q, who: Principal = read) -> Response:  # fmt: skip
        rows = [{k: v for k, v in row.items() if k != "result"}
                for row in ctx.catalog.drills(drill)
                if passed is None or bool(row["passed"]) == passed]  # fmt: skip
        rows.sort(key=lambda r: r["started_at"], reverse=True)
        return page(request, rows, limit, offset)

    @api.get("/incidents", summary="Every incident, the newest first.")
    def incidents(request: Request, state: str | None = Query(None, pattern="^(open|resolved|closed)$"),
                  limit: int = limit_q, offset: int = offset_q, who: Principal = read) -> Response:  # fmt: skip
        from drplan.incidents.predict import predict  # noqa: PLC0415
        from drplan.incidents.view import status as view  # noqa: PLC0415

        now = ctx.now()
        with ctx.incidents() as service:
            found = [view(i, predict(i, now), now) for i in service.everything()]
        found = [i for i in reversed(found) if state is None or i["status"] == state]
        return page(request, found, limit, offset)

    @api.get("/incidents/{incident}", summary="An incident's RTO clock, phases and steps.")
    def incident(request: Request, incident: str, who: Principal = read) -> Response:
        from drplan.incidents.predict import predict  # noqa: PLC0415
        from drplan.incidents.view import status as view  # noqa: PLC0415

        now = ctx.now()
        with ctx.incidents() as service:
            found = load_incident(service, incident)
            return respond(request, view(found, predict(found, now), now))

    @api.get("/incidents/{incident}/timeline", summary="Every event of an incident, in order.")
    def timeline(request: Request, incident: str, limit: int = limit_q, offset: int = offset_q,
                 who: Principal = read) -> Response:  # fmt: skip
        with ctx.incidents() as service:
            found = load_incident(service, incident)
            events = [e.as_dict() for e in found.events]
        return page(request, events, limit, offset)

    @api.get("/incidents/{incident}/report", summary="The post-incident review: per system"
             " the RTO and RPO achieved against the objectives and the drills, per phase its"
             " span against its window, the notes, action items and lessons.")  # fmt: skip
    def report(request: Request, incident: str,
               format: str = Query("json", pattern="^(json|md|html)$"),
               who: Principal = read) -> Response:  # fmt: skip
        from drplan.incidents.review import review  # noqa: PLC0415
        from drplan.incidents.review_render import as_html, markdown  # noqa: PLC0415

        with ctx.incidents() as service:
            found = load_incident(service, incident)
            data = review(found, ctx.now())
        if format == "json":
            return respond(request, data)
        return download(as_html(data) if format == "html" else markdown(data), format,
                        f"{found.id}-review")  # fmt: skip

    add_changes(api, ctx)
    add_recovery(api, ctx)
    add_events(api, ctx)

    @api.get("/audit", summary="The audit trail, the newest first (admin).")
    def audit(request: Request, limit: int = limit_q, offset: int = offset_q,
              who: Principal = admin) -> Response:  # fmt: skip
        entries = [e.as_dict() for e in ctx.audit.entries()]
        return page(request, list(reversed(entries)), limit, offset)

    return api

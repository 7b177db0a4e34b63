"""The dashboard's pages, rendered on the server (Jinja2, every value escaped): the login,
the overview ("can we recover right now?") and an incident's page with the buttons its
user may press. Assets are in the package (``static/``); nothing is fetched from
elsewhere.

A page without a session sends the browser to the login. A form is refused without the
session's CSRF token in its ``csrf`` field, and a login form from another site (its
``Origin`` not this server) is refused too. The buttons a user sees are the ones their
access allows; the routes behind them check again, as the API's do.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from drplan.errors import DrplanError
from drplan.plan.model.web import Access
from drplan.web.accounts import Principal
from drplan.web.auth import SESSION_COOKIE, source_of
from drplan.web.context import WebContext
from drplan.web.overview import newest, overview
from drplan.web.problems import Problem
from drplan.web.responses import incident_view
from drplan.web.sessions import log_in, set_session_cookie

HERE = Path(__file__).parent
KPI_WINDOW = "90d"


class Dashboard:
    """What every page shares: the templates, the session behind a request, the checks a
    form passes."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True), auto_reload=False)  # fmt: skip

    def render(self, name: str, who: Principal | None, status: int = 200,
               **values: Any) -> HTMLResponse:  # fmt: skip
        open_ones = _open_incidents(self.ctx) if who is not None else []
        plan = self.ctx.plan_of()
        html = self.env.get_template(name).render(
            plan_name=plan.name, who=who, incidents=open_ones, sso=plan.web.oidc is not None,
            **values)  # fmt: skip
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def session(self, request: Request) -> Principal | None:
        who = self.ctx.guard.principal(request)
        return who if who is not None and who.via == "session" else None

    def checked(self, request: Request, csrf: str, needed: Access, scope: str) -> Principal:
        """The session behind a form, when its CSRF token is right and it may."""
        who = self.session(request)
        if who is None:
            raise Problem(401, "log in first")
        if not (who.csrf and hmac.compare_digest(csrf, who.csrf)):
            raise Problem(403, "not allowed: the form lacks the session's CSRF token (reload"
                          " the page and try again)")  # fmt: skip
        if not who.may(needed, scope):
            raise Problem(
                403, f"not allowed: it needs {needed} access; {who.name} has {who.access}"
            )
        return who

    def incident(self, incident: str, who: Principal, error: str | None = None,
                 status: int = 200) -> Response:  # fmt: skip
        from drplan.web.responses import load_incident  # noqa: PLC0415

        with self.ctx.incidents() as service:
            view = incident_view(load_incident(service, incident), self.ctx.now())
        ends = [p["window"]["end_seconds"] for p in view["phases"] if p["window"]]
        span = max([*ends, view["elapsed_seconds"], 1.0])
        return self.render("incident.html", who, status, i=view, span=span, error=error,
                           live=f"incident:{view['id']}",
                           may_respond=who.may("responder", "incidents:write"),
                           may_command=who.may("commander", "incidents:write"))  # fmt: skip


def to_login(request: Request) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def add_pages(app: FastAPI, ctx: WebContext) -> Dashboard:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    dash = Dashboard(ctx)
    _add_views(app, ctx, dash)
    _add_forms(app, ctx, dash)
    return dash


def safe_next(target: str) -> str:
    """Where to go after a login: a path of this server only, never another site."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def _add_views(app: FastAPI, ctx: WebContext, dash: Dashboard) -> None:
    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:
        return dash.render("login.html", None, next=safe_next(next))

    @app.post("/login", include_in_schema=False)
    def login_form(request: Request, name: str = Form(...), password: str = Form(...),
                   next: str = "/") -> Response:  # fmt: skip
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Problem(403, "not allowed: a login from another site")
        try:
            cookie, _who, _csrf = log_in(ctx, request, name, password)
        except Problem as exc:
            return dash.render("login.html", None, exc.status, error=exc.detail,
                               next=safe_next(next))  # fmt: skip
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session_cookie(ctx, request, response, cookie)
        return response

    @app.get("/", include_in_schema=False)
    def overview_page(request: Request) -> Response:
        who = dash.session(request)
        if who is None:
            return to_login(request)
        from drplan.drills.report import kpi_table  # noqa: PLC0415
        from drplan.web.api_recovery import recovered  # noqa: PLC0415

        plan, now = ctx.plan_of(), ctx.now()
        drills = ctx.catalog.drills()
        status = ctx.status()
        found = recovered(ctx, drills)  # read once: the KPIs' table and each row's
        kpis = kpi_table(plan, found, now).get(KPI_WINDOW, {})
        return dash.render("overview.html", who, rows=overview(plan, status, drills, found, now),
                           assessed=status["time"] if status else None, kpis=kpis,
                           kpi_window=KPI_WINDOW, ago=lambda at: newest(at, now),
                           scenarios=plan.scenarios, live="overview",
                           may_declare=who.may("commander", "incidents:write"))  # fmt: skip

    @app.get("/drills", include_in_schema=False)
    def drills_page(request: Request) -> Response:
        who = dash.session(request)
        if who is None:
            return to_login(request)
        from drplan.web.history import HEIGHT, WIDTH, drill_histories, when  # noqa: PLC0415

        histories = drill_histories(ctx.plan_of(), ctx.catalog.drills())
        return dash.render("drills.html", who, histories=histories, when=when, width=WIDTH,
                           height=HEIGHT)  # fmt: skip

    @app.get("/reports", include_in_schema=False)
    def reports_page(request: Request) -> Response:
        who = dash.session(request)
        if who is None:
            return to_login(request)
        from drplan.web.api_recovery import kpi_tables  # noqa: PLC0415

        return dash.render("reports.html", who, **kpi_tables(ctx))

    @app.get("/incidents/{incident}", include_in_schema=False)
    def incident_page(request: Request, incident: str) -> Response:
        who = dash.session(request)
        if who is None:
            return to_login(request)
        return dash.incident(incident, who)


def _add_forms(app: FastAPI, ctx: WebContext, dash: Dashboard) -> None:
    @app.post("/logout", include_in_schema=False)
    def logout_form(request: Request, csrf: str = Form("")) -> Response:
        who = dash.checked(request, csrf, "viewer", "read")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            ctx.accounts.close_session(cookie)
        ctx.record(who, "logout", source_of(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post("/incidents", include_in_schema=False)
    def declare_form(request: Request, scenario: str = Form(""), note: str = Form(""),
                     csrf: str = Form("")) -> Response:  # fmt: skip
        from drplan.incidents.operations import declare  # noqa: PLC0415

        who = dash.checked(request, csrf, "commander", "incidents:write")
        if scenario not in ctx.plan_of().scenarios:
            raise Problem(422, f"scenario: {scenario!r} is not one of the plan's")
        role = _role(who, *who.roles)
        with ctx.incidents(who) as service:
            found, _ = declare(service, ctx.plan_of(), ctx.plan_path, scenario, role,
                               ctx.now(), note=note.strip() or None, systems=None,
                               since=None, commander=None, rehearsal=False)  # fmt: skip
        ctx.record(who, "incident.declare", source_of(request), incident=found.id,
                   scenario=scenario)  # fmt: skip
        return RedirectResponse(f"/incidents/{found.id}", status_code=303)

    @app.post("/incidents/{incident}/steps/{step}", include_in_schema=False)
    def step_form(request: Request, incident: str, step: str, outcome: str = Form(""),
                  csrf: str = Form("")) -> Response:  # fmt: skip
        from drplan.incidents.operations import settle_step  # noqa: PLC0415

        who = dash.checked(request, csrf, "responder", "incidents:write")
        if outcome not in ("done", "skip", "fail"):
            raise Problem(422, "outcome: done, skip or fail")
        try:
            with ctx.incidents(who) as service:
                found = service.load(incident)
                role = _role(who, found.step(step).owner, *who.roles)
                settle_step(service, found, step, outcome, ctx.now(), actor=role)
        except DrplanError as exc:
            return dash.incident(incident, who, exc.message, 409)
        ctx.record(who, "incident.step", source_of(request), incident=found.id, step=step,
                   outcome=outcome)  # fmt: skip
        return RedirectResponse(f"/incidents/{found.id}", status_code=303)

    @app.post("/incidents/{incident}/approvals/{step}", include_in_schema=False)
    def approve_form(request: Request, incident: str, step: str,
                     csrf: str = Form("")) -> Response:  # fmt: skip
        who = dash.checked(request, csrf, "commander", "incidents:write")
        try:
            with ctx.incidents(who) as service:
                found = service.load(incident)
                role = _role(who, found.step(step).approve, found.commander)
                service.approve(found, step, role, ctx.now())
        except DrplanError as exc:
            return dash.incident(incident, who, exc.message, 409)
        ctx.record(who, "incident.approve", source_of(request), incident=found.id, step=step)
        return RedirectResponse(f"/incidents/{found.id}", status_code=303)


def _role(who: Principal, *preferred: str | None) -> str | None:
    """The first of ``preferred`` that ``who`` holds: the role they act in."""
    return next((r for r in preferred if r is not None and r in who.roles), None)


def _open_incidents(ctx: WebContext) -> list[dict[str, Any]]:
    try:
        with ctx.incidents() as service:
            return [incident_view(i, ctx.now()) for i in service.open_ones()]
    except DrplanError:
        return []  # the banner is left out; the page still says what it can

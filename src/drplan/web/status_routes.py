"""The public status page, on the web server: ``/status-page`` for people and the
Statuspage-compatible JSON under ``/api/v2/`` for widgets and monitors. Public (no
login), and computed at most every ``FRESH`` seconds however many read it, so that a
crowd of customers costs the daemon one computation a second."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from drplan.statuspage import formats
from drplan.statuspage.publish import environment, render_page
from drplan.statuspage.state import PageState, page_state
from drplan.web.context import WebContext
from drplan.web.problems import Problem
from drplan.web.responses import respond

FRESH = 1.0  # seconds a computed page is served again


def add_status_page(app: FastAPI, ctx: WebContext) -> None:
    env = environment()
    lock = threading.Lock()
    held: dict[str, Any] = {"at": -FRESH, "state": None}

    def current() -> PageState:
        config = ctx.plan_of().status_page
        if config is None:
            raise Problem(404, "no status page here: the plan has no status_page")
        with lock:
            if time.monotonic() - held["at"] >= FRESH:
                with ctx.incidents() as service:
                    incidents = [service.load(i) for i in service.ids()]
                held["state"], held["at"] = (
                    page_state(config, incidents, ctx.now()),
                    time.monotonic(),
                )
            state: PageState = held["state"]
            return state

    def url(request: Request) -> str:
        return (
            ctx.plan_of().web.url or f"{request.url.scheme}://{request.url.netloc}"
        ) + "/status-page"

    @app.get("/status-page", include_in_schema=False)
    def status_page(request: Request) -> Response:
        html = render_page(env, current(), "/api/v2/summary.json", None)
        return HTMLResponse(html, headers={"Cache-Control": f"public, max-age={int(FRESH)}"})

    @app.get("/api/v2/summary.json", summary="The status page: components, open incidents,"
             " the overall status (public; Statuspage's format).")  # fmt: skip
    def summary(request: Request) -> Response:
        return respond(request, formats.summary(current(), url(request)))

    @app.get("/api/v2/status.json", summary="The overall status (public; Statuspage's format).")
    def status(request: Request) -> Response:
        state = current()
        return respond(request, {"page": formats.page(state, url(request)),
                                 "status": formats.status(state)})  # fmt: skip

    @app.get("/api/v2/components.json", summary="Every component (public; Statuspage's format).")
    def components(request: Request) -> Response:
        state = current()
        return respond(request, {"page": formats.page(state, url(request)),
                                 "components": formats.components(state)})  # fmt: skip

    @app.get("/api/v2/incidents.json", summary="Incidents, the newest first (public;"
             " Statuspage's format).")  # fmt: skip
    def incidents(request: Request) -> Response:
        state = current()
        return respond(request, {"page": formats.page(state, url(request)),
                                 "incidents": [formats.incident(i) for i in state.incidents[:50]]})  # fmt: skip

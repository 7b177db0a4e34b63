"""The application: the public routes (``/healthz``), login and logout, the API v1 and its
OpenAPI document at ``/api/v1/openapi.json``; every error a problem document, every
answer with the headers a page exposed to a company needs (no framing, no sniffing, no
referrer, a strict content policy).

Login answers with a new session every time (``Set-Cookie``: HttpOnly, SameSite=Lax,
Secure unless the server is reached over plain HTTP on loopback) and the session's CSRF
token, which every change made from the session must carry. Failed logins are throttled
per account and per address, and audited.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from drplan.web import problems
from drplan.web.api import router
from drplan.web.auth import SESSION_COOKIE, source_of
from drplan.web.context import WebContext
from drplan.web.live import Changes, looker, stream
from drplan.web.pages import add_pages
from drplan.web.probes import add_probes
from drplan.web.problems import Problem
from drplan.web.responses import respond
from drplan.web.sessions import log_in, set_session_cookie
from drplan.web.sso import add_sso
from drplan.web.status_routes import add_status_page

PUBLIC_PATHS = frozenset({
    "/healthz", "/readyz", "/api/v1/login", "/api/v1/openapi.json",
    "/api/v2/summary.json", "/api/v2/status.json", "/api/v2/components.json",
    "/api/v2/incidents.json",
})  # fmt: skip
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts say `Origin: null`
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'self'",
}


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


def build(ctx: WebContext) -> FastAPI:
    app = FastAPI(
        title="drplan",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )  # fmt: skip - their pages fetch assets from CDNs
    problems.install(app)

    @app.middleware("http")
    async def secure_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.scheme == "https":  # here, or at a trusted proxy: never plain again
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        # The server's own time on it, for a browser's tools and the benchmark.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    add_probes(app, ctx)

    @app.post("/api/v1/login", summary="Log in with a local account: a new session (public).")
    def login(request: Request, body: Login) -> Response:
        cookie, who, csrf = log_in(ctx, request, body.name, body.password)
        response = respond(request, {"name": who.name, "roles": list(who.roles),
                                     "access": who.access, "csrf": csrf})  # fmt: skip
        set_session_cookie(ctx, request, response, cookie)
        return response

    @app.post("/api/v1/logout", summary="End this session.")
    def logout(request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        who = ctx.guard.principal(request)
        if cookie is None or who is None or who.via != "session":
            raise Problem(401, "no session to end")
        if request.headers.get("x-csrf-token") != who.csrf:
            raise Problem(403, "not allowed: the request lacks the session's CSRF token")
        ctx.accounts.close_session(cookie)
        ctx.record(who, "logout", source_of(request))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.include_router(router(ctx))
    dash = add_pages(app, ctx)
    add_sso(app, ctx, dash)
    add_status_page(app, ctx)
    add_live(app, ctx)
    return app


def add_live(app: FastAPI, ctx: WebContext) -> None:
    """``/api/v1/events``: live changes as Server-Sent Events (viewer, read)."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415

    changes = Changes(looker(ctx.catalog, Path(state_dir()) / "incidents", ctx.status))
    app.state.changes = changes  # WebServer.stop ends the streams
    reader = ctx.guard.require("viewer", "read")

    @app.get("/api/v1/events", summary="Live changes as Server-Sent Events: incident, runs,"
             " assessment (viewer, read).")  # fmt: skip
    def events(request: Request) -> Response:
        reader(request)
        return StreamingResponse(stream(changes, request.is_disconnected),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})  # fmt: skip

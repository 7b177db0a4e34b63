"""The public status page, on the web server: ``/status-page`` for people and the
Statuspage-compatible JSON under ``/api/v2/`` for widgets and monitors. Public (no
login), and computed at most every ``FRESH`` seconds however many read it, so that a
crowd of customers costs the daemon one computation a second."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from drplan.statuspage import formats
from drplan.statuspage.feed import atom
from drplan.statuspage.publish import environment, render_page
from drplan.statuspage.state import PageState, page_state
from drplan.web.context import WebContext
from drplan.web.problems import Problem

FRESH = 1.0  # seconds a computed page is served again


def add_status_page(app: FastAPI, ctx: WebContext) -> None:
    env = environment()
    lock = threading.Lock()
    held: dict[str, Any] = {"at": -FRESH, "state": None, "answers": {}}

    def current() -> tuple[PageState, dict[tuple[str, str], tuple[bytes, str]]]:
        """The page's state, and the answers made from it so far (each made once)."""
        config = ctx.plan_of().status_page
        if config is None:
            raise Problem(404, "no status page here: the plan has no status_page")
        with lock:
            if time.monotonic() - held["at"] >= FRESH:
                with ctx.incidents() as service:
                    incidents = service.everything()
                probed, outages = ctx.page_health()
                held["state"] = page_state(config, incidents, ctx.now(), probed, outages)
                held["at"], held["answers"] = time.monotonic(), {}
            return held["state"], held["answers"]

    def made(key: tuple[str, str], make: Callable[[PageState, str], Any]) -> tuple[bytes, str]:
        """The answer ``key`` (its name, the page's base URL) for this state and its ETag,
        made once however many ask."""
        state, answers = current()
        base = key[1]
        if key not in answers:
            found = make(state, base + "/status-page")
            body = found.encode() if isinstance(found, str) else json.dumps(
                found, default=str, sort_keys=True).encode()  # fmt: skip
            answers[key] = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        return answers[key]

    async def answer(request: Request, name: str, make: Callable[[PageState, str], Any]
                     ) -> Response:  # fmt: skip
        """A crowd of customers costs the daemon one rendering a second, not one a
        request: an answer made already is served from the event loop itself (no thread
        of the pool woken for it: the scheduler shares the interpreter); only a new one
        is made in a thread."""
        key = (name, ctx.plan_of().web.url or f"{request.url.scheme}://{request.url.netloc}")
        fresh = time.monotonic() - held["at"] < FRESH
        ready = held["answers"].get(key) if fresh else None
        body, tag = ready if ready is not None else await run_in_threadpool(made, key, make)
        headers = {"ETag": tag, "Cache-Control": f"public, max-age={int(FRESH)}"}
        if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        kind = {"page": "text/html; charset=utf-8", "feed": "application/atom+xml"}.get(
            name, "application/json")  # fmt: skip
        return Response(body, media_type=kind, headers=headers)

    @app.get("/status-page", include_in_schema=False)
    async def status_page(request: Request) -> Response:
        return await answer(request, "page", lambda state, _: render_page(
            env, state, "/api/v2/summary.json", None, "/status-page/history.atom"))  # fmt: skip

    @app.get("/status-page/history.atom", include_in_schema=False)
    async def feed(request: Request) -> Response:
        return await answer(request, "feed", atom)

    @app.get("/api/v2/summary.json", summary="The status page: components, open incidents,"
             " the overall status (public; Statuspage's format).")  # fmt: skip
    async def summary(request: Request) -> Response:
        return await answer(request, "summary", formats.summary)

    @app.get("/api/v2/status.json", summary="The overall status (public; Statuspage's format).")
    async def status(request: Request) -> Response:
        return await answer(request, "status", lambda state, url: {
            "page": formats.page(state, url), "status": formats.status(state)})  # fmt: skip

    @app.get("/api/v2/components.json", summary="Every component (public; Statuspage's format).")
    async def components(request: Request) -> Response:
        return await answer(request, "components", lambda state, url: {
            "page": formats.page(state, url), "components": formats.components(state)})  # fmt: skip

    @app.get("/api/v2/incidents.json", summary="Incidents, the newest first (public;"
             " Statuspage's format).")  # fmt: skip
    async def incidents(request: Request) -> Response:
        return await answer(request, "incidents", lambda state, url: {
            "page": formats.page(state, url),
            "incidents": [formats.incident(i) for i in state.incidents[:50]]})  # fmt: skip

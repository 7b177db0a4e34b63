"""Events from outside that run the plan's jobs scheduled ``on EVENT``: a pipeline's
``POST /api/v1/events/{event}``, and a registry's push notifications at
``POST /api/v1/hooks/registry`` (distribution's envelope, ``events: [{action, target}]``).

Both need a token (or session) with the ``events:write`` scope, answer at once and leave
the run to the daemon's loop (see :mod:`drplan.scheduler.triggers`: a flood of events
queues at most one run per job behind the one running). The webhook answers 200 to
every notification it is allowed to read, fired or not: the registry retries anything
else, holding back the notifications behind it, and a pull is no reason to.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from drplan.errors import UsageError
from drplan.scheduler.triggers import Trigger, jobs_for, listens, pushed_jobs
from drplan.web.accounts import Principal
from drplan.web.auth import source_of
from drplan.web.context import WebContext
from drplan.web.problems import Problem
from drplan.web.responses import respond

ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
MAX_ENVELOPE = 1024 * 1024  # distribution sends a few events at a time, each under 2 KB


class EventBody(BaseModel):
    job: str | None = Field(default=None, max_length=128)


def add_events(api: APIRouter, ctx: WebContext) -> None:
    """The event routes, on ``api``."""
    write = Depends(ctx.guard.require("responder", "events:write"))

    @api.post("/events/{event}", status_code=202,
              summary="Run the jobs scheduled `on EVENT` (only `job`, if given); answered"
              " at once with the jobs queued (responder; events:write).")  # fmt: skip
    def event(request: Request, event: str, body: EventBody | None = None,
              who: Principal = write) -> Response:  # fmt: skip
        job = body.job if body is not None else None
        try:
            names = jobs_for(ctx.plan_of(), event, job)
        except UsageError as exc:
            raise Problem(404, f"{exc.message}; {exc.hint}" if exc.hint else exc.message) from None
        fire = _daemon(ctx)
        now = ctx.now()
        for name in names:
            fire(name, Trigger(event.lower(), "api", now, f"by {who.name}"))
        ctx.record(who, "event.trigger", source_of(request), event=event.lower(), jobs=names)
        return respond(request, {"event": event.lower(), "queued": names,
                                 "runs": [f"/api/v1/runs?job={n}" for n in names]},
                       status=202)  # fmt: skip

    @api.post("/hooks/registry", summary="A registry's notifications (distribution's envelope):"
              " a push of a tag that an images system backs up runs its jobs scheduled"
              " `on deployment` or `on push` (responder; events:write).")  # fmt: skip
    async def registry(request: Request, who: Principal = write) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if kind not in (ENVELOPE, "application/json") or len(body) > MAX_ENVELOPE:
            return respond(request, {"fired": [], "ignored": f"not a notification envelope"
                                     f" ({kind or 'no content type'})"})  # fmt: skip
        try:
            events = json.loads(body).get("events") or []
        except (ValueError, AttributeError):
            return respond(request, {"fired": [], "ignored": "the body is not an envelope"})
        fire = _daemon(ctx)
        plan, now = ctx.plan_of(), ctx.now()
        fired: list[dict[str, Any]] = []
        for item in events if isinstance(events, list) else []:
            target = item.get("target") if isinstance(item, dict) else None
            if item.get("action") != "push" or not isinstance(target, dict):
                continue  # pulls, deletes, mounts: nothing new to back up
            repository, tag = str(target.get("repository") or ""), str(target.get("tag") or "")
            if not repository or not tag:
                continue  # a blob, or a manifest pushed by digest alone: no image yet
            names = pushed_jobs(plan, repository, tag, str(target.get("digest") or ""))
            for name in names:
                event = listens(plan.jobs[name]) or "deployment"
                fire(name, Trigger(event, "webhook", now, f"push {repository}:{tag}"))
            if names:
                fired.append({"repository": repository, "tag": tag, "jobs": names})
        if fired:
            ctx.record(who, "event.webhook", source_of(request), pushes=fired)
        return respond(request, {"fired": fired})


def _daemon(ctx: WebContext) -> Any:
    if ctx.trigger is None:
        raise Problem(503, "no daemon runs in this server (`drplan web` alone): send events to"
                      " the host where `drplan serve` runs, or use `drplan trigger` there")  # fmt: skip
    return ctx.trigger

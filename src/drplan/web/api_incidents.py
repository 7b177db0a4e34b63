"""The API's changes to incidents: declare, steps, approvals, acknowledgements, notes,
updates and resolution, each through the same operations as the CLI
(:mod:`drplan.incidents.operations`), as the logged-in user in a role they hold, and
audited with where it came from."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from drplan.incidents import operations
from drplan.incidents.operations import Said
from drplan.incidents.service import Incidents
from drplan.incidents.state import Incident
from drplan.web.accounts import Principal
from drplan.web.auth import source_of
from drplan.web.context import WebContext
from drplan.web.problems import Problem
from drplan.web.responses import incident_view as _view
from drplan.web.responses import load_incident as _load
from drplan.web.responses import respond

Text = Annotated[str, Field(min_length=1, max_length=10_000)]


class Acting(BaseModel):
    role: str | None = Field(None, description="A role of the plan the user holds, acted in.")


class Declaration(Acting):
    scenario: str
    systems: list[str] | None = Field(None, description="Default: the scenario's.")
    since: datetime | None = Field(None, description="The disaster moment (default: now).")
    commander: str | None = None
    note: Text | None = None
    rehearsal: bool = Field(False, description="A game day: production writes go to stand-ins.")


class StepRecord(Acting):
    outcome: Literal["done", "skip", "fail"]
    item: int | None = Field(None, ge=1, description="A checklist item only.")
    note: Text | None = None
    out_of_order: bool = False


class NoteText(Acting):
    text: Text


class Update(Acting):
    audience: str = "internal"
    message: Text


class Resolution(Acting):
    waive: dict[str, Text] = Field(
        default_factory=dict, description="SYSTEM: why it is not recovered."
    )


def add_changes(api: APIRouter, ctx: WebContext) -> None:
    """The incident-changing routes, on ``api``."""
    respond_ = Depends(ctx.guard.require("responder", "incidents:write"))
    command = Depends(ctx.guard.require("commander", "incidents:write"))

    def act(request: Request, who: Principal, role: str | None, incident: str, action: str,
            do: Callable[[Incidents, Incident], Said | None], **audited: Any) -> Response:  # fmt: skip
        """Do ``do`` to the incident as ``who`` in ``role``, audit it, answer with the
        incident as it now stands and what was done."""
        _holds(who, role)
        with ctx.incidents(who) as service:
            found = _load(service, incident)
            said = do(service, found)
            view = _view(service.load(found.id), ctx.now())
        ctx.record(who, action, source_of(request), incident=found.id, **audited)
        return _done(request, view, said)

    @api.post("/incidents", status_code=201,
              summary="Declare an incident: its RTO clock starts (commander; incidents:write).")  # fmt: skip
    def declare(request: Request, body: Declaration, who: Principal = command) -> Response:
        _holds(who, body.role)
        now = ctx.now()
        with ctx.incidents(who) as service:
            found, said = operations.declare(
                service, ctx.plan_of(), ctx.plan_path, body.scenario, body.role, now,
                systems=body.systems, since=body.since, commander=body.commander,
                note=body.note, rehearsal=body.rehearsal,
            )  # fmt: skip
            view = _view(found, now)
        ctx.record(who, "incident.declare", source_of(request), incident=found.id,
                   scenario=body.scenario)  # fmt: skip
        return _done(request, view, said, 201)

    @api.post("/incidents/{incident}/steps/{step}",
              summary="Record a step done, skipped or failed (responder; incidents:write).")  # fmt: skip
    def step(request: Request, incident: str, step: str, body: StepRecord,
             who: Principal = respond_) -> Response:  # fmt: skip
        return act(request, who, body.role, incident, "incident.step",
                   lambda service, found: operations.settle_step(
                       service, found, step, body.outcome, ctx.now(), item=body.item,
                       note=body.note, actor=body.role, out_of_order=body.out_of_order),
                   step=step, outcome=body.outcome, item=body.item)  # fmt: skip

    @api.post("/incidents/{incident}/notes",
              summary="Add a note to an incident's review (responder; incidents:write).")  # fmt: skip
    def note(request: Request, incident: str, body: NoteText,
             who: Principal = respond_) -> Response:  # fmt: skip
        def write(service: Incidents, found: Incident) -> Said:
            service.note(found, "note", body.text, ctx.now(), actor=body.role)
            return Said([f"{found.id}: noted"])

        return act(request, who, body.role, incident, "incident.note", write)

    @api.post("/incidents/{incident}/approvals/{step}",
              summary="Let a gated step run (commander; incidents:write).")  # fmt: skip
    def approve(request: Request, incident: str, step: str, body: Acting,
                who: Principal = command) -> Response:  # fmt: skip
        def approved(service: Incidents, found: Incident) -> Said:
            service.approve(found, step, body.role, ctx.now())
            return Said([f"{found.id}: step {found.step(step).id} approved"])

        return act(request, who, body.role, incident, "incident.approve", approved, step=step)

    @api.post("/incidents/{incident}/ack",
              summary="Acknowledge the pages: stop their escalation (responder; incidents:write).")  # fmt: skip
    def ack(request: Request, incident: str, body: Acting, who: Principal = respond_) -> Response:
        return act(request, who, body.role, incident, "incident.ack",
                   lambda service, found: operations.acknowledge(service, found, body.role,
                                                                 ctx.now()))  # fmt: skip

    @api.post("/incidents/{incident}/notify",
              summary="Tell an audience where the incident stands (commander; incidents:write).")  # fmt: skip
    def notify(request: Request, incident: str, body: Update,
               who: Principal = command) -> Response:  # fmt: skip
        return act(request, who, body.role, incident, "incident.notify",
                   lambda service, found: operations.notify(service, found, body.audience,
                                                            body.message, body.role),
                   audience=body.audience)  # fmt: skip

    @api.post("/incidents/{incident}/resolve",
              summary="Resolve: every system recovered or waived (commander; incidents:write).")  # fmt: skip
    def resolve(request: Request, incident: str, body: Resolution,
                who: Principal = command) -> Response:  # fmt: skip
        return act(request, who, body.role, incident, "incident.resolve",
                   lambda service, found: operations.resolve(service, found, body.waive,
                                                             body.role, ctx.now()),
                   waived=sorted(body.waive))  # fmt: skip


def _done(request: Request, view: dict[str, Any], said: Said | None, status: int = 200) -> Response:
    """A change's answer: the incident as it now stands, what was done, what was sent."""
    response = respond(request, {"incident": view, "said": said.lines if said else [],
                                 "sent": said.sent if said else []})  # fmt: skip
    response.status_code = status
    return response


def _holds(who: Principal, role: str | None) -> None:
    """A principal acts in a role only if they hold it."""
    if role is not None and role not in who.roles:
        raise Problem(403, f"not allowed: {who.name} does not hold the role {role}"
                      f" (theirs: {', '.join(who.roles) or 'none'})")  # fmt: skip

"""What a responder does to an incident, with everything that follows from it: the same
whether it comes from the CLI or the web API.

- a declaration tells the responders first (the urgent message), then records today's
  backup sizes the predictions scale the drills to, then copies the timeline off site;
- a step recorded done stops the clocks of the systems it recovers once their checks
  pass, and a phase it settles is told at once;
- an acknowledgement or a resolution closes the pages at the pager; a resolution tells
  everyone who was told of the incident that it is over, and ends a rehearsal.

Each returns what it did as ``Said``: lines a person reads (the CLI prints them, the API
returns them) and the outcome of each message sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drplan.errors import DrplanError
from drplan.incidents.view import summary

if TYPE_CHECKING:
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident
    from drplan.plan.model import Plan


@dataclass
class Said:
    lines: list[str] = field(default_factory=list)  # what was done, one line each
    sent: list[dict[str, Any]] = field(default_factory=list)  # each message's outcome

    def delivered(self) -> bool:
        return any(s["delivered"] for s in self.sent)


def copy_off_site(incident: Incident, body: bytes, entries: int) -> list[str]:
    """Store the timeline in each off-site location of the plan the incident was declared
    with; what could not be stored, as warnings (the incident goes on without)."""
    from drplan.incidents.replicas import store  # noqa: PLC0415
    from drplan.locations.storage import storage_for  # noqa: PLC0415
    from drplan.repo.password import read_password  # noqa: PLC0415
    from drplan.repo.repository import Repository  # noqa: PLC0415

    plan = incident.declared_plan()
    places = [name for name, location in plan.locations.items() if location.is_offsite]
    if not places:
        return []
    try:
        secret = read_password(None, plan.repository.password_command)
    except DrplanError as exc:
        return [f"the timeline was not copied off site: {exc.message}"]
    warnings = []
    for name in places:
        try:
            store(Repository.open(storage_for(plan.locations[name]), secret), incident.id, body,
                  entries)  # fmt: skip
        except DrplanError as exc:
            warnings.append(f"the timeline was not copied to {name}: {exc.message}")
    return warnings


def tell(service: Incidents, incident: Incident, audience: str, kind: str,
         message: str | None, actor: str = "drplan") -> Said:  # fmt: skip
    """Deliver one message to ``audience``."""
    from drplan.incidents.messages import Messenger  # noqa: PLC0415

    return Said(sent=Messenger(service, incident.declared_plan()).tell(
        incident, audience, kind, message, actor))  # fmt: skip


def declare(service: Incidents, plan: Plan, plan_path: str, scenario: str, actor: str | None,
            now: datetime, **options: Any) -> tuple[Incident, Said]:  # fmt: skip
    """Open the incident, tell the responders, record today's sizes, copy it off site."""
    incident = service.declare(plan, plan_path, scenario, actor, now, **options)
    said = Said()
    if plan.communication is not None:
        said = tell(service, incident, "internal", "initial", options.get("note"))
        incident = service.load(incident.id)
    record_sizes(service, incident, now)  # after the first message: it is the urgent one
    service.copy_off_site(incident.id)
    return service.load(incident.id), said


def record_sizes(service: Incidents, incident: Incident, now: datetime) -> None:
    """Record today's sizes of the incident's databases, which predictions scale the
    drills to; nothing when none can be read (the predictions say they are unscaled)."""
    from drplan.incidents.sizing import sizes  # noqa: PLC0415
    from drplan.locations.storage import storage_for  # noqa: PLC0415
    from drplan.repo.password import read_password  # noqa: PLC0415
    from drplan.repo.repository import Repository  # noqa: PLC0415

    plan = incident.declared_plan()
    if not incident.declared.get("drilled") or not any(incident.declared["drilled"].values()):
        return  # no drill to scale
    try:
        secret = read_password(None, plan.repository.password_command)
    except DrplanError:
        return
    found, unsized = sizes(plan, incident.systems, lambda ref: contextlib.nullcontext(
        Repository.open(storage_for(plan.locations[ref]), secret)))  # fmt: skip
    if found:
        service.record(incident.id, "sized", "drplan", {"systems": found, "unsized": unsized},
                       now)  # fmt: skip


def settle_step(
    service: Incidents, incident: Incident, ref: str, outcome: str, now: datetime, *,
    item: int | None = None, note: str | None = None, actor: str | None = None,
    out_of_order: bool = False,
) -> Said:  # fmt: skip
    """Record a step (or one checklist item) by hand; a step done that recovers systems
    stops their clocks once their checks pass; a settled phase is told at once."""
    event = service.step(incident, ref, outcome, now, item=item, note=note, actor=actor,
                         out_of_order=out_of_order)  # fmt: skip
    said = Said([f"{incident.id}: {summary(event.kind, event.data)}"])
    settled = incident.step(ref)
    plan = incident.declared_plan()
    if outcome == "done" and item is None and settled.recovers:
        from drplan.incidents.recovered import stop_clocks  # noqa: PLC0415

        for stopped in stop_clocks(service, service.load(incident.id), settled, plan):
            said.lines.append(f"{incident.id}: {summary(stopped.kind, stopped.data)}")
        service.sync(incident.id)
        service.copy_if_due(incident.id)
    if item is None and plan.communication is not None:
        from drplan.incidents.messages import Messenger  # noqa: PLC0415

        # A phase settled by hand is told at once, not at the next `incident run`.
        said.sent += Messenger(service, plan).send_due(service.load(incident.id))
    return said


def acknowledge(service: Incidents, incident: Incident, actor: str | None,
                now: datetime) -> Said:  # fmt: skip
    """Acknowledge every page still waiting, at the pager too."""
    from drplan.incidents.escalate import close_pages  # noqa: PLC0415

    service.warnings += close_pages(service, incident.declared_plan(), incident, "acknowledge")
    event = service.ack(incident, now, actor)
    return Said([f"{incident.id}: acknowledged {', '.join(event.data['keys'])}"])


def notify(service: Incidents, incident: Incident, audience: str, message: str,
           actor: str | None) -> Said:  # fmt: skip
    """An update to ``audience``, as ``actor``."""
    incident.writable()
    return tell(service, incident, audience, "update", message,
                service.actor(actor, incident.roles))  # fmt: skip


def resolve(service: Incidents, incident: Incident, waived: dict[str, str], actor: str | None,
            now: datetime) -> Said:  # fmt: skip
    """Resolve: every affected system recovered or waived. The pages are closed, everyone
    told of it is told it is over (the status page resolved), a rehearsal is ended."""
    from drplan.incidents.escalate import close_pages  # noqa: PLC0415

    service.resolve(incident, waived, now, actor)
    said = Said([f"{incident.id}: resolved"])
    plan = incident.declared_plan()
    service.warnings += close_pages(service, plan, incident, "resolve")
    if plan.communication is not None:
        told = [e.data["audience"] for e in incident.events if e.kind == "message"]
        for audience in ["internal", *dict.fromkeys(a for a in told if a != "internal")]:
            said.sent += tell(service, service.load(incident.id), audience, "resolution",
                              None).sent  # fmt: skip
    if incident.declared.get("rehearsal"):
        from drplan.incidents.rehearsal import finish  # noqa: PLC0415

        said.lines += finish(service, service.load(incident.id), plan, now)
    return said

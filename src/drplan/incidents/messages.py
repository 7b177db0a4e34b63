"""Telling people: an incident's messages, rendered from templates and delivered per
audience through the plan's channels, each delivery (or failure) in the timeline.

Audiences are ``internal`` (the responders: the communication section's primary
channel, then its secondary when the primary fails, then its emergency channel) and
each of the plan's named audiences (customers, partners, vendors, regulators), told on
every channel they list. A channel that fails is retried (the channel's own retries),
the others are still told, and the failure is recorded beside the deliveries.

The messages: ``initial`` at declaration, ``update`` (by hand, with `drplan incident
notify`), ``resolution`` when the incident is resolved. Templates are Jinja2, sandboxed
(a plan's template can read the incident, nothing else), with drplan's defaults unless
the plan's ``communication.templates`` replace them; the first line is the subject.
A ``phone`` channel cannot be called by drplan: its calls go into the timeline as a
task, with the names and numbers to call.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drplan import clock
from drplan.errors import DrplanError, UsageError
from drplan.incidents.service import Incidents
from drplan.incidents.state import Incident
from drplan.incidents.view import span
from drplan.notify.channels import Message, SendError, post_status, send_message
from drplan.plan.model import Plan

INTERNAL = "internal"
DRIVER = "drplan"

DEFAULTS = {
    "initial": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} declared: {{ incident.title }} (tier {{ incident.tier }})
{% if rehearsal %}This is a rehearsal: nothing in production is down.
{% endif %}A {{ incident.title | lower }} began at {{ incident.since }}.
Affected: {% for s in incident.systems %}{{ s.name }} (back by {{ s.deadline }}){% if not loop.last %}, {% endif %}{% endfor %}.
Incident commander: {{ incident.commander or "not named" }}.
{% if message %}{{ message }}
{% endif %}Follow it with: drplan incident status {{ incident.id }}""",
    "update": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} update: {{ incident.title }}
{{ message }}
{% for s in incident.systems %}{{ s.name }}: {% if s.recovered %}recovered{% else %}{{ s.left }} left to its deadline {{ s.deadline }}{% endif %}
{% endfor %}Phase: {{ incident.phase or "all steps settled" }}.""",
    "resolution": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} resolved: {{ incident.title }}
{% for s in incident.systems %}{{ s.name }}: {% if s.recovered %}recovered in {{ s.rto }}{% else %}not recovered{% endif %}
{% endfor %}{% if message %}{{ message }}
{% endif %}A post-incident review follows.""",
}


@dataclass
class Messenger:
    service: Incidents
    plan: Plan  # as declared
    now: Callable[[], datetime] = clock.now
    host: str = socket.gethostname()

    def audiences(self) -> list[str]:
        comm = self.plan.communication
        return [INTERNAL, *(comm.audiences if comm else {})]

    def tell(self, incident: Incident, audience: str, kind: str, message: str | None = None,
             actor: str = DRIVER) -> list[dict[str, Any]]:  # fmt: skip
        """Render ``kind`` for ``audience`` and deliver it; what each channel did."""
        comm = self.plan.communication
        if comm is None:
            raise UsageError("the plan has no communication section: no channel to tell anyone",
                             hint="add `communication:` with a primary channel")  # fmt: skip
        if audience not in self.audiences():
            raise UsageError(f"no audience {audience!r} in the plan",
                             hint=f"its audiences: {', '.join(self.audiences())}")  # fmt: skip
        rehearsal = bool(incident.declared.get("rehearsal"))
        if rehearsal and audience != INTERNAL:
            raise UsageError("a rehearsal tells only the internal audience",
                             hint="--audience internal")  # fmt: skip
        templates: dict[str, str] = {str(k): v for k, v in comm.templates.items()}
        try:
            subject, text = render(templates.get(kind) or DEFAULTS[kind],
                                   context(incident, self.now(), audience, message))  # fmt: skip
        except UsageError as exc:  # the plan's template: said, and recorded as not sent
            failed = {"channel": None, "delivered": False, "error": exc.message}
            self.service.record(incident.id, "message", actor, {
                "audience": audience, "kind": kind, "subject": None, "text": None, **failed,
            }, self.now())  # fmt: skip
            return [failed]
        mail = Message(incident.id, subject, text, self.now(), self.host)
        if audience == INTERNAL:
            chain = [c for c in (comm.primary, comm.secondary, comm.emergency) if c]
            results = self._first_of(chain, mail)
        else:
            results = [self._deliver(name, mail, incident, kind)
                       for name in comm.audiences[audience].channels]  # fmt: skip
        for result in results:
            self.service.record(incident.id, "message", actor, {
                "audience": audience, "kind": kind, "subject": subject, "text": text, **result,
            }, self.now())  # fmt: skip
        return results

    def _first_of(self, chain: list[str], mail: Message) -> list[dict[str, Any]]:
        """Down the chain until one channel delivers: every attempt, in order."""
        results = []
        for name in chain:
            result = self._deliver(name, mail)
            results.append(result)
            if result["delivered"]:
                break
        return results

    def _deliver(self, name: str, mail: Message, incident: Incident | None = None,
                 kind: str = "update") -> dict[str, Any]:  # fmt: skip
        channel = self.plan.channels[name]
        if channel.kind == "status_page" and incident is not None:
            return self._status_page(name, channel, mail, incident, kind)
        if channel.kind == "phone":
            calls = [{"role": r, "holder": self.plan.roles[r].holder, "phone": self.plan.roles[r].phone}
                     for r in channel.call if r in self.plan.roles]  # fmt: skip
            return {"channel": name, "delivered": False, "call_task": calls,
                    "error": "drplan cannot place phone calls: call them, in this order"}  # fmt: skip
        try:
            send_message(name, channel, mail)
        except SendError as exc:
            return {"channel": name, "delivered": False, "error": str(exc)}
        except DrplanError as exc:  # its secret is not set here
            return {"channel": name, "delivered": False, "error": f"channel {name}: {exc.message}"}
        return {"channel": name, "delivered": True}

    def _status_page(self, name: str, channel: Any, mail: Message, incident: Incident,
                     kind: str) -> dict[str, Any]:  # fmt: skip
        """The page's incident opened at the first message, updated after, resolved at the
        resolution: one incident on the page per drplan incident (its id kept in the
        timeline)."""
        opened = [e.data["remote_id"] for e in incident.events if e.kind == "message"
                  and e.data.get("channel") == name and e.data.get("remote_id")]  # fmt: skip
        try:
            remote = post_status(name, channel, mail, kind, int(incident.declared["tier"]),
                                 opened[-1] if opened else None)  # fmt: skip
        except SendError as exc:
            return {"channel": name, "delivered": False, "error": str(exc)}
        except DrplanError as exc:  # its key is not set here
            return {"channel": name, "delivered": False, "error": f"channel {name}: {exc.message}"}
        return {"channel": name, "delivered": True, "remote_id": remote}


def context(incident: Incident, now: datetime, audience: str, message: str | None
            ) -> dict[str, Any]:  # fmt: skip
    """What templates see: the incident as responders and readers need it, no more."""
    current = incident.current_phase()
    systems = []
    for name in incident.systems:
        done = incident.recovered.get(name)
        systems.append({
            "name": name, "deadline": clock.rfc3339(incident.deadline(name)),
            "left": span((incident.deadline(name) - now).total_seconds()),
            "recovered": done is not None, "rto": span(done["rto_seconds"]) if done else None,
        })  # fmt: skip
    return {
        "incident": {
            "id": incident.id, "title": incident.declared["title"],
            "scenario": incident.scenario, "tier": incident.declared["tier"],
            "since": clock.rfc3339(incident.since), "commander": incident.commander,
            "status": incident.status, "systems": systems,
            "phase": current.name if current else None,
        },
        "audience": audience, "message": message or "",
        "rehearsal": bool(incident.declared.get("rehearsal")),
    }  # fmt: skip


def render(template: str, values: dict[str, Any]) -> tuple[str, str]:
    """The subject (first line) and the whole text; UsageError naming what a template
    asked for that is not there."""
    from jinja2 import StrictUndefined, TemplateError  # noqa: PLC0415 - slow to import
    from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415

    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
    try:
        text = env.from_string(template).render(**values).strip()
    except TemplateError as exc:
        raise UsageError(f"a message template failed: {exc}",
                         hint="fix communication.templates in the plan") from None  # fmt: skip
    subject = (text.splitlines() or ["(empty message)"])[0].strip()
    return subject, text

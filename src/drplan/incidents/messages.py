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
drplan's defaults speak to responders (systems, deadlines, phases, the commander), and
to the executive audiences; every other audience is outside (customers, partners,
vendors, regulators) and gets the public ones: the services in the status page's words,
when they began, when they are expected back and which data must be sent again, and
nothing of the incident's insides.
A ``phone`` channel cannot be called by drplan: its calls go into the timeline as a
task, with the names and numbers to call.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.errors import DrplanError, UsageError
from drplan.incidents.service import Incidents
from drplan.incidents.state import Incident
from drplan.incidents.view import span
from drplan.notify.channels import Message, SendError, place_calls, post_status, send_message
from drplan.plan.model import Plan
from drplan.plan.model.statuspage import StatusPage

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
    "tactical": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} tactical update: {{ incident.phase or "every step settled" }}
Done: {% for s in incident.done %}{{ s }}{% if not loop.last %}; {% endif %}{% else %}nothing yet{% endfor %}.
Next: {% for s in incident.next %}{{ s }}{% if not loop.last %}; {% endif %}{% else %}nothing open{% endfor %}.
{% for s in incident.systems %}{{ s.name }}: {% if s.recovered %}recovered in {{ s.rto }}{% else %}{{ s.left }} left to {{ s.deadline }}{% if s.predicted %}, {{ s.predicted }}{% endif %}{% endif %}
{% endfor %}{% if message %}{{ message }}
{% endif %}""",
    "executive": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} executive update: {{ incident.title }}
Impact: {% for s in incident.systems %}{{ s.name }} {% if s.recovered %}back (in {{ s.rto }}){% else %}down{% endif %}{% if not loop.last %}, {% endif %}{% endfor %} since {{ incident.since }} (tier {{ incident.tier }}).
{% for s in incident.systems if not s.recovered %}{{ s.name }}: ETA {{ s.eta or "unknown (never drilled)" }}, deadline {{ s.deadline }}; data loss at most {{ s.data_loss or "unknown" }}.
{% endfor %}Phase: {{ incident.phase or "every step settled" }}; commander {{ incident.commander or "not named" }}.
{% if message %}{{ message }}
{% endif %}""",
    "resolution": """\
{% if rehearsal %}[REHEARSAL] {% endif %}Incident {{ incident.id }} resolved: {{ incident.title }}
{% for s in incident.systems %}{{ s.name }}: {% if s.recovered %}recovered in {{ s.rto }}{% else %}not recovered{% endif %}
{% endfor %}{% if message %}{{ message }}
{% endif %}A post-incident review follows.""",
}

# What an audience outside gets by default: what a customer can act on, in the status
# page's words (its components' titles), never a system, a role or a command.
PUBLIC = {
    "initial": """\
Service disruption: {{ public.services }}
We are investigating a disruption of {{ public.services }} that began at {{ public.since }} UTC.
{% if public.eta %}We expect it back by {{ public.eta }} UTC.
{% endif %}{% if public.data_loss %}{{ public.data_loss }}.
{% endif %}{% if message %}{{ message }}
{% endif %}We will keep you informed.""",
    "update": """\
Update: {{ public.services }}
{% if message %}{{ message }}
{% endif %}{% if public.back %}{{ public.services }}: back, and watched closely.{% else %}We are restoring {{ public.services }}{% if public.eta %}, expected back by {{ public.eta }} UTC{% endif %}.{% endif %}
{% if public.data_loss %}{{ public.data_loss }}.{% endif %}""",
    "resolution": """\
Resolved: {{ public.services }}
{% if message %}{{ message }}
{% endif %}{{ public.services }}: the disruption is over.
{% if public.data_loss %}{{ public.data_loss }}.
{% endif %}We will publish what happened and what we change.""",
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

    def send_due(self, incident: Incident) -> list[dict[str, Any]]:
        """The updates that are due, sent: a tactical one to the internal audience and an
        executive one to each `executive` audience, when a phase was settled since the
        last tactical update or `update_every` has passed, and at a phase change a public
        one to the status page's audience (a rehearsal tells only the internal audience);
        what each channel did."""
        comm = self.plan.communication
        if comm is None or incident.status != "open":
            return []
        current = incident.current_phase()
        number = current.number if current else len(incident.phases) + 1
        last = next((e for e in reversed(incident.events) if e.kind == "message"
                     and e.data.get("kind") == "tactical"), None)  # fmt: skip
        changed = number != (last.data.get("phase", 1) if last else 1)
        since = last.at if last else incident.declared_at
        every = comm.update_every
        if not changed and (every is None or self.now() - since < every):
            return []
        results = [{**r, "audience": INTERNAL}
                   for r in self.tell(incident, INTERNAL, "tactical", extra={"phase": number})]  # fmt: skip
        if not incident.declared.get("rehearsal"):
            for audience in comm.executive:
                results += [{**r, "audience": audience} for r in self.tell(
                    self.service.load(incident.id), audience, "executive", extra={"phase": number})]  # fmt: skip
            page = self.plan.status_page
            if (
                changed
                and page is not None
                and page.audience
                and page.audience not in comm.executive
            ):
                # The status page's audience hears of each phase change: the page's update.
                results += [{**r, "audience": page.audience} for r in self.tell(
                    self.service.load(incident.id), page.audience, "update", extra={"phase": number})]  # fmt: skip
        return results

    def tell(self, incident: Incident, audience: str, kind: str, message: str | None = None,
             actor: str = DRIVER, extra: dict[str, Any] | None = None,
             ) -> list[dict[str, Any]]:  # fmt: skip
        """Render ``kind`` for ``audience`` and deliver it; what each channel did
        (``extra``: more to record with each delivery)."""
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
        try:
            subject, text = render(self._template(kind, audience),
                                   context(incident, self.now(), audience, message,
                                           self.plan.status_page))  # fmt: skip
        except UsageError as exc:  # the plan's template: said, and recorded as not sent
            failed = {"channel": None, "delivered": False, "error": exc.message}
            self.service.record(incident.id, "message", actor, {
                "audience": audience, "kind": kind, "subject": None, "text": None, **failed,
                "said": message, **(extra or {}),
            }, self.now())  # fmt: skip
            return [failed]
        mail = Message(incident.id, subject, text, self.now(), self.host)
        if audience == INTERNAL:
            chain = [c for c in (comm.primary, comm.secondary, comm.emergency) if c]
            results = self._first_of(chain, mail)
        else:
            results = [self._deliver(name, mail, incident, kind)
                       for name in comm.audiences[audience].channels]  # fmt: skip
        # Whether drplan's public wording made it: a status page may show it whole.
        public = self._template(kind, audience) == PUBLIC.get(kind)
        for result in results:
            self.service.record(incident.id, "message", actor, {
                "audience": audience, "kind": kind, "subject": subject, "text": text, **result,
                "said": message, "public": public, **(extra or {}),
            }, self.now())  # fmt: skip
        return results

    def _template(self, kind: str, audience: str) -> str:
        """The plan's template of ``kind``; else drplan's: the public one for an audience
        outside (neither the responders nor an executive audience)."""
        comm = self.plan.communication
        assert comm is not None
        own = {str(k): v for k, v in comm.templates.items()}.get(kind)
        if own:
            return own
        inside = audience == INTERNAL or audience in comm.executive
        return DEFAULTS[kind] if inside or kind not in PUBLIC else PUBLIC[kind]

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
        """One channel's delivery of ``mail``: sent, posted to the status page, or the
        calls placed; what it did. A phone channel that places no call leaves the calls
        as a task for a person."""
        channel = self.plan.channels[name]
        calls = None
        if channel.kind == "phone":
            calls = [{"role": r, "holder": self.plan.roles[r].holder, "phone": self.plan.roles[r].phone}
                     for r in channel.call if r in self.plan.roles]  # fmt: skip
            if channel.webhook_url is None:
                return {"channel": name, "delivered": False, "call_task": calls,
                        "error": "no call service configured: call them, in this order"}  # fmt: skip
        try:
            if channel.kind == "status_page" and incident is not None:
                return {"channel": name, "delivered": True,
                        "remote_id": self._status_page(name, channel, mail, incident, kind)}  # fmt: skip
            if calls is not None:
                place_calls(name, channel, mail, calls)
                return {"channel": name, "delivered": True, "calls": calls}
            send_message(name, channel, mail)
        except (SendError, DrplanError) as exc:  # DrplanError: its secret is not set here
            error = str(exc) if isinstance(exc, SendError) else f"channel {name}: {exc.message}"
            if calls is None:
                return {"channel": name, "delivered": False, "error": error}
            return {"channel": name, "delivered": False, "call_task": calls,
                    "error": f"{error}: call them, in this order"}  # fmt: skip
        return {"channel": name, "delivered": True}

    def _status_page(self, name: str, channel: Any, mail: Message, incident: Incident,
                     kind: str) -> str:  # fmt: skip
        """Post to the status page: the page's incident opened at the first message,
        updated after, resolved at the resolution (one per drplan incident, its id kept in
        the timeline); the page's incident id."""
        opened = [e.data["remote_id"] for e in incident.events if e.kind == "message"
                  and e.data.get("channel") == name and e.data.get("remote_id")]  # fmt: skip
        return post_status(name, channel, mail, kind, int(incident.declared["tier"]),
                           opened[-1] if opened else None)  # fmt: skip


def context(incident: Incident, now: datetime, audience: str, message: str | None,
            page: StatusPage | None = None) -> dict[str, Any]:  # fmt: skip
    """What templates see: the incident as responders and readers need it, no more; and
    ``public``, what an audience outside may read (``page``: the services' public names)."""
    from drplan.incidents.predict import predict  # noqa: PLC0415

    current = incident.current_phase()
    predictions = predict(incident, now)
    systems = []
    etas: dict[str, datetime] = {}
    for name in incident.systems:
        done = incident.recovered.get(name)
        guess = predictions.get(name)
        if guess is not None and guess.median_seconds is not None:
            etas[name] = now + timedelta(seconds=guess.median_seconds)
        eta = clock.rfc3339(etas[name]) if name in etas else None
        budget = incident.declared["objectives"][name]["rpo_seconds"]
        systems.append({
            "name": name, "deadline": clock.rfc3339(incident.deadline(name)),
            "left": span((incident.deadline(name) - now).total_seconds()),
            "recovered": done is not None, "rto": span(done["rto_seconds"]) if done else None,
            "predicted": f"{guess.verdict} by its drills" if guess else None, "eta": eta,
            "data_loss": span(budget) if budget is not None else None,
        })  # fmt: skip
    steps = [s for p in incident.phases for s in p.steps]
    return {
        "incident": {
            "id": incident.id, "title": incident.declared["title"],
            "scenario": incident.scenario, "tier": incident.declared["tier"],
            "since": clock.rfc3339(incident.since), "commander": incident.commander,
            "status": incident.status, "systems": systems,
            "phase": f"phase {current.number} {current.name}" if current else None,
            "done": [f"{s.id} {s.title} ({s.actor})" for s in steps if not s.open],
            "next": [f"{s.id} {s.title} ({s.owner or 'no owner'})"
                     for s in (current.steps if current else []) if s.open],
        },
        "audience": audience, "message": message or "",
        "rehearsal": bool(incident.declared.get("rehearsal")),
        "public": _public(incident, page, etas),
    }  # fmt: skip


def _public(incident: Incident, page: StatusPage | None, etas: dict[str, datetime]
            ) -> dict[str, Any]:  # fmt: skip
    """The incident as the public may read it: the status page's components it touches
    (else "our service"), when it began, when the last of them is expected back (the
    drills' prediction, else the RTO clock's deadline) and the data to send again."""
    from drplan.statuspage.state import clock_words, data_loss_words  # noqa: PLC0415

    systems, titles = list(incident.systems), []
    if page is not None:
        touched = [c for c in page.components.values() if set(c.systems) & set(incident.systems)]
        titles = [c.title for c in touched]
        systems = [s for s in incident.systems if any(s in c.systems for c in touched)] or systems
    down = [s for s in systems if s not in incident.recovered]
    back_by = [etas.get(s) or incident.deadline(s) for s in down]
    return {
        "services": ", ".join(titles) or "our service",
        "since": clock_words(incident.since),
        "eta": clock_words(max(back_by)) if back_by else None,
        "back": not down,
        "data_loss": data_loss_words(incident, systems),
    }


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

"""Escalation: when the RTO clock says the response is late, the people who can act are
paged, one after another, until one acknowledges.

Two things are late:

- a phase whose window has ended with steps still open (``phase-N``): the owner of its
  first open step is paged;
- a system its drills predict will miss its deadline, not yet recovered
  (``deadline-SYSTEM``): the system's owner is paged;
- a notice due to an audience with a deadline (a regulator's 72 hours) not sent in time
  (``notice-AUDIENCE``): the incident commander is paged.

The chain goes on from there: that role's deputy, then the incident commander, then the
commander's deputy, then the plan's ``communication.escalation_contacts`` (vendors,
support contracts): each e-mailed through the plan's e-mail channel when it has an
address, and left as a call task with its number (drplan places no calls). Each page goes to the plan's PagerDuty channels (severity by tier:
critical, error, warning for tiers 1, 2, 3) with a key per incident and lateness, so
pages of one lateness fold into one PagerDuty incident; without a PagerDuty channel it
goes to the internal audience as a message. A page not acknowledged (`drplan incident
ack`) within ``communication.escalate_after`` (15 minutes unless the plan says) goes to
the next role in the chain. Each page, and each acknowledgement, is in the timeline.
This runs whenever the incident is driven (`incident run`; under `serve`, at every
change and every 15 seconds) and with every command that acts on it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.incidents.messages import Messenger
from drplan.incidents.predict import WILL_MISS, Prediction
from drplan.incidents.service import Incidents
from drplan.incidents.state import Incident
from drplan.incidents.timeline import Event
from drplan.notify.channels import Event as Page
from drplan.notify.channels import Message, SendError, send, send_message
from drplan.notify.problems import Problem
from drplan.plan.model import Plan
from drplan.plan.model.alerting import Severity

DRIVER = "drplan"
TIER_SEVERITY = {1: Severity.CRITICAL, 2: Severity.ERROR, 3: Severity.WARNING}
DEFAULT_AFTER = timedelta(minutes=15)
CONTACT = "contact:"  # a chain's external contacts, after the plan's roles


@dataclass(frozen=True)
class Late:
    key: str  # phase-N, deadline-SYSTEM
    reason: str  # one line: what is late
    first: str | None  # the role paged first


@dataclass
class Escalator:
    service: Incidents
    plan: Plan  # as declared
    now: Callable[[], datetime] = clock.now
    host: str = socket.gethostname()

    def check(self, incident: Incident, predictions: dict[str, Prediction]) -> list[Event]:
        """Page whoever is due for each lateness of ``incident``; the events recorded."""
        if incident.status != "open":
            return []
        now = self.now()
        after = self.plan.communication.escalate_after if self.plan.communication else DEFAULT_AFTER
        events = []
        contacts = self.plan.communication.escalation_contacts if self.plan.communication else []
        for late in lateness(incident, predictions, now):
            chain = _chain(incident, late.first) + [f"{CONTACT}{c}" for c in contacts]
            if not chain:
                continue
            held = incident.escalations.get(late.key)
            if held is None:
                level = 0
            elif held["acknowledged"] or held["level"] + 1 >= len(chain):
                continue
            elif now - held["at"] >= after:
                level = held["level"] + 1
            else:
                continue
            events.append(self._page(incident, late, chain[level], level))
        return events

    def _page(self, incident: Incident, late: Late, role: str, level: int) -> Event:
        if role.startswith(CONTACT):
            return self._contact(incident, late, role, level)
        holder = incident.roles.get(role, {})
        who = f"{holder.get('holder', role)} ({role})"
        summary = f"{incident.id} {incident.declared['title']}: {late.reason}; paging {who}"
        data: dict[str, Any] = {"key": late.key, "level": level, "role": role,
                                "reason": late.reason, "pages": []}  # fmt: skip
        # A rehearsal pages nobody: its escalations go to the internal channel, marked.
        pagers = [] if incident.declared.get("rehearsal") else [
            n for n, c in self.plan.channels.items() if c.kind == "pagerduty"
        ]  # fmt: skip
        problem = Problem(
            f"{incident.id}:{late.key}", TIER_SEVERITY[incident.declared["tier"]], summary, None,
            {"incident": incident.id, "role": role, "holder": str(holder.get("holder", "")),
             "phone": str(holder.get("phone") or ""), "reason": late.reason},
        )  # fmt: skip
        for name in pagers:
            try:
                send(
                    name, self.plan.channels[name], Page("trigger", problem, self.now(), self.host)
                )
                data["pages"].append({"channel": name, "delivered": True})
            except (SendError, DrplanError) as exc:
                data["pages"].append({"channel": name, "delivered": False, "error": _why(exc)})
        event = self.service.record(incident.id, "escalated", DRIVER, data, self.now())
        if not pagers and self.plan.communication is not None:
            Messenger(self.service, self.plan, self.now, self.host).tell(
                self.service.load(incident.id), "internal", "update", summary
            )
        return event

    def _contact(self, incident: Incident, late: Late, who: str, level: int) -> Event:
        """Tell an external contact: by e-mail when it has an address and the plan an e-mail
        channel, and always a call task when it has a number."""
        contact = self.plan.contacts[who.removeprefix(CONTACT)]
        data: dict[str, Any] = {"key": late.key, "level": level, "role": who,
                                "reason": late.reason, "pages": []}  # fmt: skip
        mailers = [n for n, c in self.plan.channels.items() if c.kind == "email"]
        if contact.email and mailers:
            name = mailers[0]
            channel = self.plan.channels[name].model_copy(update={"to": [contact.email]})
            subject = (f"{'[REHEARSAL] ' if incident.declared.get('rehearsal') else ''}"
                       f"Incident {incident.id} escalated to {contact.name}")  # fmt: skip
            text = (f"{subject}\n\n{incident.declared['title']} (tier {incident.declared['tier']})"
                    f" since {clock.rfc3339(incident.since)}: {late.reason}. Nobody in our"
                    f" escalation chain has acknowledged it; we need your help.\n\n"
                    f"Incident commander: {incident.commander or '-'}.")  # fmt: skip
            try:
                send_message(name, channel, Message(incident.id, subject, text, self.now(),
                                                    self.host))  # fmt: skip
                data["pages"].append({"channel": name, "delivered": True, "to": contact.email})
            except (SendError, DrplanError) as exc:
                data["pages"].append({"channel": name, "delivered": False, "error": _why(exc)})
        if contact.phone:
            data["call_task"] = [{"contact": contact.name, "phone": contact.phone}]
        return self.service.record(incident.id, "escalated", DRIVER, data, self.now())


def close_pages(service: Incidents, plan: Plan, incident: Incident, action: str,
                host: str = socket.gethostname()) -> list[str]:  # fmt: skip
    """Tell PagerDuty that the incident's pages were acknowledged (``acknowledge``) or that
    it is over (``resolve``); what could not be told, as warnings."""
    warnings = []
    keys = [k for k, e in incident.escalations.items()
            if action == "resolve" or not e["acknowledged"]]  # fmt: skip
    for key in keys:
        problem = Problem(f"{incident.id}:{key}", TIER_SEVERITY[incident.declared["tier"]],
                          incident.escalations[key]["reason"])  # fmt: skip
        for name, channel in plan.channels.items():
            if channel.kind != "pagerduty":
                continue
            try:
                send(name, channel, Page(action, problem, clock.now(), host))
            except (SendError, DrplanError) as exc:
                warnings.append(_why(exc))
    return warnings


def _why(exc: SendError | DrplanError) -> str:
    """A failed page in one line (a secret that is not set here, or the provider's answer)."""
    return exc.message if isinstance(exc, DrplanError) else str(exc)


def lateness(incident: Incident, predictions: dict[str, Prediction], now: datetime
             ) -> list[Late]:  # fmt: skip
    """What is late now: phases past their window with steps open, systems predicted to
    miss their deadline."""
    found = []
    for phase in incident.phases:
        window = incident.window(phase)
        if phase.open and window is not None and now > window[1]:
            step = next(s for s in phase.steps if s.open)
            found.append(Late(f"phase-{phase.number}", f"phase {phase.number} {phase.name} is"
                              f" past its window with step {step.id} {step.title} open",
                              step.owner))  # fmt: skip
    for notice in incident.notices():
        if notice["told_at"] is None and now > notice["due"]:
            found.append(Late(f"notice-{notice['audience']}", f"the {notice['audience']}"
                              f" notice was due {clock.rfc3339(notice['due'])} and is not sent",
                              incident.commander))  # fmt: skip
    for name, found_prediction in predictions.items():
        if found_prediction.verdict == WILL_MISS and name not in incident.recovered:
            owner = incident.declared.get("owners", {}).get(name)
            found.append(Late(f"deadline-{name}", f"{name} will miss its deadline"
                              f" {clock.rfc3339(incident.deadline(name))} by its drills", owner))  # fmt: skip
    return found


def _chain(incident: Incident, first: str | None) -> list[str]:
    """Who is paged, in order: the first role, its deputy, the commander, theirs."""
    roles = incident.roles
    order: list[str] = []
    for role in (first, _deputy(roles, first), incident.commander,
                 _deputy(roles, incident.commander)):  # fmt: skip
        if role is not None and role in roles and role not in order:
            order.append(role)
    return order


def _deputy(roles: dict[str, Any], role: str | None) -> str | None:
    return None if role is None else (roles.get(role) or {}).get("deputy")

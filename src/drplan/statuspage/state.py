"""What the public status page says, from the plan's `status_page` and the incidents.

A component's state is the worst that its systems' open incidents give it, by tier
(tier 1: major outage, 2: partial outage, 3: degraded performance; a system whose clock
stopped, recovered and checked, no longer counts), and that its probes found
(:mod:`drplan.statuspage.probes`). Rehearsals never show. An incident's
public status follows the engine: investigating until its first phase is settled,
identified while it recovers, monitoring once every system it took from a component is
back, resolved when it is. What customers read is the components' names, the updates
written for the page's audience, when the service is expected back (the RTO clock's
deadline) and which data must be sent again (from the recovered point, or the RPO
budget while recovering), in plain words; never the scenario, the runbook or who acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan import clock

if TYPE_CHECKING:
    from drplan.incidents.state import Incident
    from drplan.plan.model import StatusPage
    from drplan.statuspage.uptime import Uptime

OPERATIONAL = "operational"
DEGRADED = "degraded_performance"
PARTIAL = "partial_outage"
MAJOR = "major_outage"
MAINTENANCE = "under_maintenance"
WORSE = (OPERATIONAL, MAINTENANCE, DEGRADED, PARTIAL, MAJOR)  # in order of gravity
STATE_OF_TIER = {1: MAJOR, 2: PARTIAL, 3: DEGRADED}
IMPACT_OF_TIER = {1: "critical", 2: "major", 3: "minor"}


@dataclass
class Component:
    name: str
    title: str
    group: str | None
    description: str
    state: str = OPERATIONAL


@dataclass
class PublicIncident:
    id: str
    name: str
    status: str  # investigating, identified, monitoring, resolved
    impact: str
    started_at: datetime
    resolved_at: datetime | None
    components: list[str]  # the component names it affects
    eta: datetime | None  # when the last of them is expected back (the RTO clock)
    data_loss: str | None  # which data to send again, in words
    updates: list[dict[str, Any]] = field(default_factory=list)  # {status, body, at}


@dataclass
class PageState:
    title: str
    components: list[Component]
    incidents: list[PublicIncident]  # the newest first
    updated_at: datetime
    uptime: dict[str, Uptime] = field(default_factory=dict)  # per component: its 90 days

    @property
    def worst(self) -> str:
        return max((c.state for c in self.components), key=WORSE.index, default=OPERATIONAL)


Outages = dict[str, list[tuple[datetime, "datetime | None", str]]]  # per component: spans


def page_state(
    page: StatusPage, incidents: list[Incident], now: datetime,
    probed: dict[str, str] | None = None, outages: Outages | None = None,
) -> PageState:  # fmt: skip
    """The page now: ``probed``, the daemon's probes' states of the components it probes,
    and ``outages``, the spans they found them out (for the 90 days)."""
    components = {name: Component(name, c.title, c.group, c.description)
                  for name, c in page.components.items()}  # fmt: skip
    public = []
    for incident in incidents:
        if incident.declared.get("rehearsal"):
            continue
        found = _public(page, incident, now)
        if found is None:
            continue
        public.append(found)
        if found.status in ("resolved", "monitoring"):
            continue
        for name in found.components:
            state = STATE_OF_TIER.get(int(incident.declared["tier"]), MAJOR)
            if WORSE.index(state) > WORSE.index(components[name].state):
                components[name].state = state
    for name, state in (probed or {}).items():
        if name in components and WORSE.index(state) > WORSE.index(components[name].state):
            components[name].state = state
    public.sort(key=lambda i: i.started_at, reverse=True)
    from drplan.statuspage.uptime import uptime  # noqa: PLC0415 - it builds on this module

    return PageState(page.title, list(components.values()), public, now,
                     uptime(page, incidents, now, outages))  # fmt: skip


def _public(page: StatusPage, incident: Incident, now: datetime) -> PublicIncident | None:
    down = [s for s in incident.systems if s not in incident.recovered]
    touched = [n for n, c in page.components.items() if set(c.systems) & set(incident.systems)]
    if not touched:
        return None  # nothing customers see
    still = [n for n in touched if set(page.components[n].systems) & set(down)]
    if incident.status != "open":
        status = "resolved"
    elif not still:
        status = "monitoring"
    elif incident.current_phase() is not None and incident.current_phase().number > 1:  # type: ignore[union-attr]
        status = "identified"
    else:
        status = "investigating"
    affected = [s for s in incident.systems
                if any(s in page.components[n].systems for n in touched)]  # fmt: skip
    deadlines = [incident.deadline(s) for s in affected if s in down]
    titles = [page.components[n].title for n in touched]
    return PublicIncident(
        incident.id, f"Service disruption: {', '.join(titles)}", status,
        IMPACT_OF_TIER.get(int(incident.declared["tier"]), "major"), incident.since,
        resolved_at(incident), touched,
        max(deadlines) if deadlines and status in ("investigating", "identified") else None,
        data_loss_words(incident, affected), _updates(page, incident),
    )  # fmt: skip


def resolved_at(incident: Incident) -> datetime | None:
    return next((e.at for e in incident.events if e.kind == "resolved"), None)


def data_loss_words(incident: Incident, systems: list[str]) -> str | None:
    """Which data must be sent again, in words: between the newest point recovered and
    the recovery, once recovered; else since the RPO budget before the disaster."""
    spans = []
    for system in systems:
        found = incident.recovered.get(system)
        if found is not None and found.get("newest"):
            start = datetime.fromisoformat(str(found["newest"]).replace("Z", "+00:00"))
            spans.append((start, found["at"]))
        elif found is None:
            budget = incident.declared["objectives"][system].get("rpo_seconds")
            if budget is not None:
                spans.append((incident.since - timedelta(seconds=budget), None))
    if not spans:
        return None
    start = min(s for s, _ in spans)
    ends = [e for _, e in spans]
    if any(e is None for e in ends):
        return f"Data sent since {clock_words(start)} UTC may have to be sent again"
    return (f"Data sent between {clock_words(start)} and {clock_words(max(e for e in ends if e))} UTC"
            " must be sent again")  # fmt: skip


def clock_words(at: datetime) -> str:
    """A moment as the public reads it: HH:MM today, else the whole date and time."""
    return clock.rfc3339(at)[11:16] if at.date() == clock.now().date() else clock.rfc3339(at)


def _body(text: str) -> str:
    """A message's text without its subject line, on one line."""
    return " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())


def _updates(page: StatusPage, incident: Incident) -> list[dict[str, Any]]:
    """The updates told to the page's audience: the words a person wrote for it; the
    messages the engine sent on its own in drplan's public wording, whole; for those
    worded for insiders, a sentence of the page's own, so that nothing of the incident's
    insides reaches the page."""
    status_of = {"initial": "investigating", "update": "identified", "resolution": "resolved"}
    titles = ", ".join(c.title for c in page.components.values()
                       if set(c.systems) & set(incident.systems))  # fmt: skip
    standard = {"investigating": f"We are investigating a disruption of {titles}.",
                "identified": f"We know the cause and are restoring {titles}.",
                "monitoring": f"{titles}: back, and watched closely.",
                "resolved": f"{titles}: the disruption is over."}  # fmt: skip
    found: list[dict[str, Any]] = []
    for event in incident.events:
        if event.kind != "message" or page.audience is None:
            continue
        if event.data.get("audience") != page.audience or not event.data.get("delivered"):
            continue
        status = status_of.get(str(event.data.get("kind")), "identified")
        if int(event.data.get("phase") or 0) > len(incident.phases):  # every phase settled
            status = "monitoring"
        # A person's words; else drplan's public wording of the message (the services, the
        # ETA, the data to send again); else, for a message worded for insiders (or from
        # before the public wording), a sentence of the page's own.
        body = str(event.data.get("said") or (_body(event.data["text"]) if event.data.get("public")
                                              and event.data.get("text") else standard[status]))  # fmt: skip
        if any(u["body"] == body and u["status"] == status for u in found):
            continue  # the same message on several channels: one update
        found.append({"status": status, "body": body, "at": event.at})
    return list(reversed(found))

"""An incident as its timeline makes it: the events folded, in order, into the state a
responder sees (steps done or open, the commander, the notes) and the RTO clock.

Nothing else holds an incident's state: whatever copy of the timeline survives (the
journal, the catalog, a replica) gives the same incident, and a crash between two
events leaves the state of the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.errors import DrplanError, IncidentStateError, UsageError
from drplan.incidents.timeline import Event

OPEN, RESOLVED, CLOSED = "open", "resolved", "closed"


def slug(title: str) -> str:
    """``Restore from last known good backup`` → ``restore-from-last-known-good-backup``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


PENDING, DONE, SKIPPED, FAILED = "pending", "done", "skipped", "failed"
OUTCOMES = {"done": DONE, "skip": SKIPPED, "fail": FAILED}


@dataclass
class StepState:
    id: str  # "2.1": phase 2, step 1
    slug: str
    title: str
    owner: str | None
    checklist: list[str]
    action: str | None
    run: str | None
    recovers: list[str]
    approve: str | None = None
    rerun: str = "ask"
    timeout: float | None = None
    status: str = PENDING  # or done, skipped, failed
    ticked: set[int] = field(default_factory=set)  # checklist items done (1-based)
    finished_at: datetime | None = None
    actor: str | None = None
    note: str | None = None
    approved_by: str | None = None
    running: dict[str, Any] | None = None  # the step_started event's data, until it ends
    attempts: int = 0
    interrupted: bool = False  # its process died without an outcome (rerun decides)
    result: dict[str, Any] = field(default_factory=dict)  # exit code, seconds, output

    @property
    def open(self) -> bool:
        """Not settled: pending, or failed (the commander decides what next)."""
        return self.status not in (DONE, SKIPPED)

    @property
    def automated(self) -> bool:
        return bool(self.action or self.run)


@dataclass
class PhaseState:
    number: int
    name: str
    window: tuple[float, float] | None  # seconds from the disaster moment
    steps: list[StepState]

    @property
    def open(self) -> bool:
        return any(s.open for s in self.steps)


@dataclass
class Incident:
    id: str
    declared: dict[str, Any]  # the first event's data: see declare.declaration
    declared_at: datetime
    since: datetime
    phases: list[PhaseState]
    commander: str | None
    status: str = OPEN
    notes: list[dict[str, Any]] = field(default_factory=list)
    sized: dict[str, dict[str, Any]] = field(default_factory=dict)  # today's sizes, by system
    recovered: dict[str, dict[str, Any]] = field(default_factory=dict)  # clock_stopped data
    waived: dict[str, str] = field(default_factory=dict)  # system: why it is not recovered
    # lateness key: its last page (level, role, at) and whether it was acknowledged
    escalations: dict[str, dict[str, Any]] = field(default_factory=dict)
    unproven: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last failed checks
    events: list[Event] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        return str(self.declared["scenario"])

    @property
    def systems(self) -> list[str]:
        return list(self.declared["systems"])

    @property
    def steps(self) -> list[StepState]:
        return [s for p in self.phases for s in p.steps]

    @property
    def roles(self) -> dict[str, Any]:
        return dict(self.declared["roles"])

    def step(self, ref: str) -> StepState:
        """A step by number (``2.1``) or name (``restore-from-last-known-good-backup``)."""
        for step in self.steps:
            if ref in (step.id, step.slug):
                return step
        known = ", ".join(f"{s.id} {s.slug}" for s in self.steps)
        raise UsageError(f"incident {self.id} has no step {ref!r}", hint=f"its steps: {known}")

    def before(self, step: StepState) -> list[StepState]:
        """The steps before ``step`` still open: the runbook's order says they come first."""
        earlier = self.steps[: self.steps.index(step)]
        return [s for s in earlier if s.open]

    def current_phase(self) -> PhaseState | None:
        return next((p for p in self.phases if p.open), None)

    def deadline(self, system: str) -> datetime:
        seconds = self.declared["objectives"][system]["rto_seconds"]
        return self.since + timedelta(seconds=seconds)

    def platform_deadline(self) -> datetime | None:
        seconds = self.declared.get("full_platform_rto_seconds")
        return None if seconds is None else self.since + timedelta(seconds=seconds)

    def window(self, phase: PhaseState) -> tuple[datetime, datetime] | None:
        if phase.window is None:
            return None
        start, end = phase.window
        return self.since + timedelta(seconds=start), self.since + timedelta(seconds=end)

    def declared_plan(self) -> Any:
        """The plan as this incident was declared with (a Plan)."""
        from drplan.incidents.declare import declared_plan  # noqa: PLC0415

        return declared_plan(self.declared)

    def writable(self) -> None:
        """Raise IncidentStateError unless the incident can still be acted on."""
        if self.status == CLOSED:
            raise IncidentStateError(
                f"incident {self.id} is closed: its review is done",
                hint="declare a new incident for what happens next",
            )

    def review_kinds(self) -> dict[str, str]:
        """The kinds of note the review takes: each of the plan's post_incident headings
        (by slug), an action item, a plain note."""
        kinds = {slug(h): h for h in self.declared.get("review", [])}
        return {**kinds, "action": "Action items", "note": "Notes"}

    def unreviewed(self) -> list[str]:
        """The post_incident headings no note fills yet."""
        filled = {n.get("kind") for n in self.notes}
        return [h for h in self.declared.get("review", []) if slug(h) not in filled]

    def notices(self) -> list[dict[str, Any]]:
        """The notices due to audiences with a deadline: each with when it is due and when
        the audience was first told (a message delivered to it), or None."""
        found = []
        for notice in self.declared.get("notices", []):
            told = next((e.at for e in self.events if e.kind == "message"
                         and e.data.get("audience") == notice["audience"]
                         and e.data.get("delivered")), None)  # fmt: skip
            found.append({"audience": notice["audience"], "told_at": told,
                          "due": self.declared_at + timedelta(seconds=notice["due_seconds"])})  # fmt: skip
        return found

    def unrecovered(self) -> list[str]:
        """Affected systems neither recovered (their clock stopped) nor waived."""
        return [s for s in self.systems if s not in self.recovered and s not in self.waived]


def fold(events: list[Event]) -> Incident:
    """The incident ``events`` (a whole timeline, in order) describe."""
    if not events or events[0].kind != "declared":
        raise DrplanError("the timeline does not begin with a declaration",
                          hint="`drplan incident verify INC` says what is wrong")  # fmt: skip
    first = events[0]
    data = first.data
    phases = [
        PhaseState(
            number, phase["name"], tuple(phase["window"]) if phase["window"] else None,
            [StepState(**{k: s[k] for k in _STEP_FIELDS if k in s}) for s in phase["steps"]],
        )
        for number, phase in enumerate(data["phases"], 1)
    ]  # fmt: skip
    incident = Incident(
        id=first.incident, declared=data, declared_at=first.at,
        since=clock.parse_rfc3339(data["since"]), phases=phases, commander=data["commander"],
    )  # fmt: skip
    for event in events:
        _APPLY.get(event.kind, _ignore)(incident, event)
    incident.events = events
    return incident


_STEP_FIELDS = (
    "id",
    "slug",
    "title",
    "owner",
    "checklist",
    "action",
    "run",
    "recovers",
    "approve",
    "rerun",
    "timeout",
)


def _step_event(incident: Incident, event: Event) -> None:
    step = incident.step(event.data["step"])
    item = event.data.get("item")
    if item is not None:
        step.ticked.add(int(item))
        return
    step.status = OUTCOMES[event.data["outcome"]]
    step.finished_at, step.actor, step.note = event.at, event.actor, event.data.get("note")
    step.running, step.interrupted = None, False
    step.result = {k: event.data[k] for k in ("exit_code", "seconds", "output", "timed_out")
                   if k in event.data}  # fmt: skip


def _started(incident: Incident, event: Event) -> None:
    step = incident.step(event.data["step"])
    step.running, step.interrupted = event.data, False
    step.attempts += 1
    step.status = PENDING  # a retry of a failed step runs again


def _interrupted(incident: Incident, event: Event) -> None:
    step = incident.step(event.data["step"])
    step.running, step.interrupted = None, True


def _clock_stopped(incident: Incident, event: Event) -> None:
    incident.recovered[event.data["system"]] = {"at": event.at, **event.data}
    incident.unproven.pop(event.data["system"], None)


def _unproven(incident: Incident, event: Event) -> None:
    incident.unproven[event.data["system"]] = {"at": event.at, **event.data}


def _resolved(incident: Incident, event: Event) -> None:
    incident.status = RESOLVED
    incident.waived.update(event.data.get("waived", {}))


def _sized(incident: Incident, event: Event) -> None:
    incident.sized.update(event.data.get("systems", {}))


def _closed(incident: Incident, event: Event) -> None:
    incident.status = CLOSED


def _escalated(incident: Incident, event: Event) -> None:
    incident.escalations[event.data["key"]] = {
        "level": event.data["level"], "role": event.data["role"], "at": event.at,
        "reason": event.data["reason"], "acknowledged": None,
    }  # fmt: skip


def _acknowledged(incident: Incident, event: Event) -> None:
    for key in event.data["keys"]:
        if key in incident.escalations:
            incident.escalations[key]["acknowledged"] = event.actor


def _approved(incident: Incident, event: Event) -> None:
    incident.step(event.data["step"]).approved_by = event.actor


def _note(incident: Incident, event: Event) -> None:
    incident.notes.append({"at": event.at, "actor": event.actor, **event.data})


def _commander(incident: Incident, event: Event) -> None:
    incident.commander = event.data["role"]


def _ignore(incident: Incident, event: Event) -> None:
    """Events that change no state (the declaration itself, messages): timeline only."""


_APPLY = {
    "step": _step_event, "step_started": _started, "step_interrupted": _interrupted,
    "approved": _approved, "note": _note, "commander": _commander,
    "clock_stopped": _clock_stopped, "recovery_unproven": _unproven,
    "resolved": _resolved, "closed": _closed,
    "escalated": _escalated, "acknowledged": _acknowledged, "sized": _sized,
}  # fmt: skip

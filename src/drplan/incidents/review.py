"""The post-incident review (`drplan incident report`): the seed plan's post-recovery
review, made from the incident's timeline and its drills.

- summary, timeline, and who did what;
- per system: the RTO achieved against its objective and against what its drills
  predicted (their median), the RPO achieved against its objective, or why it was waived;
- per phase: its actual span against its window, the steps that overran or failed;
- the review's notes under the plan's post_incident headings, and the action items;
- lessons for the plan, computed from those figures.

Everything is read from the timeline: a review made twice from the same timeline is the
same, whoever makes it.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.incidents.state import Incident, PhaseState
from drplan.incidents.view import span, summary

SLOWER = 1.5  # achieved over drilled median beyond which a recovery is a lesson
STALE_DRILL = timedelta(days=90)


def review(incident: Incident, now: datetime) -> dict[str, Any]:
    """The review's data (its JSON form)."""
    drilled = _drilled(incident)
    systems = [_system(incident, name, drilled.get(name)) for name in incident.systems]
    phases = [_phase(incident, phase, now) for phase in incident.phases]
    notes = [n for n in incident.notes if n.get("kind") != "action"]
    declared = incident.declared
    return {
        "title": f"Post-incident review: {incident.id} {declared['title']}",
        "time": clock.rfc3339(now),
        "incident": {
            "id": incident.id,
            "scenario": incident.scenario,
            "title": declared["title"],
            "tier": declared["tier"],
            "status": incident.status,
            "commander": incident.commander,
            "since": clock.rfc3339(incident.since),
            "declared_at": clock.rfc3339(incident.declared_at),
            "resolved_at": _when(incident, "resolved"),
            "closed_at": _when(incident, "closed"),
            "plan_sha256": declared["plan"]["sha256"],
            "rehearsal": declared["rehearsal"],
        },
        "systems": systems,
        "phases": phases,
        "people": _people(incident),
        "timeline": [
            {"at": clock.rfc3339(e.at), "actor": e.actor, "what": summary(e.kind, e.data)}
            for e in incident.events
        ],
        "communication": _communication(incident),
        "review": {
            "headings": [
                {"heading": h, "notes": [n["text"] for n in notes if n.get("heading") == h]}
                for h in declared.get("review", [])
            ],
            "notes": [n["text"] for n in notes if n.get("kind") == "note"],
            "actions": [
                {"text": n["text"], "owner": n.get("owner")}
                for n in incident.notes
                if n.get("kind") == "action"
            ],
        },
        "lessons": _lessons(systems, phases)
        + [
            f"the notice to {n['audience']} was {'late' if n['told_at'] else 'never sent'}"
            f" (due {clock.rfc3339(n['due'])})"
            for n in incident.notices()
            if n["told_at"] is None or n["told_at"] > n["due"]
        ],
    }


def _communication(incident: Incident) -> dict[str, Any]:
    """How fast people were told: the first message delivered (any audience) and the first
    update after it, in seconds from the declaration and from the disaster moment; per
    audience, what was delivered and what failed."""
    sent = [e for e in incident.events if e.kind == "message"]
    delivered = [e for e in sent if e.data.get("delivered")]
    first = delivered[0] if delivered else None
    update = next(
        (e for e in delivered if e.data.get("kind") in ("update", "tactical", "executive")), None
    )

    def timed(event: Any) -> dict[str, Any] | None:
        if event is None:
            return None
        return {"at": clock.rfc3339(event.at), "audience": event.data["audience"],
                "channel": event.data.get("channel"),
                "after_declaration_seconds": round((event.at - incident.declared_at).total_seconds(), 3),
                "after_disaster_seconds": round((event.at - incident.since).total_seconds(), 3)}  # fmt: skip

    audiences: dict[str, dict[str, int]] = {}
    for event in sent:
        counts = audiences.setdefault(event.data["audience"], {"delivered": 0, "failed": 0})
        counts["delivered" if event.data.get("delivered") else "failed"] += 1
    notices = [{"audience": n["audience"], "due": clock.rfc3339(n["due"]),
                "told_at": clock.rfc3339(n["told_at"]) if n["told_at"] else None,
                "in_time": n["told_at"] is not None and n["told_at"] <= n["due"]}
               for n in incident.notices()]  # fmt: skip
    return {"first_notification": timed(first), "first_update": timed(update),
            "audiences": audiences, "calls": sum(1 for e in sent if e.data.get("call_task")),
            "notices": notices}  # fmt: skip


def _drilled(incident: Incident) -> dict[str, dict[str, Any]]:
    """Per system, its drills' measured recovery times before the incident (as the
    declaration recorded them)."""
    found = {}
    for name, runs in incident.declared.get("drilled", {}).items():
        if runs:
            found[name] = {
                "drills": len(runs), "median_seconds": statistics.median(r[1] for r in runs),
                "last": max(clock.parse_rfc3339(r[0]) for r in runs),
            }  # fmt: skip
    return found


def _system(incident: Incident, name: str, drilled: dict[str, Any] | None) -> dict[str, Any]:
    objectives = incident.declared["objectives"][name]
    done = incident.recovered.get(name)
    rto = done["rto_seconds"] if done else None
    rpo = done.get("rpo_seconds") if done else None
    median = drilled["median_seconds"] if drilled else None
    return {
        "system": name,
        "rto_objective_seconds": objectives["rto_seconds"],
        "rpo_objective_seconds": objectives["rpo_seconds"],
        "rto_seconds": rto, "rpo_seconds": rpo,
        "rto_met": None if rto is None else rto <= objectives["rto_seconds"],
        "rpo_met": None if rpo is None or objectives["rpo_seconds"] is None
        else rpo <= objectives["rpo_seconds"],
        "drilled_median_seconds": median,
        "drills": drilled["drills"] if drilled else 0,
        "last_drilled": clock.rfc3339(drilled["last"]) if drilled else None,
        "days_since_drill": (incident.since - drilled["last"]).days if drilled else None,
        "against_drills": round(rto / median, 2) if rto is not None and median else None,
        "waived": incident.waived.get(name),
    }  # fmt: skip


def _phase(incident: Incident, phase: PhaseState, now: datetime) -> dict[str, Any]:
    """The phase's window, and its actual span: from the first thing done in it to the
    last of its steps settled (still open: up to now)."""
    ids = {s.id for s in phase.steps}
    touched = [e.at for e in incident.events if e.data.get("step") in ids]
    started = min(touched) if touched else None
    settled = None if phase.open else max((s.finished_at for s in phase.steps
                                           if s.finished_at), default=None)  # fmt: skip
    window = incident.window(phase)
    end = settled or now
    steps = []
    for step in phase.steps:
        late = window is not None and (step.finished_at or now) > window[1] and (
            step.finished_at is not None or step.open)  # fmt: skip
        steps.append({"id": step.id, "title": step.title, "owner": step.owner,
                      "status": step.status, "actor": step.actor,
                      "finished_at": clock.rfc3339(step.finished_at) if step.finished_at else None,
                      "overran": late, "failed": step.status == "failed" or step.attempts > 1})  # fmt: skip
    return {
        "number": phase.number, "name": phase.name,
        "window": None if phase.window is None else {"start_seconds": phase.window[0],
                                                     "end_seconds": phase.window[1]},
        "started_seconds": _offset(incident, started),
        "settled_seconds": _offset(incident, settled),
        "duration_seconds": round((end - started).total_seconds(), 3) if started else None,
        "overran": window is not None and end > window[1] and (settled is not None or phase.open),
        "open": phase.open,
        "steps": steps,
    }  # fmt: skip


def _people(incident: Incident) -> list[dict[str, Any]]:
    """Who did what: each actor's events, by kind."""
    by: dict[str, dict[str, int]] = {}
    for event in incident.events:
        kinds = by.setdefault(event.actor, {})
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
    return [{"actor": actor, "did": kinds} for actor, kinds in by.items()]


def _lessons(systems: list[dict[str, Any]], phases: list[dict[str, Any]]) -> list[str]:
    """What the figures say the plan should learn."""
    found = []
    for s in systems:
        name = s["system"]
        if s["rto_seconds"] is not None and not s["rto_met"]:
            found.append(f"{name} missed its RTO: {span(s['rto_seconds'])} against"
                         f" {span(s['rto_objective_seconds'])}")  # fmt: skip
        if s["rpo_met"] is False:
            found.append(f"{name} lost more than its RPO: {span(s['rpo_seconds'])} against"
                         f" {span(s['rpo_objective_seconds'])}")  # fmt: skip
        if s["drills"] == 0:
            found.append(f"{name} was never drilled: its recovery time was a guess")
        elif s["against_drills"] is not None and s["against_drills"] >= SLOWER:
            found.append(f"{name}'s recovery took {s['against_drills']:g}x its drill median;"
                         f" last drill {s['days_since_drill']} days before")  # fmt: skip
        if s["days_since_drill"] is not None and s["days_since_drill"] > STALE_DRILL.days:
            found.append(f"{name} had not been drilled for {s['days_since_drill']} days")
        if s["waived"]:
            found.append(f"{name} was not recovered by the runbook: {s['waived']}")
    for p in phases:
        if p["overran"] and p["window"]:
            length = p["window"]["end_seconds"] - p["window"]["start_seconds"]
            found.append(f"phase {p['number']} {p['name']} overran its window of {span(length)}")
        for step in p["steps"]:
            if step["failed"]:
                found.append(f"step {step['id']} {step['title']} failed at least once")
    return found


def _offset(incident: Incident, at: datetime | None) -> float | None:
    return None if at is None else round((at - incident.since).total_seconds(), 3)


def _when(incident: Incident, kind: str) -> str | None:
    times = [e.at for e in incident.events if e.kind == kind]
    return clock.rfc3339(times[-1]) if times else None

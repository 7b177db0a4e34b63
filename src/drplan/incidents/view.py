"""An incident as the status command, the JSON output and (later) the API show it: the
RTO clock per system, the phases against their windows, the steps, the predictions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.incidents.predict import Prediction
from drplan.incidents.state import Incident
from drplan.security.secrets_rotate_timeline import SUMMARIES as SECRET_ROTATION_SUMMARIES


def status(incident: Incident, predictions: dict[str, Prediction], now: datetime
           ) -> dict[str, Any]:  # fmt: skip
    declared = incident.declared
    platform = incident.platform_deadline()
    current = incident.current_phase()
    return {
        "id": incident.id,
        "scenario": incident.scenario,
        "title": declared["title"],
        "tier": declared["tier"],
        "status": incident.status,
        "rehearsal": declared["rehearsal"],
        "since": clock.rfc3339(incident.since),
        "declared_at": clock.rfc3339(incident.declared_at),
        "elapsed_seconds": round((now - incident.since).total_seconds(), 3),
        "commander": incident.commander,
        "plan": declared["plan"],
        "clock": {
            "systems": [
                {
                    "system": name,
                    "rto_seconds": declared["objectives"][name]["rto_seconds"],
                    "rpo_seconds": declared["objectives"][name]["rpo_seconds"],
                    "deadline": clock.rfc3339(incident.deadline(name)),
                    "remaining_seconds": _remaining(incident.deadline(name), now),
                    "prediction": predictions[name].as_dict() if name in predictions else None,
                    "recovered": _measured(incident, name),
                    "unproven": _checks_failed(incident, name),
                }
                for name in incident.systems
            ],
            "full_platform": None
            if platform is None
            else {
                "deadline": clock.rfc3339(platform),
                "remaining_seconds": _remaining(platform, now),
            },
        },
        "notices": [
            {
                "audience": n["audience"],
                "due": clock.rfc3339(n["due"]),
                "remaining_seconds": _remaining(n["due"], now),
                "told_at": clock.rfc3339(n["told_at"]) if n["told_at"] else None,
                "in_time": None if n["told_at"] is None else n["told_at"] <= n["due"],
            }
            for n in incident.notices()
        ],
        "current_phase": current.number if current else None,
        "phases": [
            {
                "number": phase.number,
                "name": phase.name,
                "window": _window(incident, phase.window),
                "overrun": phase.open and _ended(incident, phase.window, now),
                "steps": [
                    {
                        "id": s.id,
                        "slug": s.slug,
                        "title": s.title,
                        "owner": s.owner,
                        "status": s.status,
                        "automated": s.automated,
                        "action": s.action,
                        "run": s.run,
                        "recovers": s.recovers,
                        "checklist": [
                            {"item": n, "text": t, "done": n in s.ticked}
                            for n, t in enumerate(s.checklist, 1)
                        ],
                        "finished_at": clock.rfc3339(s.finished_at) if s.finished_at else None,
                        "actor": s.actor,
                        "note": s.note,
                        "approve": s.approve,
                        "approved_by": s.approved_by,
                        "running": s.running,
                        "interrupted": s.interrupted,
                        "attempts": s.attempts,
                        **s.result,
                    }
                    for s in phase.steps
                ],
            }
            for phase in incident.phases
        ],
        "events": len(incident.events),
        "waived": incident.waived,
        "escalations": {
            k: {**e, "at": clock.rfc3339(e["at"])} for k, e in incident.escalations.items()
        },
        "review": {
            "headings": incident.declared.get("review", []),
            "missing": incident.unreviewed(),
            "notes": [{**n, "at": clock.rfc3339(n["at"])} for n in incident.notes],
        },
    }


def summary(event_kind: str, data: dict[str, Any]) -> str:
    """One line for a timeline entry."""
    told = _SUMMARIES.get(event_kind)
    return told(data) if told else event_kind


def _declared(data: dict[str, Any]) -> str:
    return (f"declared {data['scenario']} (tier {data['tier']}) on"
            f" {', '.join(data['systems'])}, disaster at {data['since']}")  # fmt: skip


def _step(data: dict[str, Any]) -> str:
    if "item" in data:
        return f"step {data['step']}: checklist item {data['item']} done"
    order = " (out of order)" if data.get("out_of_order") else ""
    note = f": {data['note']}" if data.get("note") else ""
    return f"step {data['step']} {data['outcome']}{order}{note}"


def _clock_stopped(data: dict[str, Any]) -> str:
    rpo = data.get("rpo_seconds")
    lost = "unknown" if rpo is None else f"{rpo:g}s"
    return (f"{data['system']} recovered and checked: RTO {data['rto_seconds']:g}s,"
            f" RPO {lost} (step {data['step']})")  # fmt: skip


def _unproven(data: dict[str, Any]) -> str:
    failed = [f"{v['name']}: {v['detail']}" for v in data["validations"]
              if v["outcome"] == "failed"]  # fmt: skip
    return f"{data['system']} not proven recovered: {'; '.join(failed)}; its clock runs on"


def _escalated(d: dict[str, Any]) -> str:
    sent = ", ".join(f"{p['channel']} ({'sent' if p['delivered'] else p['error']})"
                     for p in d["pages"])  # fmt: skip
    if d["role"].startswith("contact:"):
        how = (f"e-mailed on {sent}" if sent else "no e-mail") + "".join(
            f"; call {c['contact']} at {c['phone']}" for c in d.get("call_task", [])
        )
    else:
        how = f"paged on {sent}" if sent else "no pager: told internal"
    return f"escalated ({d['key']}, level {d['level']}) to {d['role']}: {d['reason']}; {how}"


def _message(data: dict[str, Any]) -> str:
    if data.get("call_task"):
        calls = ", ".join(f"{c['holder']} ({c['role']}) {c['phone'] or 'no number'}"
                          for c in data["call_task"])  # fmt: skip
        return f"call task for {data['audience']} ({data['kind']}): call {calls}"
    outcome = "sent" if data["delivered"] else f"NOT sent ({data['error']})"
    where = f" on {data['channel']}" if data.get("channel") else ""
    return f"{data['kind']} message to {data['audience']}{where}: {outcome}"


def _note(data: dict[str, Any]) -> str:
    owner = f" (owner {data['owner']})" if data.get("owner") else ""
    return f"{data.get('heading', 'note')}{owner}: {data.get('text', '')}"


def _evidence_captured(d: dict[str, Any]) -> str:
    if d.get("immutable"):
        held = f"locked until {d['locked_until']}"
    else:
        held = "NOT immutable" + (f" ({d['lock_problem']})" if d.get("lock_problem") else "")
    unread = f", {d['unread']} unreadable" if d.get("unread") else ""
    return (f"evidence of {d['system']} captured to {d['location']}: snapshot"
            f" {d['snapshot'][:8]}, {d['files']} files{unread}, manifest SHA-256"
            f" {d['manifest_sha256']}, {held}")  # fmt: skip


def _evidence_verified(d: dict[str, Any]) -> str:
    where = f"evidence {d['snapshot'][:8]} in {d['location']} verified"
    if d["ok"]:
        return f"{where}: ok ({d['files']} files)"
    count = d.get("problem_count", len(d["problems"]))
    first = f", first: {d['problems'][0]}" if d["problems"] else ""
    return f"{where}: {count} problem(s){first}"


def _resolved(data: dict[str, Any]) -> str:
    waived = data.get("waived") or {}
    return "resolved" + "".join(f"; {s} waived: {r}" for s, r in waived.items())


_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "declared": _declared,
    "step": _step,
    "step_started": lambda d: (f"step {d['step']} started (attempt {d['attempt']}, process"
                               f" {d['pid']} on {d['host']}): {d['command']}"),
    "step_interrupted": lambda d: f"step {d['step']} interrupted: its process {d['pid']} is gone",
    "approved": lambda d: f"step {d['step']} approved",
    "clock_stopped": _clock_stopped,
    "recovery_unproven": _unproven,
    "message": _message,
    "note": _note,
    "commander": lambda d: f"commander is now {d['role']}",
    "resolved": _resolved,
    "closed": lambda d: "closed",
    "escalated": _escalated,
    "acknowledged": lambda d: f"acknowledged: {', '.join(d['keys'])}",
    "sized": lambda d: "today's sizes read: " + ", ".join(
        f"{n} {s['restored_bytes']} bytes of base backups, {s['wal_bytes']} of WAL"
        for n, s in d["systems"].items()) + "".join(f"; {w}" for w in d.get("unsized", [])),
    "resumed": lambda d: f"taken over from the copy in {d['from']} ({d['entries']} entries)",
    "evidence_captured": _evidence_captured,
    "evidence_verified": _evidence_verified,
    "rehearsed": lambda d: (f"rehearsal recorded as drill {d['drill']}: "
                            + ("passed" if d["passed"] else "did not pass")),
    **SECRET_ROTATION_SUMMARIES,
}  # fmt: skip


def _measured(incident: Incident, system: str) -> dict[str, Any] | None:
    """The system's measured RTO and RPO against its objectives, once its clock stopped."""
    found = incident.recovered.get(system)
    if found is None:
        return None
    objectives = incident.declared["objectives"][system]
    rto, rpo = found["rto_seconds"], found.get("rpo_seconds")
    return {
        "at": clock.rfc3339(found["at"]), "step": found["step"],
        "rto_seconds": rto, "rto_met": rto <= objectives["rto_seconds"],
        "rpo_seconds": rpo, "newest": found.get("newest"),
        "rpo_met": None if rpo is None or objectives["rpo_seconds"] is None
        else rpo <= objectives["rpo_seconds"],
        "validations": found["validations"], "note": found.get("note"),
    }  # fmt: skip


def _checks_failed(incident: Incident, system: str) -> dict[str, Any] | None:
    found = incident.unproven.get(system)
    if found is None:
        return None
    return {"at": clock.rfc3339(found["at"]), "step": found["step"],
            "validations": found["validations"]}  # fmt: skip


def _remaining(deadline: datetime, now: datetime) -> float:
    return round((deadline - now).total_seconds(), 3)


def _window(incident: Incident, window: tuple[float, float] | None) -> dict[str, Any] | None:
    if window is None:
        return None
    start, end = (incident.since + timedelta(seconds=s) for s in window)
    return {"start": clock.rfc3339(start), "end": clock.rfc3339(end),
            "start_seconds": window[0], "end_seconds": window[1]}  # fmt: skip


def _ended(incident: Incident, window: tuple[float, float] | None, now: datetime) -> bool:
    return window is not None and now > incident.since + timedelta(seconds=window[1])


def span(seconds: float | None) -> str:
    """A duration as responders say it: ``3h30m``, ``12m05s``, ``42s``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

"""The post-incident review as people read it: markdown, or one self-contained HTML page
whose figures are inline SVG: the phases as a Gantt chart against their windows, and
each system's RTO achieved beside its drilled median and its objective."""

from __future__ import annotations

import html
from typing import Any

from drplan.incidents.view import span
from drplan.render import html_page

WIDTH, ROW, LEFT = 720, 22, 170  # the figures' width, row height and label column (px)


def markdown(data: dict[str, Any]) -> str:
    inc = data["incident"]
    lines = [f"# {data['title']}", "", f"Made {data['time']} from the incident's timeline.", ""]
    lines += ["## Summary", "", "| | |", "|---|---|"]
    for label, key in (("scenario", "scenario"), ("tier", "tier"), ("status", "status"),
                       ("commander", "commander"), ("disaster moment", "since"),
                       ("declared", "declared_at"), ("resolved", "resolved_at"),
                       ("closed", "closed_at"), ("plan (SHA-256)", "plan_sha256")):  # fmt: skip
        lines.append(f"| {label} | {_cell(inc[key])} |")
    lines += ["", "## Systems", "",
              "| system | RTO achieved | drilled median | RTO objective | vs drills | RPO achieved"
              " | RPO objective | notes |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in data["systems"]:
        note = (f"waived: {s['waived']}" if s["waived"] else
                "never drilled" if not s["drills"] else
                f"{s['drills']} drills, the last {s['days_since_drill']} days before")  # fmt: skip
        lines.append(
            f"| {s['system']} | {span(s['rto_seconds'])}{_met(s['rto_met'])} |"
            f" {span(s['drilled_median_seconds'])} | {span(s['rto_objective_seconds'])} |"
            f" {_times(s['against_drills'])} | {span(s['rpo_seconds'])}{_met(s['rpo_met'])} |"
            f" {span(s['rpo_objective_seconds'])} | {_cell(note)} |"
        )
    lines += ["", "## Phases", "", "| phase | window | actual | duration | overran | steps late or failed |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for p in data["phases"]:
        window = (f"{span(p['window']['start_seconds'])}-{span(p['window']['end_seconds'])}"
                  if p["window"] else "-")  # fmt: skip
        actual = (f"{span(p['started_seconds'])}-"
                  f"{span(p['settled_seconds']) if p['settled_seconds'] is not None else 'open'}"
                  if p["started_seconds"] is not None else "not started")  # fmt: skip
        bad = [f"{s['id']} {s['title']}" for s in p["steps"] if s["overran"] or s["failed"]]
        lines.append(f"| {p['number']} {_cell(p['name'])} | {window} | {actual} |"
                     f" {span(p['duration_seconds'])} | {'yes' if p['overran'] else 'no'} |"
                     f" {_cell(', '.join(bad) or '-')} |")  # fmt: skip
    lines += ["", "## Communication", "", *_communication(data["communication"])]
    lines += ["", "## Lessons", ""] + ([f"- {x}" for x in data["lessons"]] or ["None found."])
    lines += ["", "## Review", ""]
    for h in data["review"]["headings"]:
        lines.append(f"{h['heading']}: {' '.join(h['notes']) or '(nothing written)'}")
    for n in data["review"]["notes"]:
        lines.append(f"Note: {n}")
    lines += ["", "## Action items", ""]
    lines += [f"- {a['text']} (owner: {a['owner']})" for a in data["review"]["actions"]] or [
        "None."]  # fmt: skip
    lines += ["", "## Who did what", "", "| who | what |", "|---|---|"]
    for person in data["people"]:
        did = ", ".join(f"{n} {k}" for k, n in person["did"].items())
        lines.append(f"| {_cell(person['actor'])} | {did} |")
    lines += ["", "## Timeline", "", "| time | who | what |", "|---|---|---|"]
    lines += [f"| {e['at']} | {_cell(e['actor'])} | {_cell(e['what'])} |" for e in data["timeline"]]
    return "\n".join(lines) + "\n"


def _communication(comm: dict[str, Any]) -> list[str]:
    if not comm["audiences"] and not comm["notices"]:
        return ["No message was sent (the plan has no communication section, or nobody was told)."]
    lines = []
    for label, key in (
        ("First notification", "first_notification"),
        ("First update", "first_update"),
    ):
        told = comm[key]
        lines.append(f"- {label}: " + (
            f"{_precise(told['after_declaration_seconds'])} after the declaration"
            f" ({_precise(told['after_disaster_seconds'])} after the disaster), to {told['audience']}"
            f" on {told['channel']}" if told else "none delivered"))  # fmt: skip
    for audience, counts in comm["audiences"].items():
        lines.append(f"- {audience}: {counts['delivered']} delivered, {counts['failed']} failed")
    if comm["calls"]:
        lines.append(f"- {comm['calls']} call task(s): drplan cannot place calls")
    for n in comm["notices"]:
        verdict = ("in time" if n["in_time"] else "late") if n["told_at"] else "never told"
        lines.append(f"- notice to {n['audience']}: due {n['due']}, "
                     + (f"told {n['told_at']} ({verdict})" if n["told_at"] else verdict))  # fmt: skip
    return lines


def _precise(seconds: float) -> str:
    """Seconds to a tenth under a minute (how fast the first message went matters)."""
    return f"{seconds:.1f}s" if seconds < 60 else span(seconds)


def as_html(data: dict[str, Any]) -> str:
    figures = {"Phases": gantt(data["phases"]), "Systems": rto_bars(data["systems"])}
    return html_page(markdown(data), data["title"], figures)


def gantt(phases: list[dict[str, Any]]) -> str:
    """Each phase's window (light) and actual span (dark; red when it overran)."""
    ends = [p["window"]["end_seconds"] for p in phases if p["window"]]
    ends += [p["started_seconds"] + (p["duration_seconds"] or 0) for p in phases
             if p["started_seconds"] is not None]  # fmt: skip
    scale = (WIDTH - LEFT - 10) / max([*ends, 1.0])
    rows = []
    for i, p in enumerate(phases):
        y = 10 + i * ROW
        rows.append(f"<text x='4' y='{y + 14}'>{html.escape(p['name'])}</text>")
        if p["window"]:
            x = LEFT + p["window"]["start_seconds"] * scale
            w = (p["window"]["end_seconds"] - p["window"]["start_seconds"]) * scale
            rows.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{ROW - 4}'"
                        " fill='#cde'><title>window</title></rect>")  # fmt: skip
        if p["started_seconds"] is not None:
            x = LEFT + p["started_seconds"] * scale
            w = max((p["duration_seconds"] or 0) * scale, 2)
            colour = "#c33" if p["overran"] else "#246"
            rows.append(f"<rect x='{x:.1f}' y='{y + 5}' width='{w:.1f}' height='{ROW - 14}'"
                        f" fill='{colour}'><title>actual</title></rect>")  # fmt: skip
    height = 20 + len(phases) * ROW
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}'"
            f" role='img' aria-label='phases against their windows'>{''.join(rows)}</svg>")  # fmt: skip


def rto_bars(systems: list[dict[str, Any]]) -> str:
    """Per system three bars: RTO achieved, drilled median, objective."""
    values = [v for s in systems for v in (s["rto_seconds"], s["drilled_median_seconds"],
                                            s["rto_objective_seconds"]) if v]  # fmt: skip
    scale = (WIDTH - LEFT - 10) / max([*values, 1.0])
    rows, y = [], 10
    for s in systems:
        rows.append(f"<text x='4' y='{y + 20}'>{html.escape(s['system'])}</text>")
        for value, colour, label in ((s["rto_seconds"], "#246", "achieved"),
                                     (s["drilled_median_seconds"], "#8ab", "drilled median"),
                                     (s["rto_objective_seconds"], "#ccc", "objective")):  # fmt: skip
            if value:
                rows.append(f"<rect x='{LEFT}' y='{y}' width='{value * scale:.1f}' height='9'"
                            f" fill='{colour}'><title>{label}: {span(value)}</title></rect>")  # fmt: skip
            y += 11
        y += 8
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{y + 10}'"
            f" role='img' aria-label='RTO achieved, drilled and objective'>{''.join(rows)}</svg>")  # fmt: skip


def _met(met: bool | None) -> str:
    return "" if met is None else (" (met)" if met else " (missed)")


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:g}x"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

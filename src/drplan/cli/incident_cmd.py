"""``drplan incident``: declare an incident, follow its runbook against the RTO clock,
record what responders do, and read or verify its timeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drplan import clock
from drplan.cli.context import Settings, console, emit_json, pass_settings
from drplan.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from drplan.incidents.operations import Said
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident

CATALOG_HELP = "The catalog incidents are recorded in (default $DRPLAN_CATALOG, else SQLite in the state directory)."
FOLLOW_POLL = 1.0  # seconds between looks for new entries with --follow


@click.group("incident")
def incident_group() -> None:
    """Declare an incident and run its runbook against the RTO clock."""


@contextmanager
def _incidents(catalog: str | None) -> Iterator[Incidents]:
    from drplan.incidents.operations import copy_off_site  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.incidents.service import open_incidents  # noqa: PLC0415

    with open_incidents(catalog, copy_off_site) as service:
        try:
            yield service
        finally:
            for warning in service.warnings:
                click.echo(f"drplan: warning: {warning}", err=True)


def _say(said: Said) -> None:
    """What an operation did: its lines on standard output, each message's outcome on
    standard error."""
    for line in said.lines:
        console().print(line, highlight=False)
    for sent in said.sent:
        if sent["delivered"]:
            click.echo(f"drplan: told {sent.get('audience', 'them')} on {sent['channel']}",
                       err=True)  # fmt: skip
        else:
            click.echo(f"drplan: warning: {sent['error']}", err=True)


@incident_group.command("declare", short_help="Open an incident and start its RTO clock.")
@click.argument("scenario")
@click.option("--systems", metavar="S,...", help="The systems affected (default: the scenario's).")
@click.option("--since", metavar="TIME", help="When the disaster began, RFC 3339 (default: now).")
@click.option("--commander", metavar="ROLE", help="The incident commander's role.")
@click.option("--note", metavar="TEXT", help="What is known so far.")
@click.option("--as", "actor", metavar="ROLE", help="The role declaring it.")
@click.option(
    "--rehearsal",
    is_flag=True,
    help="A game day: production writes go to stand-ins, messages to the internal audience"
    " only (marked), no pager; recorded as a drill of the whole runbook when resolved.",
)
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the incident as JSON.")
@pass_settings
def declare_command(
    settings: Settings, /, scenario: str, systems: str | None, since: str | None,
    commander: str | None, note: str | None, actor: str | None, rehearsal: bool,
    catalog: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Open an incident of SCENARIO: its systems, the disaster moment, the plan's version;
    each system's deadline (the disaster moment plus its RTO) and its phase windows. With
    --rehearsal, the same engine runs without touching production."""
    plan_file = settings.load(actions=True)
    moment = None
    if since is not None:
        try:
            moment = clock.parse_rfc3339(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}", hint="e.g. --since 2026-12-07T03:10:00Z") from None
    chosen = [s.strip() for s in systems.split(",") if s.strip()] if systems else None
    now = clock.now()
    from drplan.incidents import operations  # noqa: PLC0415

    with _incidents(catalog) as service:
        incident, said = operations.declare(
            service, plan_file.plan, plan_file.path, scenario, actor, now, systems=chosen,
            since=moment, commander=commander, note=note, rehearsal=rehearsal,
        )  # fmt: skip
        _say(said)
        _show(service, incident, as_json)


@incident_group.command("status", short_help="The RTO clock, the phases and the steps.")
@click.argument("incident", required=False)
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def status_command(incident: str | None, catalog: str | None, as_json: bool) -> None:
    """Where INCIDENT stands (default: every open one): each system's deadline and time
    left, the prediction from its drills, each phase against its window, each step."""
    with _incidents(catalog) as service:
        chosen = [service.load(incident)] if incident else service.open_ones()
        if as_json:
            emit_json([_status(service, i) for i in chosen] if not incident
                      else _status(service, chosen[0]))  # fmt: skip
            return
        if not chosen:
            console().print("no open incident")
        for one in chosen:
            _print(_status(service, one))


@incident_group.command("step", short_help="Record a step done, skipped or failed.")
@click.argument("incident")
@click.argument("step")
@click.argument("outcome", type=click.Choice(["done", "skip", "fail"]))
@click.option("--item", type=int, metavar="N", help="Tick checklist item N only.")
@click.option("--note", metavar="TEXT", help="What was done or found.")
@click.option("--as", "actor", metavar="ROLE", help="The role doing it.")
@click.option("--out-of-order", is_flag=True, help="Allow it before earlier open steps (recorded).")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def step_command(
    incident: str, step: str, outcome: str, item: int | None, note: str | None,
    actor: str | None, out_of_order: bool, catalog: str | None,
) -> None:  # fmt: skip
    """Record STEP (its number, e.g. 2.1, or its name) of INCIDENT as done, skipped or
    failed; steps are taken in the runbook's order."""
    from drplan.incidents.operations import settle_step  # noqa: PLC0415

    with _incidents(catalog) as service:
        _say(settle_step(service, service.load(incident), step, outcome, clock.now(), item=item,
                         note=note, actor=actor, out_of_order=out_of_order))  # fmt: skip


@incident_group.command("run", short_help="Run the automated steps until one needs a person.")
@click.argument("incident", required=False)
@click.option(
    "--open",
    "every",
    is_flag=True,
    help="Every open incident journaled on this host (what `serve` runs).",
)
@click.option("--retry", metavar="STEP", help="Run a failed or interrupted step again.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Where each incident stopped, as JSON.")
def run_command(
    incident: str | None, every: bool, retry: str | None, catalog: str | None, as_json: bool
) -> None:
    """Run INCIDENT's automated steps in the runbook's order, each against its timeout
    with its output kept, until one waits for a person: a manual step, an approval, or a
    failed or interrupted step for the commander to decide on (exit 1). With --open,
    every open incident of this host, one after the other (exit 0: where each stopped is
    said; a failed step is the commander's to decide, not a failure of this run)."""
    from drplan.errors import DrplanError  # noqa: PLC0415
    from drplan.incidents.runner import Driver  # noqa: PLC0415

    if (incident is None) == (not every):
        raise UsageError("give an incident, or --open for every open one",
                         hint="e.g. drplan incident run INC-7K3Q")  # fmt: skip
    if every and retry:
        raise UsageError("--retry names a step of one incident", hint="give the incident")
    out = console()

    def tell(line: str) -> None:
        if not as_json:
            out.print(line, highlight=False)

    halts: list[dict[str, Any]] = []
    with _incidents(catalog) as service:
        driver = Driver(service, on_event=tell)
        chosen = [incident] if incident else [
            i for i in service.journal.ids() if service.load(i).status != "closed"
        ]  # fmt: skip
        for one in chosen:
            halt = driver.drive(one, retry)
            halts.append({"incident": service.load(one).id, "reason": halt.reason,
                          "step": halt.step, "message": halt.message})  # fmt: skip
            if every or halt.reason not in ("failed", "interrupted"):
                tell(halt.message)
    if as_json:
        emit_json({"incidents": halts})
    if not every and halts[0]["reason"] in ("failed", "interrupted"):
        raise DrplanError(str(halts[0]["message"]))


@incident_group.command("approve", short_help="Let a gated step run.")
@click.argument("incident")
@click.argument("step")
@click.option(
    "--as", "actor", metavar="ROLE", help="The approving role (the step's, or the commander)."
)
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def approve_command(incident: str, step: str, actor: str | None, catalog: str | None) -> None:
    """Approve STEP of INCIDENT, which waits for its `approve` role (or the incident
    commander); `drplan incident run` then runs it."""
    with _incidents(catalog) as service:
        found = service.load(incident)
        service.approve(found, step, actor, clock.now())
        console().print(f"{found.id}: step {found.step(step).id} approved by {actor}",
                        highlight=False)  # fmt: skip


@incident_group.command("ack", short_help="Acknowledge the pages: stop their escalation.")
@click.argument("incident")
@click.option("--as", "actor", metavar="ROLE", help="The role acknowledging.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def ack_command(incident: str, actor: str | None, catalog: str | None) -> None:
    """Acknowledge every page of INCIDENT still waiting: nobody further down the chain is
    paged for them."""
    from drplan.incidents.operations import acknowledge  # noqa: PLC0415

    with _incidents(catalog) as service:
        _say(acknowledge(service, service.load(incident), actor, clock.now()))


@incident_group.command("note", short_help="Add to the review: a finding, an action item.")
@click.argument("incident")
@click.argument("text")
@click.option(
    "--kind",
    default="note",
    show_default=True,
    metavar="KIND",
    help="A post_incident heading of the plan (by name), action, or note.",
)
@click.option("--owner", metavar="ROLE", help="Who owns an action item.")
@click.option("--as", "actor", metavar="ROLE", help="The role writing it.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def note_command(
    incident: str, text: str, kind: str, owner: str | None, actor: str | None,
    catalog: str | None,
) -> None:  # fmt: skip
    """Add TEXT to INCIDENT's review, under KIND: one of the plan's post_incident headings
    (root-cause-analysis, ...), an action item (with --owner), or a plain note."""
    with _incidents(catalog) as service:
        found = service.load(incident)
        event = service.note(found, kind, text, clock.now(), actor=actor, owner=owner)
        console().print(f"{found.id}: {event.data['heading']}: noted", highlight=False)


@incident_group.command("notify", short_help="Tell an audience where the incident stands.")
@click.argument("incident", required=False)
@click.option(
    "--audience",
    default="internal",
    show_default=True,
    metavar="AUDIENCE",
    help="internal (the responders), or one of the plan's audiences.",
)
@click.option("--message", required=True, metavar="TEXT", help="What to tell them.")
@click.option("--as", "actor", metavar="ROLE", help="The role telling them.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def notify_command(
    incident: str | None, audience: str, message: str, actor: str | None, catalog: str | None
) -> None:
    """Send an update on INCIDENT to AUDIENCE through its channels (internal: the primary,
    else the secondary, else the emergency channel); exit 1 when no channel delivered. In
    a runbook's step, INCIDENT is the one it runs in."""
    import os  # noqa: PLC0415

    from drplan.errors import DrplanError  # noqa: PLC0415
    from drplan.incidents.points import INCIDENT_ENV  # noqa: PLC0415

    incident = incident or os.environ.get(INCIDENT_ENV)
    if not incident:
        raise UsageError("give the incident to tell of", hint="e.g. drplan incident notify"
                         " INC-7K3Q --message TEXT (a runbook step names none: its own)")  # fmt: skip
    from drplan.incidents.operations import notify  # noqa: PLC0415

    with _incidents(catalog) as service:
        said = notify(service, service.load(incident), audience, message, actor)
        _say(said)
    if not said.delivered():
        raise DrplanError(f"no channel delivered the update to {audience}",
                          hint="the failures are in `drplan incident timeline`")  # fmt: skip


@incident_group.command("resolve", short_help="The systems are back: stop the incident.")
@click.argument("incident")
@click.option(
    "--waive",
    multiple=True,
    metavar="SYSTEM=REASON",
    help="Resolve though SYSTEM is not recovered, for REASON (repeatable).",
)
@click.option("--as", "actor", metavar="ROLE", help="The role resolving it.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def resolve_command(
    incident: str, waive: tuple[str, ...], actor: str | None, catalog: str | None
) -> None:
    """Resolve INCIDENT: every affected system recovered (its clock stopped), or waived
    with a reason; exit 24 naming those that are not."""
    waived = {}
    for item in waive:
        system, sep, reason = item.partition("=")
        if not sep:
            raise UsageError(f"--waive {item!r} is not SYSTEM=REASON",
                             hint="e.g. --waive 'logs=rebuilt from the SIEM instead'")  # fmt: skip
        waived[system.strip()] = reason.strip()
    from drplan.incidents.operations import resolve  # noqa: PLC0415

    with _incidents(catalog) as service:
        _say(resolve(service, service.load(incident), waived, actor, clock.now()))


@incident_group.command("close", short_help="Close after the review.")
@click.argument("incident")
@click.option("--as", "actor", metavar="ROLE", help="The role closing it.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def close_command(incident: str, actor: str | None, catalog: str | None) -> None:
    """Close INCIDENT once resolved and its review written: a note under each of the
    plan's post_incident headings. A closed incident takes nothing more."""
    with _incidents(catalog) as service:
        found = service.load(incident)
        service.close_incident(found, clock.now(), actor)
        console().print(f"{found.id}: closed", highlight=False)


@incident_group.command(
    "report", short_help="The post-incident review: figures, timeline, lessons."
)
@click.argument("incident")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md",
              show_default=True)  # fmt: skip
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def report_command(incident: str, fmt: str, output: str | None, catalog: str | None) -> None:
    """INCIDENT's post-incident review: per system the RTO achieved against its objective
    and its drills, the RPO against its objective; per phase its span against its window;
    the review's notes and action items; lessons computed from the figures; who did what,
    and the timeline. HTML is one self-contained page with its charts."""
    import json  # noqa: PLC0415

    from drplan.incidents.review import review  # noqa: PLC0415
    from drplan.incidents.review_render import as_html, markdown  # noqa: PLC0415

    with _incidents(catalog) as service:
        data = review(service.load(incident), clock.now())
    text = {"json": lambda: json.dumps(data, indent=2) + "\n", "html": lambda: as_html(data),
            "md": lambda: markdown(data)}[fmt]()  # fmt: skip
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@incident_group.command("resume", short_help="Take an incident over from an off-site copy.")
@click.argument("incident")
@click.option(
    "--from",
    "location",
    required=True,
    metavar="LOCATION",
    help="The plan's location holding the copy (an off-site one).",
)
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option("--as", "actor", metavar="ROLE", help="The role taking it over.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@pass_settings
def resume_command(
    settings: Settings, /, incident: str, location: str, password_file: str | None,
    actor: str | None, catalog: str | None,
) -> None:  # fmt: skip
    """Take INCIDENT over on this host from its timeline's copy in LOCATION, when the site
    it was declared at is lost: the copy's hash chain checked, the journal here made from
    it (or extended; one that went on differently is refused), the catalog told."""
    from drplan.cli.repo_access import open_repo  # noqa: PLC0415
    from drplan.errors import IntegrityError  # noqa: PLC0415
    from drplan.incidents.journal import parse_journal  # noqa: PLC0415
    from drplan.incidents.replicas import newest  # noqa: PLC0415
    from drplan.incidents.timeline import verify  # noqa: PLC0415

    name = incident.upper()
    with open_repo(settings, location, password_file, lock=None, index=False) as repo:
        body = newest(repo, name)
    if body is None:
        raise UsageError(f"{location} holds no copy of {name}'s timeline",
                         hint="try another off-site location of the plan")  # fmt: skip
    events = parse_journal(body, f"{location}:incidents/{name}")
    problems = verify(events)
    if problems or not events or events[0].incident != name:
        raise IntegrityError(f"the copy of {name}'s timeline in {location} does not verify:"
                             f" {'; '.join(problems) or 'not this incident'}",
                             hint="resume from another location")  # fmt: skip
    with _incidents(catalog) as service:
        here = service.journal.read(name)
        if [e.hash for e in here[: len(events)]] != [e.hash for e in events[: len(here)]]:
            raise IntegrityError(f"the timeline of {name} here went on differently from the copy"
                                 f" in {location}",
                                 hint="`drplan incident verify` shows where")  # fmt: skip
        if len(events) > len(here):
            service.journal.replace(name, events)
        found = service.load(name)
        service.record(name, "resumed", service.actor(actor, found.roles),
                       {"from": location, "entries": len(events)}, clock.now())  # fmt: skip
        console().print(f"{name}: taken over from {location} ({len(events)} entries, the last"
                        f" {clock.rfc3339(events[-1].at)}); `drplan incident run {name}` goes on",
                        highlight=False)  # fmt: skip


@incident_group.command("list", short_help="Every incident, open ones and past ones.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def list_command(catalog: str | None, as_json: bool) -> None:
    """Every incident this host journaled or the catalog holds, the first declared first."""
    with _incidents(catalog) as service:
        rows = []
        for one in (service.load(i) for i in service.ids()):
            rows.append({"id": one.id, "scenario": one.scenario, "tier": one.declared["tier"],
                         "status": one.status, "since": clock.rfc3339(one.since),
                         "systems": one.systems})  # fmt: skip
        if as_json:
            emit_json(rows)
            return
        if not rows:
            console().print("no incident yet")
        for row in rows:
            console().print(f"{row['id']}  {row['status']:<8} tier {row['tier']}  {row['since']}"
                            f"  {row['scenario']}: {', '.join(row['systems'])}",
                            highlight=False)  # fmt: skip


@incident_group.command("timeline", short_help="Every event of an incident, in order.")
@click.argument("incident")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def timeline_command(incident: str, follow: bool, catalog: str | None, as_json: bool) -> None:
    """INCIDENT's timeline: time, who, what."""
    import json  # noqa: PLC0415

    from drplan.incidents.view import summary  # noqa: PLC0415

    with _incidents(catalog) as service:
        shown = 0
        while True:
            events = service.load(incident).events
            for event in events[shown:]:
                if as_json:
                    print(json.dumps(event.as_dict(), sort_keys=True), flush=True)
                else:
                    console().print(f"{event.seq:>4}  {clock.rfc3339(event.at)}  {event.actor}:"
                                    f" {summary(event.kind, event.data)}", highlight=False)  # fmt: skip
            shown = len(events)
            if not follow:
                return
            time.sleep(FOLLOW_POLL)


@incident_group.command("verify", short_help="Check that no timeline entry was altered.")
@click.argument("incident")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def verify_command(incident: str, catalog: str | None) -> None:
    """Check INCIDENT's hash chain in every copy (the journal, the catalog) and compare
    the copies: exit 13 naming each edited, deleted or reordered entry."""
    from drplan.incidents.timeline import compare, verify  # noqa: PLC0415

    with _incidents(catalog) as service:
        name = service.load(incident).id
        copies = {
            "the journal": service.journal.read(name),
            "the catalog": service.catalog_copy(name),
        }
        held = {where: events for where, events in copies.items() if events}
        problems = [f"{where}: {p}" for where, events in held.items() for p in verify(events)]
        names = list(held)
        for other in names[1:]:
            problems += compare(other, held[names[0]], held[other])
    if problems:
        raise IntegrityError(f"the timeline of {name} was altered: {'; '.join(problems)}",
                             hint="the copy whose chain holds is the one to trust")  # fmt: skip
    counts = ", ".join(f"{len(events)} entries in {where}" for where, events in held.items())
    console().print(f"the timeline of {name} holds: {counts}, every link intact", highlight=False)


def _span(seconds: float | None) -> str:
    """``view.span``, imported when first needed (`drplan --help` stays fast)."""
    from drplan.incidents.view import span  # noqa: PLC0415

    return span(seconds)


def _status(service: Incidents, incident: Incident) -> dict[str, Any]:
    from drplan.incidents.predict import predict  # noqa: PLC0415
    from drplan.incidents.view import status  # noqa: PLC0415

    now = clock.now()
    return status(incident, predict(incident, now), now)


def _show(service: Incidents, incident: Incident, as_json: bool) -> None:
    data = _status(service, incident)
    if as_json:
        emit_json(data)
    else:
        _print(data)


def _print(data: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415

    out = console()
    rehearsal = " [bold]REHEARSAL[/]" if data["rehearsal"] else ""
    out.print(f"[bold]{data['id']}[/]{rehearsal}  {data['title']} ({data['scenario']}), tier"
              f" {data['tier']}, {data['status']}")  # fmt: skip
    out.print(f"disaster at {data['since']}, {_span(data['elapsed_seconds'])} ago; commander"
              f" {data['commander'] or '(none)'}; plan {data['plan']['sha256'][:12]}",
              highlight=False)  # fmt: skip
    systems = Table("system", "RTO", "deadline", "left", "prediction from drills",
                    title="RTO clock", title_justify="left")  # fmt: skip
    for row in data["clock"]["systems"]:
        systems.add_row(row["system"], _span(row["rto_seconds"]), row["deadline"],
                        _left(row), _prediction(row["prediction"]))  # fmt: skip
    platform = data["clock"]["full_platform"]
    if platform:
        systems.add_row("(whole platform)", "", platform["deadline"],
                        _left(platform), "")  # fmt: skip
    out.print(systems)
    for notice in data["notices"]:
        if notice["told_at"]:
            state = f"told {notice['told_at']}" + (
                "" if notice["in_time"] else " [bold red](late)[/]"
            )
        elif notice["remaining_seconds"] < 0:
            state = "[bold red]OVERDUE[/]: not told"
        else:
            state = f"{_span(notice['remaining_seconds'])} left"
        out.print(f"notice to {notice['audience']}: due {notice['due']}, {state}"
                  f" (`drplan incident notify {data['id']} --audience {notice['audience']}`)",
                  highlight=False)  # fmt: skip
    for phase in data["phases"]:
        window = phase["window"]
        when = (f" {_plan_span(window['start_seconds'])}-{_plan_span(window['end_seconds'])},"
                f" until {window['end']}" if window else "")  # fmt: skip
        mark = (" [bold red]OVERRUN[/]" if phase["overrun"]
                else " [bold]current[/]" if phase["number"] == data["current_phase"] else "")  # fmt: skip
        out.print(f"\nphase {phase['number']} {phase['name']}{when}{mark}", highlight=False)
        for s in phase["steps"]:
            ticked = sum(1 for c in s["checklist"] if c["done"])
            items = f" [{ticked}/{len(s['checklist'])}]" if s["checklist"] else ""
            auto = " (automated)" if s["automated"] else ""
            out.print(f"  {s['id']} {s['title']} - {s['owner'] or 'no owner'}: {s['status']}"
                      f"{items}{auto}", highlight=False)  # fmt: skip


def _prediction(found: dict[str, Any] | None) -> str:
    if not found or found["verdict"] == "never drilled":
        return "never drilled: no prediction"
    scaled = ", scaled to today's sizes" if found.get("scaled") else ""
    phase = (f"; phase {found['phase']}'s window: {found['phase_verdict']}"
             if found.get("phase_verdict") else "")  # fmt: skip
    return (f"{found['verdict']}: median {_span(found['median_seconds'])}, worst"
            f" {_span(found['worst_seconds'])} over {found['drills']} drills{scaled}{phase}")  # fmt: skip


def _left(row: dict[str, Any]) -> str:
    """Time left; or, once recovered, the measured RTO and RPO and whether they were met."""
    done = row.get("recovered")
    if done:
        verdict = "met" if done["rto_met"] else "[bold red]missed[/]"
        rpo = "unknown" if done["rpo_seconds"] is None else _span(done["rpo_seconds"])
        return f"recovered: RTO {_span(done['rto_seconds'])} ({verdict}), RPO {rpo}"
    seconds = row["remaining_seconds"]
    left = _span(seconds) if seconds >= 0 else f"[bold red]missed by {_span(-seconds)}[/]"
    return left + (" [yellow](checks failed)[/]" if row.get("unproven") else "")


def _plan_span(seconds: float) -> str:
    """As the plan writes a window: ``0-1h``, ``1-4h``."""
    from datetime import timedelta  # noqa: PLC0415

    from drplan.plan.durations import format_duration  # noqa: PLC0415

    return "0" if not seconds else format_duration(timedelta(seconds=seconds))

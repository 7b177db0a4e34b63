"""``drplan status``: every data class against its RPO, every job, every location, on one screen."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from drplan import clock
from drplan.cli.context import Settings, console, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import password
from drplan.errors import CatalogError, DrplanError
from drplan.locations.storage import storage_for
from drplan.repo.repository import Repository

if TYPE_CHECKING:
    from drplan.observability.status import JobRun, Status
    from drplan.plan.model import Plan

COLOURS = {"ok": "green", "at_risk": "yellow", "breached": "bold red", "unknown": "bold red"}


@click.command("status")
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option(
    "--catalog",
    metavar="URL",
    help="The daemon's catalog, for the outcome of each job's last run"
    " (default $DRPLAN_CATALOG, else SQLite in the state directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (durations in seconds).")
@pass_settings
def status_command(
    settings: Settings, /, password_file: str | None, catalog: str | None, as_json: bool
) -> None:
    """RPO exposure per data class against its objective, each job's newest backup, next
    run and last outcome, each location's state. Exit 1 when a data class is breached or
    cannot be judged somewhere it must be recoverable from."""
    from drplan.observability.rpo import gather  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.observability.status import as_json as status_json  # noqa: PLC0415
    from drplan.observability.status import build_status  # noqa: PLC0415

    plan = settings.load().plan
    secret = password(settings, password_file)
    facts = gather(plan, lambda name: Repository.open(storage_for(plan.locations[name]), secret))
    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.scheduler.ledger import Ledger  # noqa: PLC0415

    runs, drills = _history(plan, catalog)
    # What the daemon of this state directory saw change and has not backed up yet.
    triggers = Ledger(state_dir()).read()
    status = build_status(plan, facts, clock.now(), runs, drills, triggers=triggers)
    incidents = _open_incidents(catalog)
    if as_json:
        emit_json({"incidents": incidents, **status_json(status)})
    else:
        _render_incidents(incidents)
        _render(plan, status)
    if not status.healthy:
        bad = sorted(
            {e.data_class for e in status.exposures if e.status in ("breached", "unknown")}
        )
        raise DrplanError(
            f"recovery point objective breached or unknown for {', '.join(bad)}",
            hint="see above: which location, since when, and why",
        )


def _history(plan: Plan, url: str | None) -> tuple[dict[str, JobRun], dict[str, dict[str, Any]]]:
    """The last run of each job and of each drill from the catalog; none when there is
    no catalog yet."""
    from drplan.catalog.paths import default_url  # noqa: PLC0415

    url = url or default_url()
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        return {}, {}  # no daemon nor drill has run here: nothing to tell, nothing to create
    from drplan.catalog.store import Catalog  # noqa: PLC0415 - SQLAlchemy: only when needed
    from drplan.cli.catalog_cmd import unavailable  # noqa: PLC0415
    from drplan.drills.schedule import newest_drills  # noqa: PLC0415
    from drplan.observability.status import last_runs  # noqa: PLC0415

    try:
        catalog = Catalog.open(url)
    except CatalogError as exc:
        unavailable(exc)
        return {}, {}
    try:
        return last_runs(catalog, plan.jobs), newest_drills(catalog, plan)
    finally:
        catalog.close()


def _open_incidents(url: str | None) -> list[dict[str, Any]]:
    """The open incidents, first of all: this host's journal and the catalog's (without
    predictions: the status stays quick)."""
    from drplan.incidents.service import open_incidents  # noqa: PLC0415
    from drplan.incidents.view import status as incident_status  # noqa: PLC0415

    now = clock.now()
    with open_incidents(url) as service:
        if not service.journal.ids() and not _catalog_exists(url):
            return []
        return [incident_status(i, {}, now) for i in service.open_ones()]


def _catalog_exists(url: str | None) -> bool:
    from drplan.catalog.paths import default_url  # noqa: PLC0415

    url = url or default_url()
    return not url.startswith("sqlite:///") or os.path.exists(url.removeprefix("sqlite:///"))


def _render_incidents(incidents: list[dict[str, Any]]) -> None:
    out = console()
    for inc in incidents:
        left = ", ".join(
            f"{s['system']} {'recovered' if s['recovered'] else _left(s['remaining_seconds'])}"
            for s in inc["clock"]["systems"]
        )
        out.print(f"[bold red]INCIDENT {inc['id']}[/] {inc['title']} (tier {inc['tier']}),"
                  f" {inc['status']} since {inc['since']}: {left}", highlight=False)  # fmt: skip
    if incidents:
        out.print("")


def _left(seconds: float) -> str:
    if seconds < 0:
        return f"missed its deadline by {_ago(timedelta(seconds=-seconds))}"
    return f"{_ago(timedelta(seconds=seconds))} left"


def _ago(value: timedelta | None) -> str:
    if value is None:
        return "never"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _upcoming(job: dict[str, Any], now: datetime) -> str:
    """The next run: a time, or for a triggered job what it waits for and what it owes."""
    trigger = job.get("trigger")
    if trigger is None:
        return "-" if job["next_run"] is None else f"in {_ago(job['next_run'] - now)}"
    said = f"on {trigger['event']}"
    if trigger["unbacked_since"] is not None:
        said += f"; changed {_ago(now - trigger['unbacked_since'])} ago, not backed up"
    for path, lost in trigger["lost"].items():
        said += (f"\n[yellow]at risk: the watch on {path} is lost since"
                 f" {clock.rfc3339(lost['since'])}: {lost['reason']}[/]")  # fmt: skip
    return said


def _render(plan: Plan, status: Status) -> None:
    from rich.table import Table  # noqa: PLC0415

    out = console()
    now = status.now
    classes = Table("data class", "RPO", "exposure", "status", "from", "newest point")
    for name, best in status.best.items():
        colour = COLOURS[best.status]
        worst = [e for e in status.exposures if e.data_class == name and e.status != "ok"]
        notes = "; ".join(
            f"{e.location}: {e.status.replace('_', ' ')}"
            + (f" ({e.error})" if e.error else f" ({_ago(e.exposure(now))})")
            for e in worst
        )
        classes.add_row(
            name,
            _ago(best.objective),
            _ago(best.exposure(now)),
            f"[{colour}]{best.status.replace('_', ' ')}[/]" + (f"\n{notes}" if notes else ""),
            best.location,
            best.source or "-",
        )
    out.print(classes)
    jobs = Table("job", "schedule", "newest backup", "next run", "last run")
    for name, job in status.jobs.items():
        run = job["last_run"]
        last = "-" if run is None else run.status + (f": {run.error}" if run.error else "")
        if job["failing"]:
            last = f"[bold red]{last}[/]"
        newest = job["newest"]
        jobs.add_row(
            name,
            job["schedule"],
            "never" if newest is None else f"{_ago(now - newest)} ago",
            _upcoming(job, now),
            last,
        )
    out.print(jobs)
    places = Table("location", "role", "state", "snapshots", "stored", "behind on")
    for name, loc in status.locations.items():
        state = loc["state"]
        colour = "green" if state == "ok" else "yellow" if state == "lagging" else "bold red"
        behind = ", ".join(
            f"{job} ({'none yet' if lag is None else _ago(lag)})"
            for job, lag in loc["lagging"].items()
        )
        places.add_row(
            name,
            plan.locations[name].role.value,
            f"[{colour}]{state}[/]" + (f"\n{loc['error']}" if loc["error"] else ""),
            str(loc["snapshots"]),
            human_bytes(sum(loc["size"].values())) if loc["size"] else "-",
            behind or "-",
        )
    out.print(places)
    for system, (start, end) in status.windows.items():
        if start is not None and end is not None:
            out.print(f"{system}: recoverable from {clock.rfc3339(start)} to {clock.rfc3339(end)}")
    if status.drills:
        drills = Table("drill", "schedule", "last run", "next run")
        for name, d in status.drills.items():
            if d["last_started"] is None:
                last = "never"
            else:
                verdict = "[green]passed[/]" if d["last_passed"] else "[bold red]failed[/]"
                last = f"{_ago(now - d['last_started'])} ago, {verdict}"
            if d["overdue_since"] is not None:
                last += f" [bold red]overdue since {clock.rfc3339(d['overdue_since'])}[/]"
            upcoming = "-" if d["next_run"] is None else f"in {_ago(d['next_run'] - now)}"
            drills.add_row(name, plan.drills[name].schedule_text, last, upcoming)
        out.print(drills)

"""``drplan evidence capture|verify|list``: a compromised system preserved as it is under
Object Lock, held against its chain of custody in the incident's timeline
(docs/security.md, "Evidence")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from drplan.cli.context import Settings, console, counted, emit_json, human_bytes, pass_settings
from drplan.cli.secrets_cmd import json_option, password_file_option
from drplan.errors import DrplanError, IntegrityError, UsageError

if TYPE_CHECKING:
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident
    from drplan.plan.model import Plan
    from drplan.repo.repository import Repository
    from drplan.security.evidence_verify import Verdict

INCIDENT_ENV = "DRPLAN_INCIDENT"  # set for a runbook step: the incident it runs in
catalog_option = click.option(
    "--catalog",
    metavar="URL",
    help="The catalog incidents are recorded in (default $DRPLAN_CATALOG, else SQLite in the"
    " state directory).",
)
as_option = click.option("--as", "role", metavar="ROLE", help="The role acting (recorded).")


@click.group("evidence")
def evidence_group() -> None:
    """Preserve a compromised system as it is, under Object Lock, with its chain of custody."""


@contextmanager
def _incidents(catalog: str | None) -> Iterator[Incidents]:
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - see cli.COMMANDS

    with open_incidents(catalog) as service:
        try:
            yield service
        finally:
            for warning in service.warnings:
                click.echo(f"drplan: warning: {warning}", err=True)


@contextmanager
def _location(
    settings: Settings, plan: Plan, password_file: str | None, operation: str, name: str
) -> Iterator[Repository]:
    """The repository of location ``name`` of the plan, opened, locked (shared) and indexed."""
    from drplan.cli.repo_access import open_repo  # noqa: PLC0415
    from drplan.locations.copying import about_location  # noqa: PLC0415
    from drplan.locations.storage import storage_for  # noqa: PLC0415

    if name not in plan.locations:
        raise UsageError(f"location {name} is not in the plan (any more)",
                         hint="put it back in the plan to reach the evidence")  # fmt: skip
    with about_location(name), open_repo(settings, None, password_file, operation=operation,
                                         storage=storage_for(plan.locations[name])) as repo:  # fmt: skip
        yield repo


def _chosen(service: Incidents, incident: str | None) -> list[Incident]:
    return [service.load(incident)] if incident else service.everything()


@evidence_group.command("capture", short_help="Copy a system as it is into the evidence location.")
@click.argument("system")
@click.option("--incident", metavar="INC", envvar=INCIDENT_ENV,
              help="The incident it is evidence of (in a runbook step: the step's own).")  # fmt: skip
@click.option("--location", metavar="LOCATION", help="Where to (default: the plan's"
              " security.evidence.location).")  # fmt: skip
@click.option("--unlocked", is_flag=True, help="Accept a location without compliance-mode"
              " Object Lock; the timeline records the evidence as not immutable.")  # fmt: skip
@as_option
@password_file_option
@catalog_option
@json_option
@pass_settings
def capture_command(
    settings: Settings, /, system: str, incident: str | None, location: str | None,
    unlocked: bool, role: str | None, password_file: str | None, catalog: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Copy SYSTEM's files (a files system's paths; a postgres system's data directory,
    tablespaces and WAL directory, running or not) as they are now into the evidence
    location, with a SHA-256 manifest, and record the capture in INC's timeline."""
    from drplan.security.evidence import capture, raise_for, source_of, target  # noqa: PLC0415

    if not incident:
        raise UsageError("give the incident this is evidence of",
                         hint=f"--incident INC (a runbook step passes its own, ${INCIDENT_ENV})")  # fmt: skip
    plan = settings.load().plan
    where = target(plan, location, unlocked)  # every refusal before anything is read
    source_of(plan, system)
    with _incidents(catalog) as service:
        found = service.load(incident)
        found.writable()
        actor = service.actor(role, found.roles)
        with _location(settings, plan, password_file, "evidence capture", where.location) as repo:
            done = capture(repo, plan, system, found, where, service, actor)
    for line in done.unread:
        click.echo(f"warning: {line}", err=True)
    if as_json:
        emit_json({"incident": found.id, **done.data, "unread_items": done.unread})
    else:
        _said(found.id, done.data)
    raise_for(done)


def _said(incident: str, data: dict[str, Any]) -> None:
    lock = (f"locked ({data['lock_mode']}) until {data['locked_until']}" if data["immutable"]
            else "NOT immutable: whoever holds the location's credentials can delete it")  # fmt: skip
    click.echo(
        f"evidence of {data['system']} captured to {data['location']} ({data['repository']}):"
        f" snapshot {data['snapshot'][:8]}, {counted(data['files'], 'file')},"
        f" {human_bytes(data['bytes'])}; {lock}"
    )
    click.echo(f"manifest SHA-256 {data['manifest_sha256']}, recorded in {incident}'s timeline")
    if data["changed_while_read"]:
        click.echo(f"{counted(data['changed_while_read'], 'file')} changed while read (a live"
                   " system): stored as read, marked in the manifest")  # fmt: skip


@evidence_group.command("verify", short_help="Read every capture back against its record.")
@click.option("--incident", metavar="INC", help="Only this incident's evidence (default: all).")
@as_option
@password_file_option
@catalog_option
@json_option
@pass_settings
def verify_command(
    settings: Settings, /, incident: str | None, role: str | None, password_file: str | None,
    catalog: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Re-read every captured file from its location and re-hash it against the manifest,
    check the manifest's SHA-256 against the timeline and each object's lock; each
    verification is recorded in the timeline. Exit 13 naming what does not match."""
    from drplan.security.evidence import captures  # noqa: PLC0415
    from drplan.security.evidence_verify import verify  # noqa: PLC0415

    plan = settings.load().plan
    with _incidents(catalog) as service:
        chosen = _chosen(service, incident)
        if not any(True for i in chosen for _ in captures(i)):
            where = f" in {chosen[0].id}" if incident else ""
            raise DrplanError(f"no evidence was captured{where}: nothing to verify",
                              hint="`drplan evidence capture SYSTEM --incident INC`")  # fmt: skip
        opener = partial(_location, settings, plan, password_file, "evidence verify")
        verdicts = verify(service, chosen, opener, service.actor(role, dict(plan.roles)))
    if as_json:
        emit_json([v.as_dict() for v in verdicts])
    else:
        for verdict in verdicts:
            _shown(verdict)
    failed = [v for v in verdicts if not v.ok]
    if failed:
        first = failed[0]
        more = sum(len(v.problems) for v in failed) - 1
        raise IntegrityError(
            f"evidence {first.snapshot[:8]} of {first.incident} in {first.location} failed"
            f" verification: {first.problems[0]}" + (f" (and {more} more)" if more else ""),
            hint="all are listed above and in the timeline; keep the copy as it is, and tell"
            " whoever holds the incident's custody record",
        )


def _shown(verdict: Verdict) -> None:
    head = (f"{verdict.incident} {verdict.snapshot[:8]} ({verdict.system}, in"
            f" {verdict.location}): ")  # fmt: skip
    if verdict.ok:
        lock = (f"locked until {verdict.as_dict()['locked_until']}" if verdict.immutable
                else "not immutable")  # fmt: skip
        click.echo(head + f"ok, {counted(verdict.files, 'file')} ({human_bytes(verdict.bytes)})"
                   f" match the manifest; {lock}")  # fmt: skip
        return
    click.echo(head + f"{counted(len(verdict.problems), 'problem')}")
    for problem in verdict.problems:
        click.echo(f"  {problem}")


@evidence_group.command("list", short_help="Every capture the timelines record.")
@click.option("--incident", metavar="INC", help="Only this incident's evidence (default: all).")
@catalog_option
@json_option
def list_command(incident: str | None, catalog: str | None, as_json: bool) -> None:
    """Every capture recorded in the incidents' timelines: where, what, its manifest's
    SHA-256, its lock, and its last verification."""
    from rich.table import Table  # noqa: PLC0415

    from drplan.security.evidence import captures  # noqa: PLC0415

    with _incidents(catalog) as service:
        rows = [row for found in _chosen(service, incident) for row in captures(found)]
    if as_json:
        emit_json(rows)
        return
    table = Table("incident", "captured", "system", "location", "snapshot", "files",
                  "manifest SHA-256", "locked until", "last verified")  # fmt: skip
    for row in rows:
        checked = row["last_verified"]
        table.add_row(
            row["incident"], row["at"], row["system"], row["location"], row["snapshot"][:8],
            f"{row['files']} ({human_bytes(row['bytes'])})", row["manifest_sha256"][:16],
            row["locked_until"] or "NOT immutable",
            f"{checked['at']} {'ok' if checked['ok'] else 'FAILED'}" if checked else "never",
        )  # fmt: skip
    console().print(table)
    click.echo(f"{counted(len(rows), 'capture')}")

"""``drplan catalog rebuild``: the catalog's history made again from the plan's repositories
and the drills' evidence (see drplan.catalog.rebuild)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from drplan import clock
from drplan.cli.context import Settings, console, counted, emit_json, pass_settings
from drplan.cli.repo_access import password
from drplan.errors import CatalogError, DrplanError
from drplan.locations.storage import storage_for
from drplan.repo.repository import Repository

if TYPE_CHECKING:
    from drplan.catalog.rebuild import RebuildReport


@click.group("catalog")
def catalog_group() -> None:
    """The daemon's run history: `drplan catalog rebuild` makes it again from the
    repositories when it is damaged or lost."""


@catalog_group.command("rebuild", short_help="Rebuild the run history from the repositories.")
@click.option(
    "--catalog",
    metavar="URL",
    help="The catalog to rebuild (default $DRPLAN_CATALOG, else SQLite in the state directory).",
)
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@pass_settings
def rebuild_command(
    settings: Settings, /, catalog: str | None, password_file: str | None, as_json: bool
) -> None:
    """Add to the catalog every job run that saved a snapshot in a location of the plan,
    and every drill run whose evidence file is intact; a damaged SQLite catalog is moved
    aside first (never deleted). What the repositories do not record (failed runs that
    saved nothing, notifications) is said, not invented. Run it again at will: nothing
    is added twice. Exit 1 when a location could not be read (the rest is rebuilt)."""
    from drplan.catalog.paths import default_url, state_dir  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.catalog.rebuild import rebuild  # noqa: PLC0415

    plan = settings.load().plan
    secret = password(settings, password_file)
    report = rebuild(
        plan,
        catalog or default_url(),
        lambda name: Repository.open(storage_for(plan.locations[name]), secret),
        Path(state_dir()) / "drills" / "evidence",
        clock.now(),
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report)
    if not report.complete:
        raise DrplanError(
            f"the catalog was rebuilt without {', '.join(report.unreadable)}, which could not"
            " be read: runs only they hold are missing",
            hint="run `drplan catalog rebuild` again once they can be read: it adds only"
            " what the catalog lacks",
        )


def _print(report: RebuildReport) -> None:
    say = click.echo
    if report.moved_aside:
        say(f"catalog {report.catalog}: damaged ({report.damage}); moved aside to"
            f" {report.moved_aside}")  # fmt: skip
    added = sum(report.runs_added.values())
    per_job = ", ".join(f"{n} of {job}" for job, n in sorted(report.runs_added.items()))
    say(f"catalog {report.catalog}: {counted(added, 'run')} added from the snapshots of"
        f" {', '.join(report.locations) or 'no location'}" + (f" ({per_job})" if per_job else "")
        + f", {counted(report.drills_added, 'drill run')} from their evidence;"
        f" {report.runs_known + report.drills_known} already there")  # fmt: skip
    for location, why in report.unreadable.items():
        say(f"location {location}: not read ({why})", err=True)
    for path, why in report.evidence_left_out.items():
        say(f"evidence {path}: left out ({why})", err=True)
    say(f"not rebuilt (no repository records them): {'; '.join(report.not_rebuilt)}")


def unavailable(exc: CatalogError) -> None:
    """Said by the commands that show the catalog's history beside what they read
    elsewhere (the plan, the repositories), and go on without it: the fix included."""
    from rich.markup import escape  # noqa: PLC0415

    hint = f"; {exc.hint}" if exc.hint else ""
    console().print(
        f"[yellow]catalog unavailable, last runs not shown: {escape(exc.message + hint)}[/]"
    )

"""``drplan status-page publish``: the public status page's static copy written to the
S3 locations the plan names (see drplan.statuspage.publish); the daemon does it at every
change, this does it now."""

from __future__ import annotations

import click

from drplan import clock
from drplan.cli.context import Settings, pass_settings
from drplan.errors import DrplanError, UsageError


@click.group("status-page")
def status_page_group() -> None:
    """The public status page."""


@status_page_group.command("publish", short_help="Write the page's static copy to its locations.")
@click.option(
    "--catalog",
    metavar="URL",
    help="The catalog incidents are recorded in (default $DRPLAN_CATALOG, else SQLite in the state directory).",
)
@pass_settings
def publish_command(settings: Settings, /, catalog: str | None) -> None:
    """Write the status page (index.html and Statuspage's JSON) under status-page/ in each
    location of status_page.publish_to; exit 1 naming each location that failed."""
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.locations.storage import storage_for  # noqa: PLC0415
    from drplan.statuspage.publish import publish  # noqa: PLC0415
    from drplan.statuspage.state import page_state  # noqa: PLC0415

    plan = settings.load().plan
    if plan.status_page is None or not plan.status_page.publish_to:
        raise UsageError("the plan publishes no status page",
                         hint="name S3 locations in status_page.publish_to")  # fmt: skip
    with open_incidents(catalog) as service:
        incidents = service.everything()
    state = page_state(plan.status_page, incidents, clock.now())
    failed = publish(plan, state, lambda name: storage_for(plan.locations[name]))
    for name in plan.status_page.publish_to:
        if not any(f.startswith(f"location {name}:") for f in failed):
            click.echo(f"published the status page to {name} (status-page/index.html)")
    for line in failed:
        click.echo(f"drplan: {line}", err=True)
    if failed:
        raise DrplanError(f"the status page was not published to {len(failed)} location(s)",
                          hint="they are named above; the daemon tries again at every change")  # fmt: skip

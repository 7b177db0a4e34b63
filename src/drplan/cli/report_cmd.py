"""``drplan report``: the plan's recovery KPIs from its drills (and, as they are recorded,
its incidents), per window, tier and data class, against its success criteria."""

from __future__ import annotations

import click

from drplan.cli.context import Settings, pass_settings
from drplan.cli.drill_cmd import report_options, write_report


@click.command("report")
@report_options
@pass_settings
def report_command(
    settings: Settings, /, since: str, fmt: str, output: str | None, catalog: str | None
) -> None:
    """Recovery KPIs (within RTO, within RPO, data integrity) and restore-time trends, from
    the drills recorded in the catalog."""
    write_report(settings, since, fmt, output, catalog, runs=False)

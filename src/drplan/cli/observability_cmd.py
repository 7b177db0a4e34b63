"""``drplan observability rules|dashboard``: Prometheus alert rules and a Grafana dashboard
written from the plan (see drplan.observability.rules)."""

from __future__ import annotations

import json

import click

from drplan.cli.context import Settings, pass_settings
from drplan.errors import UsageError


@click.group("observability")
def observability_group() -> None:
    """Prometheus alert rules and a Grafana dashboard for the daemon's metrics."""


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)


@observability_group.command("rules", short_help="Prometheus alert rules from the plan.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.option(
    "--watch-every",
    metavar="DURATION",
    default="60s",
    show_default=True,
    help="The daemon's --watch-every: assessments older than three of these alert.",
)
@pass_settings
def rules_command(settings: Settings, /, output: str | None, watch_every: str) -> None:
    """Alert rules for Prometheus (`rule_files:`), schedule-aware per job."""
    import yaml  # noqa: PLC0415

    from drplan.observability.rules import rules  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        every = parse_duration(watch_every)
    except ValueError as exc:
        raise UsageError(f"--watch-every {watch_every!r}: {exc}", hint="e.g. 60s") from None
    plan = settings.load().plan
    text = "# Written by `drplan observability rules` from the plan; regenerate, do not edit.\n"
    text += yaml.safe_dump(rules(plan, every), sort_keys=False, width=1000)
    _write(text, output)


@observability_group.command(
    "dashboard",
    short_help="A Grafana dashboard for the daemon's metrics.",
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@pass_settings
def dashboard_command(settings: Settings, /, output: str | None) -> None:
    """A Grafana dashboard (JSON) for the daemon's metrics."""
    from drplan.observability.rules import dashboard  # noqa: PLC0415

    _write(json.dumps(dashboard(settings.load().plan), indent=2) + "\n", output)

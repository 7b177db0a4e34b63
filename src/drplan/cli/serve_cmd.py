"""``drplan serve``: the daemon that runs the plan (see drplan.scheduler.service)."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from drplan.cli.context import Settings, pass_settings
from drplan.cli.repo_access import password
from drplan.errors import UsageError
from drplan.locations.storage import storage_for
from drplan.repo.password import PASSWORD_FILE_ENV
from drplan.repo.repository import Repository

if TYPE_CHECKING:
    from drplan.plan.model import Plan


@click.command("serve")
@click.option(
    "--catalog",
    metavar="URL",
    help="Where run history goes: sqlite:///PATH or postgresql://... (default"
    " $DRPLAN_CATALOG, else SQLite in $DRPLAN_STATE_DIR or ~/.local/state/drplan).",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where the web server answers: the API, /metrics, /status, /healthz, /readyz"
    " (default: the plan's web.listen, 127.0.0.1:9760).",
)
@click.option(
    "--watch-every",
    metavar="DURATION",
    default="60s",
    show_default=True,
    help="How often every location is read to assess RPO exposure.",
)
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option(
    "--reload",
    "reload_running",
    is_flag=True,
    help="Ask the daemon running with this state directory to re-read the plan, and exit.",
)
@pass_settings
def serve_command(
    settings: Settings,
    /,
    catalog: str | None,
    listen: str | None,
    watch_every: str,
    password_file: str | None,
    reload_running: bool,
) -> None:
    """Run every job of the plan on its schedule until stopped (SIGTERM, Ctrl-C).

    SIGHUP (or `drplan serve --reload`) re-reads the plan: an invalid one is refused
    and the old keeps running. Each run is a child `drplan backup JOB`, recorded in
    the catalog.
    """
    from drplan.catalog.paths import default_url, state_dir  # noqa: PLC0415
    from drplan.scheduler.pidfile import signal_reload  # noqa: PLC0415
    from drplan.scheduler.service import ServeOptions, child_env, serve  # noqa: PLC0415

    if reload_running:
        pid = signal_reload(state_dir())
        click.echo(f"asked drplan serve (pid {pid}) to re-read the plan; its log says how it went")
        return
    plan_file = settings.load(actions=True)
    plan_path = os.path.abspath(plan_file.path)
    os.makedirs(state_dir(), mode=0o700, exist_ok=True)
    secret = password(settings, password_file)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    options = ServeOptions(
        state_dir=state_dir(),
        plan_path=plan_path,
        catalog_url=catalog or default_url(),
        listen=listen or plan_file.plan.web.listen,
        watch_every=_positive_duration(watch_every),
        env=child_env(
            plan_path,
            (PASSWORD_FILE_ENV, os.path.abspath(password_file)) if password_file else None,
        ),
    )

    def open_location(plan: Plan, name: str) -> Repository:
        return Repository.open(storage_for(plan.locations[name]), secret)

    serve(
        options, plan_file.plan, lambda: settings.load(plan_path, actions=True).plan, open_location
    )


def _positive_duration(text: str) -> timedelta:
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--watch-every {text!r}: {exc}", hint="e.g. 30s, 5m") from None
    if value <= timedelta(0):
        raise UsageError(f"--watch-every {text!r} must be positive", hint="e.g. 30s, 5m")
    return value

"""``drplan web``: the web server alone (the API, and soon the dashboard and the status
page), against the same catalog as the daemon: for a second host, or a host that does not
run the jobs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from drplan.cli.context import Settings, pass_settings

if TYPE_CHECKING:
    from drplan.plan.model import Plan
    from drplan.repo.repository import Repository


@click.command("web")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to answer (default: the plan's web.listen, 127.0.0.1:9760).",
)
@click.option(
    "--catalog",
    metavar="URL",
    help="The catalog (default $DRPLAN_CATALOG, else SQLite in the state directory).",
)
@pass_settings
def web_command(settings: Settings, /, listen: str | None, catalog: str | None) -> None:
    """Serve the API v1 (docs/web.md) until stopped (SIGTERM, Ctrl-C)."""
    from drplan.catalog.paths import default_url  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.catalog.store import Catalog  # noqa: PLC0415
    from drplan.web.app import build  # noqa: PLC0415
    from drplan.web.context import WebContext  # noqa: PLC0415
    from drplan.web.server import WebServer  # noqa: PLC0415

    plan_file = settings.load()
    plan = plan_file.plan
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    url = catalog or default_url()
    store = Catalog.open(url)
    stopping = threading.Event()
    try:
        ctx = WebContext(lambda: plan, str(plan_file.path), store, url,
                         open_location=_locations(settings))  # fmt: skip
        server = WebServer(build(ctx), listen or plan.web.listen, plan.web)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        server.start()
        logging.getLogger("drplan.web").info(
            "serving the API on %s/api/v1 (catalog %s)", server.url, store.url
        )
        stopping.wait()
        server.stop()
    finally:
        store.close()


def _locations(settings: Settings) -> Callable[[Plan, str], Repository] | None:
    """The repositories, when this host has their password (a second host may not: its
    API then lists no snapshots, and says why)."""
    from drplan.cli.repo_access import password  # noqa: PLC0415
    from drplan.errors import DrplanError  # noqa: PLC0415
    from drplan.locations.storage import storage_for  # noqa: PLC0415
    from drplan.repo.repository import Repository  # noqa: PLC0415

    try:
        secret = password(settings, None)
    except DrplanError:
        return None

    def open_location(plan: Plan, name: str) -> Repository:
        return Repository.open(storage_for(plan.locations[name]), secret)

    return open_location

"""``drplan serve``: the daemon that runs the plan (see drplan.scheduler.daemon)."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

import click

from drplan import clock
from drplan.cli.context import Settings, pass_settings


@click.command("serve")
@click.option(
    "--catalog",
    metavar="URL",
    help="Where run history goes: sqlite:///PATH or postgresql://... (default"
    " $DRPLAN_CATALOG, else SQLite in $DRPLAN_STATE_DIR or ~/.local/state/drplan).",
)
@pass_settings
def serve_command(settings: Settings, /, catalog: str | None) -> None:
    """Run every job of the plan on its schedule until stopped (SIGTERM, Ctrl-C).

    SIGHUP re-reads the plan (an invalid one is refused; the old keeps running).
    Each run is a child `drplan backup JOB`, recorded in the catalog.
    """
    from drplan.catalog.store import Catalog, default_url, state_dir  # noqa: PLC0415
    from drplan.scheduler.daemon import Daemon  # noqa: PLC0415

    plan_file = settings.load()
    url = catalog or default_url()
    if not catalog and not os.environ.get("DRPLAN_CATALOG"):
        os.makedirs(state_dir(), mode=0o700, exist_ok=True)
    store = Catalog.open(url)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    plan_path = os.path.abspath(plan_file.path)
    env = {**os.environ, "DRPLAN_PLAN": plan_path}
    env.pop("DRPLAN_NOW", None)  # runs record when they really happen
    daemon = Daemon(plan_file.plan, plan_path, store, clock.now, env=env)
    daemon.reload = lambda: settings.load(plan_path).plan

    def stop(signum: int, _frame: FrameType | None) -> None:
        daemon.stopping.set()

    def reload(signum: int, _frame: FrameType | None) -> None:
        daemon.reload_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    logging.getLogger("drplan.serve").info(
        "serving %s: %d job(s), catalog %s", plan_path, len(plan_file.plan.jobs), store.url
    )
    try:
        daemon.serve()
    finally:
        store.close()

"""``drplan serve`` assembled: the catalog, the daemon's loop, the watch on recoverability
and the web server (the API, /metrics, /status, /healthz, /readyz), wired together and run until a signal stops them. The CLI
parses flags into ``ServeOptions``; everything else happens here."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.drills.report import KPI_SPAN, current_kpis
from drplan.drills.schedule import newest_drills
from drplan.errors import DrplanError
from drplan.incidents.engine import Engine
from drplan.incidents.outcomes import from_catalog
from drplan.incidents.outcomes import recoveries as incident_recoveries
from drplan.incidents.service import journal_dir, over_catalog
from drplan.notify.notifier import Notifier
from drplan.notify.problems import problems
from drplan.observability.metrics import DaemonCollector, registry
from drplan.observability.status import Status, as_json, last_runs
from drplan.observability.watch import Watcher
from drplan.plan.model import Plan
from drplan.plan.model.storage import JobType
from drplan.repo.repository import Repository
from drplan.scheduler.daemon import Daemon
from drplan.scheduler.pidfile import remove_pidfile, write_pidfile
from drplan.scheduler.runs import child_env
from drplan.scheduler.triggers import CHANGE, Trigger, listens
from drplan.scheduler.watch import DAEMON, Watches, watchable
from drplan.statuspage.probes import Prober, probe_spans
from drplan.statuspage.state import Outages
from drplan.statuspage.uptime import DAYS
from drplan.web.app import build
from drplan.web.context import WebContext
from drplan.web.server import WebServer

log = logging.getLogger("drplan.serve")


def probe_history() -> Path:
    """Where the status page's probes note each change of a component's state."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415

    return Path(state_dir()) / "status-page-probes.jsonl"


def open_incidents_status(catalog_url: str | None, now: datetime) -> list[dict[str, Any]]:
    """The open incidents (this host's journal and the catalog), as `incident status`
    shows them: for /metrics and the alert rules."""
    from drplan.incidents.predict import predict  # noqa: PLC0415
    from drplan.incidents.service import open_incidents  # noqa: PLC0415
    from drplan.incidents.view import status  # noqa: PLC0415

    try:
        with open_incidents(catalog_url) as service:
            return [status(i, predict(i, now), now) for i in service.open_ones()]
    except DrplanError as exc:  # the rest of the assessment goes on without them
        log.error("reading the open incidents failed: %s", exc.message)
        return []


@dataclass(frozen=True)
class ServeOptions:
    state_dir: str  # where serve.pid tells `drplan serve --reload` whom to signal
    plan_path: str  # absolute: children run elsewhere
    catalog_url: str
    listen: str
    watch_every: timedelta
    env: dict[str, str]  # for the children: the password's source, the plan


def serve(
    options: ServeOptions,
    plan: Plan,
    load_plan: Callable[[], Plan],
    open_location: Callable[[Plan, str], Repository],
) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads the plan through ``load_plan``."""
    # The scheduler shares the interpreter with the web server: a thread waking for a
    # job's slot gets the interpreter after 1 ms of another's work, not 5.
    sys.setswitchinterval(0.001)
    # watchfiles logs every batch of changes at INFO; the daemon says what it does with them.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    store = Catalog.open(options.catalog_url)
    daemon = Daemon(plan, options.plan_path, store, clock.now, env=options.env,
                    state_dir=options.state_dir)  # fmt: skip
    daemon.reload = load_plan
    assert daemon.ledger is not None
    ledger = daemon.ledger
    watches = _Watching(daemon)
    daemon.on_reload = watches.arm  # a reloaded plan may watch other paths

    notifier = Notifier(lambda: daemon.plan, store, clock.now, daemon.host)

    def alert(status: Status) -> None:
        notifier.update(problems(daemon.plan, status, dict(daemon.failures), daemon.since,
                                 dict(daemon.partials)))  # fmt: skip

    watcher = Watcher(
        lambda: daemon.plan,
        open_location,
        lambda: last_runs(store, daemon.plan.jobs),
        clock.now,
        options.watch_every,
        alert,
        lambda: newest_drills(store, daemon.plan),
        daemon.since,
        lambda now: current_kpis(
            daemon.plan,
            store.drills(since=now - KPI_SPAN),
            now,
            incident_recoveries(from_catalog(store, now - KPI_SPAN)[0]),
        ),
        lambda now: open_incidents_status(options.catalog_url, now),
        triggers=ledger.read,
    )

    def ready() -> str | None:
        if watcher.latest is None:
            return "the locations have not been read yet"
        try:
            store.last_run("")  # the catalog answers
        except DrplanError as exc:
            return exc.message
        return None

    collector = DaemonCollector(
        lambda: daemon.events, lambda: watcher.latest, lambda: set(daemon.running)
    )
    engine = _incident_engine(daemon, store)
    prober = Prober(lambda: daemon.plan.status_page, daemon.stopping, probe_history())

    def page_health() -> tuple[dict[str, str], Outages]:
        return prober.states(), probe_spans(probe_history(), clock.now() - timedelta(days=DAYS))

    web = WebContext(
        lambda: daemon.plan, options.plan_path, store, options.catalog_url,
        status=lambda: as_json(watcher.latest) if watcher.latest else None,
        ready=ready, registry=registry(collector), changed=engine.poke,
        open_location=open_location, page_health=page_health, trigger=daemon.fire,
    )  # fmt: skip
    server = WebServer(build(web), options.listen, plan.web)
    _handle_signals(daemon)
    pidfile = write_pidfile(options.state_dir)
    _resume(daemon)
    watches.arm(plan)
    server.start()
    watcher.start()
    engine.start()
    prober.start()
    publishing = threading.Thread(target=_publish_status_page, name="drplan-status-page",
                                  args=(daemon, store, page_health), daemon=True)  # fmt: skip
    publishing.start()
    log.info("serving %s: %d job(s), catalog %s, %s/metrics",
             options.plan_path, len(plan.jobs), store.url, server.url)  # fmt: skip
    try:
        daemon.serve()
    finally:
        watches.stop()
        _unwatched(daemon)
        engine.stop()
        watcher.stop()
        notifier.stop()
        server.stop()
        store.close()
        remove_pidfile(pidfile)


class _Watching:
    """The watches of the plan as loaded now: armed anew when the plan is."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.watches: Watches | None = None

    def changed(self, job: str, detail: str, at: datetime) -> None:
        self.daemon.fire(job, Trigger(CHANGE, "watch", at, detail))

    def arm(self, plan: Plan) -> None:
        self.stop()
        assert self.daemon.ledger is not None
        self.watches = Watches(self.daemon.ledger, self.changed, clock.now)
        self.watches.arm(plan)

    def stop(self) -> None:
        if self.watches is not None:
            self.watches.stop()


def _resume(daemon: Daemon) -> None:
    """Queue what the triggered jobs owe: for a files system's ``on change`` job a run now
    (what changed while no daemon watched was not seen); for any other, a run when the
    ledger holds changes or events no run backed up (the daemon stopped, or its runs failed).
    A git system's refs tell by themselves what changed: its watch compares them."""
    assert daemon.ledger is not None
    kinds = watchable(daemon.plan)
    records = daemon.ledger.read()
    now = daemon.clock()
    for name, job in daemon.plan.jobs.items():
        event = listens(job)
        if event is None or job.type is JobType.WAL:
            continue
        if name in kinds:
            since = daemon.ledger.rearmed(name, DAEMON, a_change=kinds[name] == "files")
            if kinds[name] == "files":
                daemon.fire(name, Trigger(CHANGE, "watch", since or now, "the daemon started:"
                                          " what changed while nothing watched was not seen"))  # fmt: skip
                continue
        record = records.get(name)
        if record is not None and record.changes:
            daemon.fire(name, Trigger(event, "restart", record.changes[0],
                                      "not backed up before the daemon stopped"))  # fmt: skip


def _unwatched(daemon: Daemon) -> None:
    """From now on no daemon watches: the ``on change`` jobs are at risk until one does."""
    assert daemon.ledger is not None
    for name in watchable(daemon.plan):
        try:
            daemon.ledger.lost(name, DAEMON, daemon.clock(), "drplan serve is not running")
        except OSError as exc:
            log.error("job %s: could not note that nothing watches it: %s", name, exc.strerror)


def _incident_engine(daemon: Daemon, store: Catalog) -> Engine:
    """The resident driver of this host's open incidents, over the daemon's catalog."""
    from drplan.incidents.operations import copy_off_site  # noqa: PLC0415

    return Engine(journal_dir(), lambda: over_catalog(store, copy_off_site), daemon.stopping)


def _publish_status_page(
    daemon: Daemon, store: Catalog, health: Callable[[], tuple[dict[str, str], Outages]]
) -> None:
    """The status page's static copy written, and its subscribers told, at every change
    of the page while the daemon runs (when the plan names locations or subscribers for
    it); a failure is logged once, and tried again at the next look."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.locations.storage import storage_for  # noqa: PLC0415
    from drplan.statuspage.publish import LOOK_EVERY, Publisher  # noqa: PLC0415
    from drplan.statuspage.state import page_state  # noqa: PLC0415
    from drplan.statuspage.subscribers import Subscribers  # noqa: PLC0415

    publisher = Publisher(lambda: daemon.plan,
                          lambda plan, name: storage_for(plan.locations[name]))  # fmt: skip
    subscribers = Subscribers(
        lambda: daemon.plan, Path(state_dir()) / "status-page-subscribers.json"
    )
    said: list[str] = []
    while not daemon.stopping.wait(LOOK_EVERY):
        page = daemon.plan.status_page
        if page is None or not (page.publish_to or page.subscribers):
            continue
        try:
            service = over_catalog(store)
            now = clock.now()
            found = page_state(page, service.everything(), now, *health())
            failed = publisher.tick(found) + subscribers.tick(found, now)
        except DrplanError as exc:
            failed = [exc.message]
        if failed != said:
            for line in failed:
                log.error("status page not published: %s", line)
            if said and not failed:
                log.info("status page published again")
            said = failed


def _handle_signals(daemon: Daemon) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        daemon.stopping.set()

    def reload(signum: int, _frame: FrameType | None) -> None:
        daemon.reload_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


__all__ = ["ServeOptions", "child_env", "serve"]

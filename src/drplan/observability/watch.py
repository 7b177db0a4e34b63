"""The daemon's watch on the plan's recoverability: every ``every`` seconds, read every
location once (see ``rpo.gather``) and keep the resulting status for metrics, the
status endpoint and alerts. In a thread of its own: a slow or hanging location must
not hold up the schedule."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drplan.errors import DrplanError
from drplan.observability.rpo import gather
from drplan.observability.status import JobRun, Status, build_status
from drplan.plan.model import Plan
from drplan.repo.repository import Repository

if TYPE_CHECKING:
    from drplan.scheduler.ledger import JobChanges

log = logging.getLogger("drplan.serve")

WATCH_EVERY = timedelta(seconds=60)
# What a location stores is listed object by object: on a large S3 repository that is
# many requests, so it is counted this often, and the last count shown in between.
SIZES_EVERY = timedelta(minutes=15)


class Watcher:
    def __init__(
        self,
        plan: Callable[[], Plan],
        open_location: Callable[[Plan, str], Repository],
        last_runs: Callable[[], dict[str, JobRun]],
        clock: Callable[[], datetime],
        every: timedelta = WATCH_EVERY,
        on_assessed: Callable[[Status], None] | None = None,
        last_drills: Callable[[], dict[str, dict[str, Any]]] | None = None,
        since: datetime | None = None,
        kpis: Callable[[datetime], dict[str, Any]] | None = None,
        incidents: Callable[[datetime], list[dict[str, Any]]] | None = None,
        triggers: Callable[[], Mapping[str, JobChanges]] | None = None,
    ) -> None:
        self.plan = plan
        self.open_location = open_location
        self.last_runs = last_runs
        self.clock = clock
        self.every = every
        self.on_assessed = on_assessed  # e.g. alerting on the problems the status shows
        self.last_drills = last_drills  # each drill's newest run, for overdue drills
        self.since = since
        self.kpis = kpis  # the recovery KPIs from the drills' records
        self.incidents = incidents  # the open incidents, each as `incident status` shows it
        self.triggers = triggers  # the ledger of triggered jobs: changes not backed up yet
        self._sizes: dict[str, dict[str, int]] = {}  # per location, as last counted
        self._sized_at: datetime | None = None
        self.latest: Status | None = None
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drplan-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching. An assessment still waiting on a location that does not answer is
        left behind (the thread is a daemon thread): it must not hold the daemon's exit."""
        self.stopping.set()
        self._thread.join(timeout=1)

    def assess(self) -> Status:
        plan = self.plan()
        now = self.clock()
        count = self._sized_at is None or abs(now - self._sized_at) >= SIZES_EVERY
        facts = gather(plan, lambda name: self.open_location(plan, name), sizes=count)
        if count:
            self._sized_at = now
            self._sizes = {f.location: f.sizes for f in facts if f.error is None}
        for f in facts:
            if not count and f.error is None:
                f.sizes = self._sizes.get(f.location, {})
        drills = self.last_drills() if self.last_drills else None
        ledger = self.triggers() if self.triggers else None
        status = build_status(plan, facts, now, self.last_runs(), drills, self.since, ledger)
        if self.kpis is not None:
            status.kpis = self.kpis(now)
        if self.incidents is not None:
            status.incidents = self.incidents(now)
        self.latest = status
        if self.on_assessed is not None:
            self.on_assessed(status)
        return status

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.assess()
            except DrplanError as exc:  # the catalog away: said once a round, no trace
                log.error("assessing recoverability failed: %s", exc.message)
            except Exception:  # a bug here must not end the watch; it is logged with its trace
                log.exception("assessing recoverability failed")
            self.stopping.wait(self.every.total_seconds())

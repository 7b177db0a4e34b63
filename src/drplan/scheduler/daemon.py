"""``drplan serve``'s loop: run every job of the plan on its schedule, once per slot.

Each tick the daemon looks at every job with a cron or interval schedule: a job whose
slot has come (see ``timing``), that is not running and whose lease it can take,
starts as a child process (see ``runs``) and is recorded in the catalog; a running
job is polled, stopped past its timeout, and its outcome recorded. A failed run is
retried with jittered backoff until the job's next slot supersedes it. A run still
going when its next slot comes is reported as overrunning once, and never doubled.
A continuous task (the WAL stream) is started when the daemon starts and restarted,
with backoff, whenever it ends; each of its runs is one row in the catalog.

Stopping (SIGTERM, SIGINT) ends the loop: running jobs get ``STOP_GRACE`` to finish,
then are killed and recorded as abandoned. SIGHUP re-reads the plan; an invalid plan
is refused and the old one keeps running.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drplan.catalog.store import (
    ABANDONED,
    FAILED,
    PARTIAL,
    RUNNING,
    SUCCEEDED,
    Catalog,
    RunStart,
)
from drplan.errors import DrplanError, IntegrityError
from drplan.notify.problems import JobFailures
from drplan.plan.model import Plan
from drplan.scheduler.runs import JobProcess, Outcome
from drplan.scheduler.tasks import Task, conflicts, tasks
from drplan.scheduler.timing import due, next_slot, retry_delay

log = logging.getLogger("drplan.serve")

TICK = timedelta(seconds=1)  # the longest the loop sleeps: runs are noticed within it
LEASE = timedelta(seconds=30)  # renewed every tick while a run goes on; a dead holder's
# runs are taken over by another daemon this long after it stopped renewing
STOP_GRACE = timedelta(seconds=30)
STOPPED = "the daemon stopped during the run"
# A stream that ends is restarted after a jittered delay doubling from STREAM_RETRY up to
# STREAM_RETRY_CAP, and from STREAM_RETRY again once it had run STREAM_STEADY: a server
# restart costs seconds of WAL, a server that stays down is not hammered.
STREAM_RETRY = timedelta(seconds=2)
STREAM_RETRY_CAP = timedelta(minutes=2)
STREAM_STEADY = timedelta(minutes=1)


@dataclass
class _Running:
    process: JobProcess
    run_id: int
    slot: datetime
    attempt: int
    task: Task
    start: RunStart  # how to find it again in a catalog that failed over meanwhile
    overrun_reported: bool = False
    outcome: Outcome | None = None  # ended, not yet recorded (the catalog was away)


@dataclass
class _Retry:
    slot: datetime
    attempt: int  # the attempt to make
    at: datetime


@dataclass(frozen=True)
class CheckResult:
    """What the last ``check`` of a location found."""

    at: datetime
    errors: int
    bytes_read: int


@dataclass
class JobEvents:
    """What happened to one job since the daemon started, for metrics and tests."""

    started: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    overruns: int = 0
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_duration: timedelta | None = None
    last_added: int | None = None  # bytes of new data the last successful run stored
    check: CheckResult | None = None  # for a check task: its last report


class Daemon:
    def __init__(
        self,
        plan: Plan,
        plan_path: str,
        catalog: Catalog,
        clock: Callable[[], datetime],
        *,
        host: str | None = None,
        env: dict[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.tasks = tasks(plan)
        self.plan_path = plan_path
        self.catalog = catalog
        self.clock = clock
        self.host = host or socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}"  # unique per daemon, also on one host
        self.env = env
        self.rng = rng or random.Random()
        self.since = clock()
        self.running: dict[str, _Running] = {}
        self.retries: dict[str, _Retry] = {}
        self.events: dict[str, JobEvents] = {}
        self.failures: dict[str, JobFailures] = {}  # failed runs in a row, per job
        self.partials: dict[str, JobFailures] = {}  # partial runs in a row (exit 14, 16)
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.reload: Callable[[], Plan] | None = None  # reads the plan file again
        self._orphans_checked = self.since
        orphans = catalog.abandon_orphans(self.since, self.holder)
        if orphans:
            log.warning("%d run(s) left running by a daemon that died marked abandoned", orphans)

    # -- the loop ---------------------------------------------------------------------------

    def serve(self) -> None:
        """Tick until asked to stop, then stop the runs still going."""
        while not self.stopping.is_set():
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            try:
                self.tick()
            except DrplanError as exc:  # the catalog went away: keep trying, say so
                log.error("%s%s", exc.message, f"; {exc.hint}" if exc.hint else "")
            self.stopping.wait(self._sleep().total_seconds())
        self.shutdown()

    def _sleep(self) -> timedelta:
        now = self.clock()
        wake = now + TICK
        for task in self.tasks:
            if task.name in self.running:
                continue
            upcoming = next_slot(task.schedule, task.timezone, now)
            if upcoming is not None and upcoming < wake:
                wake = upcoming
        return max(timedelta(0), min(wake - now, TICK))

    def _reload(self) -> None:
        if self.reload is None:
            return
        try:
            plan = self.reload()
        except DrplanError as exc:
            log.error("the plan was not reloaded, the old one keeps running: %s", exc.message)
            return
        self.plan, self.tasks = plan, tasks(plan)
        log.info("plan reloaded: %d job(s)", len(plan.jobs))

    def tick(self) -> None:
        now = self.clock()
        if now - self._orphans_checked >= LEASE:
            self._orphans_checked = now
            if self.catalog.abandon_orphans(now, self.holder):
                log.warning("runs of a daemon that died marked abandoned")
        for name in list(self.running):
            self._poll(name, now)
        for task in self.tasks:
            name = task.name
            if name in self.running:
                self._check_overrun(name, now)
                continue
            if task.continuous:
                retry = self.retries.get(name)
                if retry is None or now >= retry.at:
                    self._start(task, now, retry.attempt if retry else 1, now)
                continue
            slot_due = due(
                task.schedule, task.timezone, now, self.catalog.last_slot(name), self.since
            )
            retry = self.retries.get(name)
            if slot_due is not None:
                if slot_due.missed:
                    log.warning(
                        "job %s: %d slot(s) passed without a run (the daemon was down, or"
                        " the last run overran); running once for the newest",
                        name,
                        slot_due.missed,
                    )
                self.retries.pop(name, None)
                self._start(task, slot_due.slot, 1, now)
            elif retry is not None and now >= retry.at:
                self._start(task, retry.slot, retry.attempt, now)

    def _start(self, task: Task, slot: datetime, attempt: int, now: datetime) -> None:
        name = task.name
        if any(conflicts(task, other.task) for other in self.running.values()):
            return  # its location is busy: still due, started on a later tick
        if not self.catalog.acquire(f"job:{name}", self.holder, now, now + LEASE):
            return  # another daemon runs it
        last = self.catalog.last_slot(name)
        if attempt == 1 and last is not None and last >= slot:
            # Another daemon ran this slot between our look and our lease.
            self.catalog.release(f"job:{name}", self.holder)
            return
        if self.catalog.abandon_orphans(now, self.holder):  # the job's lease was a dead daemon's
            log.warning("job %s: the run of a daemon that died marked abandoned", name)
        start = RunStart(name, self.holder, now, slot, attempt)
        run_id = self.catalog.start_run(name, self.holder, now, slot, attempt)
        process = JobProcess(
            self.plan_path, name, task.argv, task.timeout, self.env, follow=task.continuous
        )
        self.running[name] = _Running(process, run_id, slot, attempt, task, start)
        self.retries.pop(name, None)
        events = self.events.setdefault(name, JobEvents())
        events.started += 1
        events.last_attempt = now
        log.info("job %s: started for %s (attempt %d, pid %d)", name, slot.isoformat(),
                 attempt, process.pid)  # fmt: skip

    def _poll(self, name: str, now: datetime) -> None:
        running = self.running[name]
        outcome = running.outcome or running.process.poll()
        if outcome is None:
            self.catalog.acquire(f"job:{name}", self.holder, now, now + LEASE)  # renew
            return
        if self.stopping.is_set() and outcome.status not in (SUCCEEDED, PARTIAL):
            outcome = Outcome(ABANDONED, outcome.report, STOPPED, outcome.exit_code)
        elif running.task.continuous and not self.stopping.is_set():
            # It should never end: however it did, it is a failure, and it restarts.
            error = outcome.error or f"it ended (exit code {outcome.exit_code})"
            outcome = Outcome(FAILED, outcome.report, error, outcome.exit_code)
        # Kept until recorded: with the catalog away, the outcome waits for it to return.
        running.outcome = outcome
        report = outcome.report
        location = str(report.get("location", "")).split(" (", 1)[0] or None
        summary = report.get("summary") or {}
        self.catalog.finish_run(
            running.run_id,
            outcome.status,
            now,
            snapshot=report.get("snapshot"),
            location=location,
            bytes_added=summary.get("bytes_added"),
            bytes_stored=summary.get("bytes_stored"),
            error=outcome.error,
            start=running.start,
        )
        del self.running[name]
        self.catalog.release(f"job:{name}", self.holder)
        events = self.events.setdefault(name, JobEvents())
        events.outcomes[outcome.status] = events.outcomes.get(outcome.status, 0) + 1
        events.last_duration = running.process.elapsed
        if running.task.argv[0] == "check" and "ok" in report:
            errors = [f for f in report.get("findings", []) if f.get("severity") == "error"]
            events.check = CheckResult(now, len(errors), int(report.get("bytes_read") or 0))
        if outcome.status in (SUCCEEDED, PARTIAL):
            events.last_success = now
            events.last_added = summary.get("bytes_added")
            self.failures.pop(name, None)
            if outcome.status == PARTIAL:
                partial = self.partials.setdefault(name, JobFailures())
                partial.count, partial.error = partial.count + 1, outcome.error
                log.warning("job %s: partial: %s", name, outcome.error)
            else:
                self.partials.pop(name, None)
                log.info("job %s: %s", name, outcome.status)
            return
        if outcome.status == ABANDONED:
            return
        failed = self.failures.setdefault(name, JobFailures())
        failed.count, failed.error = failed.count + 1, outcome.error
        failed.damaged = outcome.exit_code == IntegrityError.exit_code
        codes = running.task.retry_codes
        if codes is not None and outcome.exit_code not in codes:
            log.error("job %s: %s: %s; not retried: it runs again at its next slot", name,
                      outcome.status, outcome.error)  # fmt: skip
            return
        attempt = running.attempt
        if running.task.continuous:
            if running.process.elapsed >= STREAM_STEADY:
                attempt = 1  # it ran well for a while: this is a new trouble
            delay = retry_delay(attempt, STREAM_RETRY, STREAM_RETRY_CAP, rng=self.rng)
        else:
            delay = retry_delay(attempt, rng=self.rng)
        self.retries[name] = _Retry(running.slot, attempt + 1, now + delay)
        log.error("job %s: %s: %s; retry in %ds", name, outcome.status, outcome.error,
                  int(delay.total_seconds()))  # fmt: skip

    def _check_overrun(self, name: str, now: datetime) -> None:
        running = self.running[name]
        if running.overrun_reported:
            return
        task = running.task
        if task.continuous:
            return
        upcoming = next_slot(task.schedule, task.timezone, running.slot)
        if upcoming is not None and now >= upcoming:
            running.overrun_reported = True
            self.events.setdefault(name, JobEvents()).overruns += 1
            log.warning("job %s: still running at its next slot (%s); not started twice",
                        name, upcoming.isoformat())  # fmt: skip

    # -- stopping ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Let running jobs finish for STOP_GRACE, then kill them and record them abandoned."""
        if not self.running:
            return
        log.info("stopping: waiting up to %ds for %d running job(s)",
                 int(STOP_GRACE.total_seconds()), len(self.running))  # fmt: skip
        for running in self.running.values():
            running.process.terminate()
        deadline = time.monotonic() + STOP_GRACE.total_seconds()
        while self.running and time.monotonic() < deadline:
            for name in list(self.running):
                self._poll(name, self.clock())
            threading.Event().wait(0.1)
        for name, running in list(self.running.items()):
            running.process.kill()
            try:
                self.catalog.finish_run(running.run_id, ABANDONED, self.clock(), error=STOPPED,
                                        start=running.start)  # fmt: skip
                self.catalog.release(f"job:{name}", self.holder)
            except DrplanError as exc:  # the next daemon's orphan check closes it
                log.error("job %s: its end could not be recorded: %s", name, exc.message)
            del self.running[name]


__all__ = ["RUNNING", "Daemon", "JobEvents"]

"""``drplan serve``'s loop: run every job of the plan on its schedule, once per slot.

Each tick the daemon looks at every job with a cron or interval schedule: a job whose
slot has come (see ``timing``), that is not running and whose lease it can take,
starts as a child process (see ``runs``) and is recorded in the catalog; a running
job is polled, stopped past its timeout, and its outcome recorded. A failed run is
retried with jittered backoff until the job's next slot supersedes it. A run still
going when its next slot comes is reported as overrunning once, and never doubled.
A continuous task (the WAL stream) is started when the daemon starts and restarted,
with backoff, whenever it ends; each of its runs is one row in the catalog.

A job scheduled ``on EVENT`` runs when a trigger asks (see ``triggers``): ``fire`` queues
it (at most one run pending behind the one running), the loop starts it once its
debounce allows, and the catalog records what triggered it. Events handed over by
``drplan trigger`` are read from the state directory's inbox every tick; every change and
event is noted in the ledger until a run has backed it up (RPO exposure counts from it).

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
from typing import Any

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
from drplan.scheduler.inbox import collect
from drplan.scheduler.ledger import Ledger
from drplan.scheduler.runs import JobProcess, Outcome
from drplan.scheduler.tasks import Task, conflicts, tasks
from drplan.scheduler.timing import due, next_slot, retry_delay
from drplan.scheduler.triggers import Pending, Trigger, TriggerQueue, jobs_for

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
    slot: datetime | None  # None: a triggered run
    attempt: int
    task: Task
    start: RunStart  # how to find it again in a catalog that failed over meanwhile
    overrun_reported: bool = False
    outcome: Outcome | None = None  # ended, not yet recorded (the catalog was away)


@dataclass
class _Retry:
    slot: datetime | None
    attempt: int  # the attempt to make
    at: datetime
    triggered_by: dict[str, Any] | None = None  # a triggered run's trigger, kept for its retries


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
        state_dir: str | None = None,
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
        self.on_reload: Callable[[Plan], None] | None = None  # told the plan read again
        self.triggers = TriggerQueue()
        # A trigger is noted in the ledger and queued, and a run takes the queue's and
        # starts its span in the ledger, each as one step: a trigger between the two would
        # be counted in a span that the run then marks backed up, before it is.
        self._firing = threading.Lock()
        self._marks: dict[
            str, datetime
        ] = {}  # when each triggered job's last run took its triggers
        # Where `drplan trigger` leaves events, and the ledger of changes not backed up.
        self.state_dir = state_dir
        self.ledger = Ledger(state_dir) if state_dir else None
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
            if task.triggered:
                upcoming = self.triggers.wake(task.name, task.debounce)
                if upcoming is not None and upcoming < wake:
                    wake = upcoming
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
        if self.on_reload is not None:
            self.on_reload(plan)

    # -- triggers ---------------------------------------------------------------------------

    def fire(self, job: str, trigger: Trigger) -> None:
        """Queue a run of ``job`` for ``trigger``, noted in the ledger until backed up."""
        with self._firing:
            if self.ledger is not None:
                try:
                    # Not before the last run took its triggers: it did not take this one.
                    self.ledger.changed(job, max(trigger.at, self._marks.get(job, trigger.at)))
                except OSError as exc:  # the run still goes: it is what makes the change safe
                    log.error("job %s: the change could not be noted in %s: %s", job,
                              self.ledger.path, exc.strerror)  # fmt: skip
            self.triggers.add(job, trigger)

    def fire_event(self, event: str, job: str | None, source: str, detail: str = "",
                   at: datetime | None = None) -> list[str]:  # fmt: skip
        """Queue the jobs ``event`` runs (only ``job``, if given); their names. UsageError
        when no job of the plan listens to it (see ``triggers.jobs_for``)."""
        names = jobs_for(self.plan, event, job)
        when = at or self.clock()
        for name in names:
            self.fire(name, Trigger(event.lower(), source, when, detail))
        log.info("event %s (%s) queued %s", event, source, ", ".join(names))
        return names

    def _read_inbox(self) -> None:
        if self.state_dir is None:
            return
        for handed in collect(self.state_dir):
            try:
                self.fire_event(handed.event, handed.job, "cli", at=handed.at)
            except DrplanError as exc:  # the plan changed since the command read it
                log.error("event %s from drplan trigger not queued: %s", handed.event,
                          exc.message)  # fmt: skip

    def _tick_triggered(self, task: Task, now: datetime) -> None:
        name = task.name
        pending = self.triggers.ready(name, now, task.debounce)
        retry = self.retries.get(name)
        if pending is not None:  # a new trigger supersedes a retry: it runs the same backup
            self._start(task, None, 1, now, pending=pending)
        elif retry is not None and now >= retry.at:
            self._start(task, None, retry.attempt, now, triggered_by=retry.triggered_by)

    def tick(self) -> None:
        now = self.clock()
        self._read_inbox()
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
            if task.triggered:
                self._tick_triggered(task, now)
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

    def _start(
        self,
        task: Task,
        slot: datetime | None,
        attempt: int,
        now: datetime,
        *,
        pending: Pending | None = None,
        triggered_by: dict[str, Any] | None = None,
    ) -> bool:
        """Start a run for ``slot`` (None: for a trigger); whether it started."""
        name = task.name
        if any(conflicts(task, other.task) for other in self.running.values()):
            return False  # its location is busy: still due, started on a later tick
        if not self.catalog.acquire(f"job:{name}", self.holder, now, now + LEASE):
            return False  # another daemon runs it
        last = self.catalog.last_slot(name)
        if slot is not None and attempt == 1 and last is not None and last >= slot:
            # Another daemon ran this slot between our look and our lease.
            self.catalog.release(f"job:{name}", self.holder)
            return False
        if self.catalog.abandon_orphans(now, self.holder):  # the job's lease was a dead daemon's
            log.warning("job %s: the run of a daemon that died marked abandoned", name)
        with self._firing:
            if pending is not None:
                # Taken before the run reads anything: a trigger from now on is for the next.
                self.triggers.taken(name, pending)
                triggered_by = pending.record()
            if task.triggered:
                self._note_start(name, self.clock())
        start = RunStart(name, self.holder, now, slot, attempt, triggered_by)
        run_id = self.catalog.start_run(name, self.holder, now, slot, attempt, triggered_by)
        process = JobProcess(
            self.plan_path, name, task.argv, task.timeout, self.env, follow=task.continuous
        )
        self.running[name] = _Running(process, run_id, slot, attempt, task, start)
        self.retries.pop(name, None)
        events = self.events.setdefault(name, JobEvents())
        events.started += 1
        events.last_attempt = now
        why = slot.isoformat() if slot is not None else _said(triggered_by)
        log.info("job %s: started for %s (attempt %d, pid %d)", name, why, attempt,
                 process.pid)  # fmt: skip
        return True

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
        self._backed_up(running, outcome)
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
        self.retries[name] = _Retry(running.slot, attempt + 1, now + delay,
                                    running.start.triggered_by)  # fmt: skip
        log.error("job %s: %s: %s; retry in %ds", name, outcome.status, outcome.error,
                  int(delay.total_seconds()))  # fmt: skip

    def _note_start(self, name: str, at: datetime) -> None:
        """A triggered run starts at ``at``: what changes from now on is for the next."""
        self._marks[name] = at
        if self.ledger is None:
            return
        try:
            self.ledger.started(name, at)
        except OSError as exc:
            log.error("job %s: its start could not be noted in %s: %s", name,
                      self.ledger.path, exc.strerror)  # fmt: skip

    def _backed_up(self, running: _Running, outcome: Outcome) -> None:
        """After a triggered run that succeeded, every location has what changed before it
        started: the ledger forgets those changes."""
        if self.ledger is None or not running.task.triggered or outcome.status != SUCCEEDED:
            return
        name = running.task.name
        try:
            self.ledger.succeeded(name, self._marks.get(name, running.start.started_at))
        except OSError as exc:
            log.error("job %s: its success could not be noted in %s: %s", name,
                      self.ledger.path, exc.strerror)  # fmt: skip

    def _check_overrun(self, name: str, now: datetime) -> None:
        running = self.running[name]
        if running.overrun_reported:
            return
        task = running.task
        if task.continuous or running.slot is None:
            return  # a triggered run has no next slot: a trigger meanwhile waits behind it
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


def _said(triggered_by: dict[str, Any] | None) -> str:
    """A trigger in a log line: ``event deployment (cli)``."""
    if not triggered_by:
        return "a trigger"
    count = int(triggered_by.get("count") or 1)
    more = f", {count} triggers" if count > 1 else ""
    return f"event {triggered_by.get('event')} ({triggered_by.get('source')}{more})"


__all__ = ["RUNNING", "Daemon", "JobEvents"]

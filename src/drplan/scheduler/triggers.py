"""Runs asked for by something other than the clock: the jobs scheduled ``on EVENT``.

Terms:

* a **trigger** is one request for a job's run: an event (``drplan trigger deployment``,
  ``POST /api/v1/events/deployment``, a registry's push notification) or a change a
  watch saw (``on change``), with where it came from: ``cli``, ``api``, ``webhook``,
  ``watch``;
* triggers **coalesce**: a job has at most one run *pending*, however many triggers
  come, besides the one running (a change during a run is backed up after it, not lost
  and not queued twice);
* an ``on change`` job's pending run is **debounced**: it starts once no change came for
  the job's ``debounce``, or at the latest ``BURST_FACTOR`` times that after the first,
  so a path that never rests is still backed up. An event starts its run at once.

Which jobs an event reaches is decided here, once, for the CLI, the API and the webhook.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drplan.errors import UsageError
from drplan.plan.model import Job, Plan
from drplan.plan.schedule import ScheduleKind

CHANGE = "change"
DEFAULT_DEBOUNCE = timedelta(seconds=30)
DEFAULT_POLL = timedelta(minutes=1)
BURST_FACTOR = (
    10  # a busy path is backed up at the latest this many debounces after its first change
)
SOURCES = ("cli", "api", "webhook", "watch")
PUSH_EVENTS = ("deployment", "push")  # what a registry push fires, for an images system's jobs


@dataclass(frozen=True)
class Trigger:
    event: str  # the event the job listens to: "deployment", "change", ...
    source: str  # cli, api, webhook, watch
    at: datetime
    detail: str = ""  # what changed or was pushed, for the run's record


@dataclass
class Pending:
    """The run a job is owed: its first trigger, when the last came, how many came."""

    first: Trigger
    last_at: datetime
    count: int = 1
    sources: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the catalog keeps with the run (``triggered_by``)."""
        return {"event": self.first.event, "source": self.first.source,
                "detail": self.first.detail, "count": self.count,
                "sources": sorted(set(self.sources))}  # fmt: skip


def listens(job: Job) -> str | None:
    """The event a job runs on, if it runs on one."""
    return job.schedule.event if job.schedule.kind is ScheduleKind.EVENT else None


def debounce_of(job: Job) -> timedelta | None:
    """How long an ``on change`` job waits for quiet; None: an event runs at once."""
    if listens(job) != CHANGE:
        return None
    return job.debounce or DEFAULT_DEBOUNCE


def jobs_for(plan: Plan, event: str, job: str | None = None) -> list[str]:
    """The jobs ``event`` runs (only ``job``, when given). UsageError (exit 2) naming the
    events the plan's jobs listen to when none listens to it."""
    event = event.lower()
    heard = sorted({e for j in plan.jobs.values() if (e := listens(j)) is not None})
    listening = [name for name, j in plan.jobs.items() if listens(j) == event]
    if job is not None:
        if job not in plan.jobs:
            raise UsageError(f"the plan has no job {job!r}",
                             hint=f"jobs: {', '.join(plan.jobs) or 'none'}")  # fmt: skip
        if job not in listening:
            raise UsageError(f"job {job} does not listen to event {event!r} (its schedule is"
                             f" {plan.jobs[job].schedule})",
                             hint=f"jobs on {event}: {', '.join(listening) or 'none'}")  # fmt: skip
        return [job]
    if not listening:
        raise UsageError(
            f"no job of the plan listens to event {event!r}",
            hint=f"events the plan's jobs listen to: {', '.join(heard) or 'none'}",
        )
    return listening


def pushed_jobs(plan: Plan, repository: str, tag: str, digest: str) -> list[str]:
    """The jobs a push of ``repository:tag`` (manifest ``digest``) fires: those scheduled
    ``on deployment`` or ``on push`` of an images system that backs it up."""
    found = []
    for name, job in plan.jobs.items():
        system = plan.systems.get(job.system)
        if listens(job) not in PUSH_EVENTS or system is None or system.kind != "images":
            continue
        if any(_names(pattern, repository, tag, digest) for pattern in system.images):
            found.append(name)
    return found


def _names(pattern: str, repository: str, tag: str, digest: str) -> bool:
    """Whether an images system's ``REPO``, ``REPO:GLOB`` or ``REPO@sha256:...`` covers it
    (as ``sources.images.backup.expand`` reads them)."""
    name, at, pinned = pattern.partition("@")
    if at:
        return name == repository and pinned == digest
    head, colon, tail = pattern.rpartition(":")
    name, glob = (head, tail) if colon and "/" not in tail else (pattern, "*")
    return name == repository and fnmatch.fnmatchcase(tag, glob)


class TriggerQueue:
    """The pending run of each job; shared by the daemon's loop, its watches and its web
    server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}

    def add(self, job: str, trigger: Trigger) -> None:
        with self._lock:
            held = self._pending.get(job)
            if held is None:
                self._pending[job] = Pending(trigger, trigger.at, 1, [trigger.source])
            else:
                held.last_at = max(held.last_at, trigger.at)
                held.count += 1
                held.sources.append(trigger.source)

    def ready(self, job: str, now: datetime, debounce: timedelta | None) -> Pending | None:
        """The job's pending run when it may start now (quiet for ``debounce``, or waited
        ``BURST_FACTOR`` times it since the first trigger); it stays pending until ``taken``."""
        with self._lock:
            held = self._pending.get(job)
        if held is None:
            return None
        if debounce is None or now - held.last_at >= debounce:
            return held
        return held if now - held.first.at >= debounce * BURST_FACTOR else None

    def taken(self, job: str, pending: Pending) -> None:
        """Its run started: what came after ``pending`` was read stays for the next run."""
        with self._lock:
            held = self._pending.get(job)
            if held is pending:
                del self._pending[job]

    def wake(self, job: str, debounce: timedelta | None) -> datetime | None:
        """When the job's pending run may start, to sleep no longer than that."""
        with self._lock:
            held = self._pending.get(job)
        if held is None:
            return None
        if debounce is None:
            return held.first.at
        return min(held.last_at + debounce, held.first.at + debounce * BURST_FACTOR)

    def pending(self) -> dict[str, Pending]:
        with self._lock:
            return dict(self._pending)

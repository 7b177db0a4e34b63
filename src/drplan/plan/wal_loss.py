"""How much a crash can lose of a PostgreSQL system: the worst case of its WAL setup,
held against the RPO of its data. Lint judges the setup the plan states; the backup
pre-flight judges the one the server has (docs/postgres.md, "How much a crash can lose").

Terms:

* archive_command: PostgreSQL hands over a WAL segment (16 MB) when it is full, or when
  ``archive_timeout`` has passed since the last switch and anything was written. A
  quiet server may not fill a segment for hours, so without archive_timeout nothing
  bounds the loss; with it, the bound is archive_timeout plus the time to push.
* the stream (``stream: true``, ``drplan wal stream``): pg_receivewal receives WAL as it
  is written, and the segment being written is shipped every ``partial_every``: the
  bound is that plus the time to ship.
* base backups: a crash loses at most what came after the last one, so the tightest
  base backup job bounds the loss too.

A system's worst case is the smallest of these bounds. A bound equal to the RPO misses
it: the push, or the base backup's own run, comes on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from drplan.plan.coverage import coverages
from drplan.plan.durations import format_duration as fmt
from drplan.plan.model import Job, JobType, Plan
from drplan.plan.schedule import NeverFiresError, ScheduleKind

DEFAULT_PARTIAL_EVERY = timedelta(seconds=10)  # `drplan wal stream --partial-every`
MIN_PARTIAL_EVERY = timedelta(seconds=0.5)  # the least `--partial-every` takes
NO_DECLARED_TIMEOUT = "the plan declares no archive_timeout"


@dataclass(frozen=True)
class WalSetup:
    """How one system's WAL reaches the archive, as the plan states it or the server has it."""

    stream_every: timedelta | None = None  # streamed: the segment being written shipped this often
    archive_timeout: timedelta | None = None  # archive_command switches at least this often
    unbounded_because: str = NO_DECLARED_TIMEOUT  # why archive_command alone bounds nothing
    archiving: bool = True  # archive_command hands WAL to drplan at all

    @property
    def bound(self) -> timedelta | None:
        """The most commits, in time, a crash can lose (before the push); None: no bound."""
        timeout = self.archive_timeout if self.archiving else None
        return min((b for b in (self.stream_every, timeout) if b is not None), default=None)

    def describe(self) -> str:
        bound = self.bound
        if bound is not None and bound == self.stream_every:
            return (
                f"the stream ships the segment being written every {fmt(bound)} (partial_every):"
                " a crash loses up to that much of commits and the time to ship it"
            )
        if bound is not None:
            return (
                f"archive_command hands over a segment at least every {fmt(bound)}"
                " (archive_timeout): a crash loses up to that much of commits and the time to"
                " push it"
            )
        if not self.archiving:
            return (
                f"nothing streams its WAL and {self.unbounded_because}: no WAL reaches the"
                " archive between base backups"
            )
        return (
            "its WAL reaches the archive only through archive_command, a 16 MB segment at a"
            f" time when one fills up, and {self.unbounded_because}: on a quiet server nothing"
            " bounds the commits a crash loses"
        )


def wal_jobs(plan: Plan, system: str) -> dict[str, Job]:
    """The system's WAL jobs that run continuously (archive_command, and the stream)."""
    return {
        name: job
        for name, job in plan.jobs.items()
        if job.system == system
        and job.type is JobType.WAL
        and job.schedule.kind is ScheduleKind.CONTINUOUS
    }


def planned_setup(jobs: Iterable[Job]) -> WalSetup:
    """The setup a system's WAL jobs state: the stream's partial interval, and the
    archive_timeout the plan relies on the server having."""
    jobs = list(jobs)
    streams = [j.partial_every or DEFAULT_PARTIAL_EVERY for j in jobs if j.stream]
    timeouts = [j.archive_timeout for j in jobs if j.archive_timeout is not None]
    return WalSetup(min(streams, default=None), min(timeouts, default=None))


def suggested_timeout(rpo: timedelta) -> timedelta:
    """An archive_timeout that leaves two thirds of the RPO for the push: whole seconds."""
    return timedelta(seconds=max(1, int(rpo.total_seconds() // 3)))


def suggested_every(rpo: timedelta) -> timedelta:
    """A partial_every that leaves two thirds of the RPO to ship: the default, or less."""
    return min(DEFAULT_PARTIAL_EVERY, max(MIN_PARTIAL_EVERY, rpo / 3))


def switches_a_day(timeout: timedelta) -> int:
    """What an archive_timeout costs a quiet server: at most one segment per timeout.
    Mostly zeros, a switched segment compresses to about 1 KB (measured on PostgreSQL
    18): the cost is in objects stored and requests, not in bytes."""
    return int(timedelta(days=1) / timeout)


@dataclass(frozen=True)
class Shortfall:
    """A data class of a PostgreSQL system whose worst-case loss misses its RPO."""

    system: str
    data_class: str
    rpo: timedelta
    job: str  # the system's (first) WAL job
    setup: WalSetup
    base_gap: timedelta | None  # the tightest base backup job's worst gap

    @property
    def message(self) -> str:
        base = (
            f"; base backups alone bound it to {fmt(self.base_gap)}"
            if self.base_gap is not None
            else ""
        )
        return (
            f"system '{self.system}': {self.setup.describe()}{base}, against the"
            f" {fmt(self.rpo)} RPO of '{self.data_class}' data"
        )

    @property
    def hint(self) -> str:
        timeout = suggested_timeout(self.rpo)
        seconds = int(timeout.total_seconds())
        on_server = (
            f"set archive_timeout = '{seconds}s' on the server (a reload is enough) and"
            f" `archive_timeout: {fmt(timeout)}` on job '{self.job}' (each switch closes a whole"
            f" 16 MB segment, a quiet server's compressing to about 1 KB: up to"
            f" {switches_a_day(timeout):,} a day)"
        )
        every = suggested_every(self.rpo)
        if self.setup.stream_every is not None:
            return (
                f"set `partial_every: {fmt(every)}` on job '{self.job}', well under the"
                f" {fmt(self.rpo)} RPO, or {on_server}"
            )
        also = f" and `partial_every: {fmt(every)}`" if every < DEFAULT_PARTIAL_EVERY else ""
        return (
            f"set `stream: true`{also} on job '{self.job}' (`drplan serve` then ships the"
            f" segment being written every {fmt(every)}), or {on_server}"
        )


def _base_gap(plan: Plan, jobs: Iterable[Job], now: datetime) -> timedelta | None:
    gaps = []
    for job in jobs:
        if job.type is JobType.WAL:
            continue
        try:
            gap = job.schedule.worst_gap(plan.job_timezone(job), now)
        except NeverFiresError:
            continue  # reported by schedule_never_fires
        if gap is not None:
            gaps.append(gap)
    return min(gaps, default=None)


def shortfalls(
    plan: Plan, now: datetime, setups: Mapping[str, WalSetup] | None = None
) -> Iterator[Shortfall]:
    """Each data class of a PostgreSQL system with WAL jobs that can lose more than its
    RPO: neither its WAL setup (``setups``, else the plan's) nor its base backups meet it."""
    for cov in coverages(plan):
        wal = {n: j for n, j in wal_jobs(plan, cov.system).items() if n in cov.jobs}
        if not wal:
            continue  # base backups alone: DR001 and DR002
        setup = (setups or {}).get(cov.system) or planned_setup(wal.values())
        rpo = plan.objectives.rpo[cov.data_class]
        base = _base_gap(plan, cov.jobs.values(), now)
        if (setup.bound is not None and setup.bound < rpo) or (base is not None and base < rpo):
            continue
        yield Shortfall(cov.system, cov.data_class, rpo, next(iter(wal)), setup, base)

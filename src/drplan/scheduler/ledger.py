"""What triggered jobs (``on change``, ``on EVENT``) have been asked to back up, kept in the
state directory (``triggers.json``) so that a restarted daemon, and ``drplan status``, know it.

Per job:

* ``changes``: times of changes and events not yet known to be backed up everywhere.
  Only the oldest of those between two run starts is kept: a snapshot taken at a run's
  start covers every change before it, so the others could never be the oldest one a
  location misses. A run that succeeded (every location written) drops those before it;
* ``started``: when the job's newest run started;
* ``lost``: watched paths that cannot be watched now (vanished, unreachable), each with
  since when and why: a change there would go unseen, so the loss counts as one;
* ``refs``: for a git system, a digest of each repository's refs as last seen, so that
  commits made while the daemon was down are noticed when it starts.

Every change is written at once, under a lock, by reading the file anew: the daemon's
threads and a `drplan trigger` run in the foreground share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drplan.clock import parse_rfc3339

log = logging.getLogger("drplan.serve")

LEDGER_FILE = "triggers.json"
KEEP = 100  # changes kept per job: a job that fails for this many runs in a row is breached long before


@dataclass
class Lost:
    since: datetime
    reason: str


@dataclass
class JobChanges:
    changes: list[datetime] = field(default_factory=list)  # sorted, oldest first
    started: datetime | None = None
    lost: dict[str, Lost] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def unbacked(self) -> datetime | None:
        """The oldest change not known to be backed up, a lost watch counting as one."""
        times = [*self.changes[:1], *(w.since for w in self.lost.values())]
        return min(times, default=None)

    def after(self, point: datetime) -> datetime | None:
        """The oldest change after ``point`` (a snapshot's time), a lost watch counting as
        one: what a restore of that snapshot would lose data from."""
        times = [c for c in self.changes if c > point]
        # Unseen since the loss, but not before the snapshot: it has what came before.
        times += [max(w.since, point) for w in self.lost.values()]
        return min(times, default=None)

    def add(self, at: datetime) -> None:
        last = self.changes[-1] if self.changes else None
        since_start = self.started is None or at >= self.started
        if last is not None and since_start and (self.started is None or last >= self.started):
            self.changes[-1] = min(last, at)  # one span: its oldest change is the one that counts
            return
        self.changes.append(at)
        self.changes.sort()
        if len(self.changes) > KEEP:  # the oldest stays: it is what exposure counts from
            del self.changes[1 : len(self.changes) - KEEP + 1]

    def as_json(self) -> dict[str, Any]:
        return {
            "changes": [_exact(c) for c in self.changes],
            "started": _exact(self.started) if self.started else None,
            "lost": {
                p: {"since": _exact(w.since), "reason": w.reason} for p, w in self.lost.items()
            },
            "refs": dict(self.refs),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobChanges:
        lost = {p: Lost(parse_rfc3339(w["since"]), str(w.get("reason", "")))
                for p, w in (raw.get("lost") or {}).items()}  # fmt: skip
        return cls(
            changes=sorted(parse_rfc3339(c) for c in raw.get("changes", [])),
            started=parse_rfc3339(raw["started"]) if raw.get("started") else None,
            lost=lost,
            refs={str(k): str(v) for k, v in (raw.get("refs") or {}).items()},
        )


class Ledger:
    """``triggers.json`` in a state directory."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LEDGER_FILE)
        self._threads = threading.Lock()  # flock is per process: the daemon's threads queue here

    def read(self) -> dict[str, JobChanges]:
        """Every job's record; none when the file is missing or unreadable (said once)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
            return {job: JobChanges.from_json(entry) for job, entry in raw.get("jobs", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s cannot be read (%s): the changes it held are forgotten", self.path, exc)
            return {}

    def update(self, job: str, change: Callable[[JobChanges], None]) -> JobChanges:
        """Apply ``change`` to the job's record and write it at once; the record after."""
        with self._locked():
            jobs = self.read()
            entry = jobs.setdefault(job, JobChanges())
            change(entry)
            self._write(jobs)
            return entry

    def changed(self, job: str, at: datetime) -> None:
        self.update(job, lambda e: e.add(at))

    def started(self, job: str, at: datetime) -> None:
        def note(entry: JobChanges) -> None:
            entry.started = at

        self.update(job, note)

    def succeeded(self, job: str, started_at: datetime) -> None:
        """A run that started at ``started_at`` wrote every location: what changed before is safe."""

        def drop(entry: JobChanges) -> None:
            entry.changes = [c for c in entry.changes if c >= started_at]

        self.update(job, drop)

    def lost(self, job: str, path: str, at: datetime, reason: str) -> None:
        def note(entry: JobChanges) -> None:
            if path not in entry.lost:
                entry.lost[path] = Lost(at, reason)

        self.update(job, note)

    def rearmed(self, job: str, path: str, *, a_change: bool = True) -> datetime | None:
        """The watch on ``path`` works again; since when it did not, when that counts as a
        change to back up (``a_change``: nothing tells what happened meanwhile)."""
        found: list[datetime] = []

        def note(entry: JobChanges) -> None:
            gone = entry.lost.pop(path, None)
            if gone is not None and a_change:
                entry.add(gone.since)
                found.append(gone.since)

        self.update(job, note)
        return found[0] if found else None

    def seen_refs(self, job: str, repository: str, digest: str) -> bool:
        """Record a git repository's refs; whether they differ from those seen last (or were
        never seen)."""
        differ: list[bool] = []

        def note(entry: JobChanges) -> None:
            differ.append(entry.refs.get(repository) != digest)
            entry.refs[repository] = digest

        self.update(job, note)
        return differ[0]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with self._threads, open(f"{self.path}.lock", "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, jobs: dict[str, JobChanges]) -> None:
        temp = f"{self.path}.{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump({"jobs": {job: e.as_json() for job, e in sorted(jobs.items())}}, f, indent=1)
        os.replace(temp, self.path)  # whole or not at all: a crash never leaves half a file


def _exact(moment: datetime) -> str:
    """RFC 3339 to the microsecond: a change is held against a snapshot's exact time, and a
    change in the second a backup ended would read as older than it at seconds' precision
    (and be taken as backed up)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

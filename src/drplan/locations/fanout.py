"""After a job's backup: its snapshots reach every other location of the job.

The backup wrote to the first location that could be reached. Each other
location then receives the job's snapshots it lacks (those its retention keeps),
and the written location receives any snapshot of the job that only another
location holds: the backups taken while it was down. So a location that was
unreachable catches up at the first backup after it returns, and a failure to
reach one location never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drplan.errors import DrplanError
from drplan.locations.copying import about_location, copy_to, worth_copying
from drplan.repo.locks import RepositoryLock
from drplan.repo.replication import CopyResult, copy_snapshots, open_replica
from drplan.repo.repository import Repository
from drplan.repo.retention import Policy
from drplan.storage import Storage


@dataclass
class LocationOutcome:
    copied: list[str] = field(default_factory=list)  # snapshot ids sent there
    bytes_copied: int = 0
    error: str | None = None  # why the location did not get them

    def as_dict(self) -> dict[str, object]:
        return {"copied": self.copied, "bytes_copied": self.bytes_copied, "error": self.error}


@dataclass
class FanOut:
    written: str  # the location the backup went to
    outcomes: dict[str, LocationOutcome] = field(default_factory=dict)
    caught_up: list[str] = field(default_factory=list)  # snapshots brought back to `written`

    @property
    def failed(self) -> dict[str, str]:
        return {name: o.error for name, o in self.outcomes.items() if o.error is not None}


def fan_out(
    written: str,
    source: Repository,
    others: Mapping[str, Callable[[], Storage]],
    job: str,
    policies: Callable[[str], dict[str | None, Policy]],
    report: Callable[[str], None] = lambda _: None,
) -> FanOut:
    """Copy job ``job``'s snapshots from ``source`` (location ``written``, locked by the
    caller) to each location of ``others`` (name -> how to reach it), and back.

    Catching up comes first, so that what returns from one location reaches the others
    in the same run. A location without a repository is a failure, not a new replica:
    an empty directory may be an unmounted disk, and a replica is seeded on purpose
    (``drplan copy``).
    """
    outcome = FanOut(written)
    reachable: dict[str, Storage] = {}
    for name, reach in others.items():
        result = outcome.outcomes[name] = LocationOutcome()
        try:
            with about_location(name):
                storage = reach()
                back = _catch_up(source, storage, job, policies(written))
                outcome.caught_up += back.copied
                reachable[name] = storage
                if back.damaged:
                    result.error = (
                        f"location {name}: {len(back.damaged)} snapshot(s) it alone holds are"
                        f" damaged there and could not come back to {written}"
                        f" (run `drplan check --repo {name}`)"
                    )
        except DrplanError as exc:
            result.error = exc.message
            report(exc.message)
    readable, unreadable = source.readable_snapshots()
    mine = [s for s in readable if s.job == job]
    for name, storage in reachable.items():
        result = outcome.outcomes[name]
        try:
            with about_location(name):
                copied = copy_to(
                    source, storage, mine, policies=policies(name), report=report, create=False
                )
        except DrplanError as exc:
            result.error = exc.message
            report(exc.message)
            continue
        result.copied, result.bytes_copied = copied.copied, copied.bytes_copied
        damaged = len(copied.damaged) + len(unreadable)
        if damaged:
            result.error = (
                f"location {name}: {damaged} snapshot(s) not copied, they are damaged in"
                f" {written} (run `drplan check --repo {written}`)"
            )
    return outcome


def _catch_up(
    source: Repository, storage: Storage, job: str, policies: dict[str | None, Policy]
) -> CopyResult:
    """Bring the job's snapshots that only ``storage`` holds back to ``source``."""
    other, _ = open_replica(source, storage, create=False)
    with RepositoryLock(other, exclusive=False, operation="copy"):
        ours = source.readable_snapshots()[0]  # each is an object read: list them once
        have = {s.id for s in ours}
        theirs, unreadable = other.readable_snapshots()
        missing = [s for s in theirs if s.job == job and s.id not in have]
        mine = [s for s in ours if s.job == job]
        missing = worth_copying(missing, mine, policies)
        if not missing:
            return CopyResult(damaged=unreadable)
        other.load_index()
        result = copy_snapshots(other, source, missing)
        result.damaged.update(unreadable)
        return result

"""Rebuilding the catalog from what outlives it: the repositories and the drills' evidence.

The repository is the truth; the catalog is history and cache. What the truth still
shows comes back:

* a job's runs that saved a snapshot: each snapshot records its job, when it began,
  how long it took, what it added and stored, and the paths it could not read (a
  partial run). One run per snapshot, in the first of the job's locations holding it
  (a snapshot copied elsewhere keeps its id); its slot is the job's schedule slot at or
  before it began, so the daemon neither runs that slot again nor waits a whole period
  for its next one.
* each drill run whose evidence file (``drills.evidence``) is in the evidence directory
  and matches the SHA-256 written beside it.

What no repository records cannot come back (``NOT_REBUILT``), and is said so. A rebuild
adds only what the catalog lacks: it may be run again (once an unreachable location is
back, say) and never records a run twice. A damaged SQLite file is moved aside first,
never deleted: it may still hold what a forensic look wants.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from drplan.catalog.sqlite_file import DAMAGE_CODES, error_code, move_aside, quick_check
from drplan.catalog.store import PARTIAL, SUCCEEDED, Catalog
from drplan.drills.evidence import read_evidence
from drplan.errors import CatalogError, DrplanError
from drplan.plan.model import Plan
from drplan.plan.schedule import ScheduleKind
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.storage.registry import redact

NOT_REBUILT = (
    "runs that saved no snapshot (failed, timed out, abandoned)",
    "forget, check and copy runs, and the WAL stream's",
    "the notification history",
)
REBUILT_HOST = "rebuilt"  # in place of the daemon's pid: ``HOST:rebuilt``


@dataclass
class RebuildReport:
    catalog: str  # its URL, redacted
    damage: str | None = None  # what was wrong with the SQLite file moved aside
    moved_aside: str | None = None  # where it went
    runs_added: dict[str, int] = field(default_factory=dict)  # per job
    runs_known: int = 0  # snapshots the catalog already had a run for
    drills_added: int = 0
    drills_known: int = 0
    locations: list[str] = field(default_factory=list)  # read
    unreadable: dict[str, str] = field(default_factory=dict)  # location: why not
    evidence_left_out: dict[str, str] = field(default_factory=dict)  # file: why
    not_rebuilt: tuple[str, ...] = NOT_REBUILT

    @property
    def complete(self) -> bool:
        """Every location of the plan was read."""
        return not self.unreadable

    def as_dict(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "damage": self.damage,
            "moved_aside": self.moved_aside,
            "runs_added": self.runs_added,
            "runs_known": self.runs_known,
            "drills_added": self.drills_added,
            "drills_known": self.drills_known,
            "locations": self.locations,
            "unreadable": self.unreadable,
            "evidence_left_out": self.evidence_left_out,
            "not_rebuilt": list(self.not_rebuilt),
        }


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` catalog; None for any other."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return os.path.abspath(path) if path and path != ":memory:" else None


def damage_of(path: str) -> str | None:
    """What is wrong with the SQLite catalog file at ``path``; None when it is sound or
    there is none. Read only: nothing is created or changed."""
    if not os.path.exists(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CatalogError(
            f"catalog {path} cannot be opened: {exc}", hint="check its permissions"
        ) from None
    try:
        return quick_check(conn)
    except sqlite3.Error as exc:
        if error_code(exc) in DAMAGE_CODES:
            return str(exc)
        raise CatalogError(
            f"catalog {path} cannot be read: {exc}", hint="check its permissions"
        ) from None
    finally:
        conn.close()


def rebuild(
    plan: Plan,
    url: str,
    open_location: Callable[[str], Repository],
    evidence: Path,
    now: datetime,
) -> RebuildReport:
    """Rebuild the catalog at ``url`` from the plan's locations and the drill evidence in
    ``evidence``: a damaged SQLite file is moved aside first; the catalog gets what it
    lacks. CatalogError (exit 20) when it cannot be opened or written."""
    report = RebuildReport(redact(url))
    path = sqlite_path(url)
    if path is not None:
        report.damage = damage_of(path)
        if report.damage is not None:
            report.moved_aside = move_aside(path, now)
    try:
        catalog = Catalog.open(url)
    except CatalogError as exc:
        if report.moved_aside:
            exc.message += f" (the damaged file was moved to {report.moved_aside})"
        raise
    try:
        _add_runs(catalog, plan, open_location, report)
        _add_drills(catalog, evidence, report)
    finally:
        catalog.close()
    return report


def _add_runs(
    catalog: Catalog,
    plan: Plan,
    open_location: Callable[[str], Repository],
    report: RebuildReport,
) -> None:
    found: dict[str, tuple[Snapshot, str]] = {}  # by id: the snapshot, where it was found
    for location in plan.locations:
        try:
            snapshots, _ = open_location(location).readable_snapshots()
        except DrplanError as exc:
            report.unreadable[location] = exc.message
            continue
        report.locations.append(location)
        for snapshot in snapshots:
            if snapshot.job is None:
                continue  # `drplan backup files`: no job's run
            held = found.get(snapshot.id)
            if held is None or _preferred(plan, snapshot.job, location, held[1]):
                found[snapshot.id] = (snapshot, location)
    known = catalog.recorded_snapshots()
    rows = []
    for snapshot, location in sorted(found.values(), key=lambda f: (f[0].time, f[0].id)):
        if snapshot.id in known:
            report.runs_known += 1
            continue
        rows.append(run_row(plan, snapshot, location))
        assert snapshot.job is not None
        report.runs_added[snapshot.job] = report.runs_added.get(snapshot.job, 0) + 1
    catalog.add_runs(rows)


def _preferred(plan: Plan, job: str, location: str, than: str) -> bool:
    """Whether ``location`` comes before ``than`` among the job's locations (the first is
    where its backups are written)."""
    order = list(plan.jobs[job].locations) if job in plan.jobs else []
    order += [name for name in plan.locations if name not in order]
    return order.index(location) < order.index(than)


def run_row(plan: Plan, snapshot: Snapshot, location: str) -> dict[str, Any]:
    """The run that saved ``snapshot``, as the snapshot tells it."""
    summary = snapshot.summary
    errors = summary.errors
    return {
        "job": snapshot.job,
        "slot": _slot(plan, snapshot),
        "attempt": 1,
        "host": f"{snapshot.host}:{REBUILT_HOST}",
        "started_at": snapshot.time,
        "ended_at": snapshot.time + timedelta(seconds=summary.duration_seconds),
        "status": PARTIAL if errors else SUCCEEDED,
        "snapshot": snapshot.id,
        "location": location,
        "bytes_added": summary.bytes_added,
        "bytes_stored": summary.bytes_stored,
        "error": f"{len(errors)} path(s) could not be read: {errors[0]}" if errors else None,
    }


def _slot(plan: Plan, snapshot: Snapshot) -> datetime | None:
    job = plan.jobs.get(snapshot.job or "")
    if job is None or job.schedule.kind not in (ScheduleKind.CRON, ScheduleKind.INTERVAL):
        return None
    return job.schedule.previous_run(snapshot.time, plan.job_timezone(job))


def _add_drills(catalog: Catalog, evidence: Path, report: RebuildReport) -> None:
    rows, report.evidence_left_out = read_evidence(evidence)
    known = catalog.recorded_drills()
    for row in rows:
        if row["run"] in known:
            report.drills_known += 1
            continue
        catalog.record_drill(row)
        report.drills_added += 1

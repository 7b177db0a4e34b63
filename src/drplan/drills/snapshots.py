"""Drills of every system that is not PostgreSQL: the system's newest snapshot restored
into a scratch directory and proven, as its kind can be (``platform_drills``).

Files and command systems: every chunk is checked against its recorded hash as it is
written (the restore does that); the drill then holds what was restored against the
snapshot's own record: as many files and as many bytes as it says it holds. A command
system's output is restored as its ``SYSTEM.out``; its ``restore_command`` is not run
(it would restore into the live system). etcd, git and images systems are restored as
their own tools would use them and checked by those tools. The data lost is the time
from the disaster back to the snapshot.
"""

from __future__ import annotations

import time
from pathlib import Path

from drplan import clock
from drplan.drills.platform_drills import PLATFORM_KINDS, Recovery, platform_recovery
from drplan.drills.results import SystemResult, new_result
from drplan.drills.scratch import make_scratch, room_needed, scratch_base
from drplan.drills.validations import Validation
from drplan.errors import DrplanError
from drplan.plan.model import Plan
from drplan.plan.model.assurance import Drill
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.recovery.recover import OpenLocation
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot


def drill_snapshot_system(
    plan: Plan,
    name: str,
    drill: Drill,
    system_name: str,
    candidates: list[str],
    open_location: OpenLocation,
    keep: bool,
) -> tuple[SystemResult, str | None]:
    """Restore and check ``system_name``'s newest snapshot; the result, and the scratch
    directory when kept."""
    outcome = new_result(plan, system_name, clock.now(), None, "latest")
    tried = []
    began = time.monotonic()
    needs = room_needed(open_location, candidates, system_name)
    scratch = None
    try:
        scratch = make_scratch(plan, scratch_base(drill.scratch_dir), name, drill.scratch_ports,
                               needs)  # fmt: skip
        for ref in candidates:
            try:
                with open_location(ref) as repo:
                    snapshot = _newest(repo.readable_snapshots()[0], system_name)
                    if snapshot is None:
                        tried.append(f"{ref}: no snapshot of {system_name}")
                        continue
                    recovery = recover_kind(plan, system_name, repo, snapshot, scratch.root)
            except DrplanError as exc:
                tried.append(f"{ref}: {exc.message}")
                continue
            outcome.location = ref
            outcome.snapshots = [snapshot.id]
            outcome.phases["fetch"] = round(time.monotonic() - began, 3)
            outcome.last_transaction = snapshot.time
            outcome.rpo_seconds = max(0.0, (outcome.disaster - snapshot.time).total_seconds())
            checking = time.monotonic()
            outcome.validations += recovery.prove()
            outcome.phases["validate"] = round(time.monotonic() - checking, 3)
            outcome.rto_seconds = time.monotonic() - began
            break
        else:
            outcome.error = f"no location could restore {system_name}: {'; '.join(tried)}"
    finally:
        if scratch is not None and not keep:
            scratch.teardown([], None)
    return outcome, str(scratch.root) if keep and scratch is not None else None


def _newest(snapshots: list[Snapshot], system: str) -> Snapshot | None:
    mine = [s for s in snapshots if s.system == system]
    return max(mine, key=lambda s: s.time) if mine else None


def recover_kind(
    plan: Plan, system: str, repo: Repository, snapshot: Snapshot, scratch: Path
) -> Recovery:
    """Restore the snapshot into ``scratch`` as its kind is restored (from the open
    repository); what proves it is run afterwards, off the repository's lock."""
    kind = snapshot.source.get("kind", "files")
    if kind in PLATFORM_KINDS:
        return platform_recovery(plan, system, repo, snapshot, scratch)
    started = time.monotonic()
    restored = restore_files(repo, snapshot, RestoreOptions(str(scratch)))
    whole = _whole(snapshot, restored.files, restored.bytes_written, restored.failed,
                   time.monotonic() - started)  # fmt: skip
    return Recovery(lambda: [whole])


def _whole(
    snapshot: Snapshot, files: int, written: int, failed: list[str], seconds: float
) -> Validation:
    want = snapshot.summary.files
    if failed:
        detail = f"{len(failed)} file(s) could not be restored: {', '.join(failed[:3])}"
        return Validation("files match the snapshot", "files", "failed", seconds, detail)
    if files != want:
        return Validation("files match the snapshot", "files", "failed", seconds,
                          f"{files} files restored, the snapshot records {want}")  # fmt: skip
    return Validation("files match the snapshot", "files", "passed", seconds,
                      f"{files} files, {written} bytes, every chunk verified against its hash")  # fmt: skip

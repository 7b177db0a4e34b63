"""Evidence: a compromised system copied as it is into a location under Object Lock, and
the chain of custody of every copy in the incident's timeline (docs/security.md, "Evidence").

A capture is an ordinary snapshot of the location's repository (deduplicated, encrypted,
authenticated like every other), tagged ``evidence``, whose root holds ``files`` (the
captured paths under their absolute paths) and ``manifest.json`` (each entry's metadata
and the SHA-256 of each file's bytes as read: :mod:`evidence_manifest`). Its source kind
is ``evidence`` and its system is left empty on purpose: nothing that picks a system's
restore point (restore, drills, last-good) may ever pick the compromised state. Retention
keeps evidence whatever its policy (``repo.retention``): drplan never deletes it.

The timeline, not the repository, is what a capture is held against: the capture's entry
(who, what, where, when, the manifest's SHA-256, the lock's end) is hash-chained in the
journal on the responder's host and in the catalog, so ``verify`` can tell a repository
that was changed, even by someone holding its key, from the one that was written.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drplan import __version__, clock
from drplan.errors import DrplanError, PartialBackupError, SourceError, UsageError
from drplan.repo.blob_pool import BlobPool
from drplan.repo.immutability import locks_of
from drplan.repo.pack import DATA
from drplan.repo.replication import blobs_of
from drplan.repo.repository import SNAPSHOT_PREFIX, Repository, pack_name
from drplan.repo.retention import EVIDENCE_TAG
from drplan.repo.snapshot import Snapshot, Summary
from drplan.repo.tree import Node
from drplan.security.evidence_copy import copy_paths, roots
from drplan.security.evidence_manifest import FILES, NAME, Manifest, path_of, sha256
from drplan.sources.stored import file_node, store_stream

if TYPE_CHECKING:
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident
    from drplan.plan.model import Plan

CAPTURED = "evidence_captured"  # timeline entry kinds
VERIFIED = "evidence_verified"
PROBLEMS_KEPT = 50  # of a verification's problems, in its timeline entry (and a count)

OpenLocation = Callable[[str], AbstractContextManager[Repository]]


@dataclass(frozen=True)
class Target:
    """Where a capture goes, and whether it stays there whatever anyone does."""

    location: str
    immutable: bool  # compliance-mode Object Lock
    mode: str | None  # the location's lock mode, if any


def target(plan: Plan, location: str | None, unlocked: bool) -> Target:
    """The evidence location: ``location``, else the plan's; one without compliance-mode
    Object Lock only with ``unlocked`` or the plan's ``allow_unlocked`` for it."""
    from drplan.plan.model.security import compliance_locked  # noqa: PLC0415 - pydantic

    chosen = plan.security.evidence
    name = location or (chosen.location if chosen else None)
    if name is None:
        raise UsageError("the plan names no evidence location",
                         hint="pass --location LOCATION, or set `security: {evidence: {location:"
                         " NAME}}` in the plan")  # fmt: skip
    spec = plan.locations.get(name)
    if spec is None:
        raise UsageError(f"{name!r} is not a location of the plan",
                         hint=f"the plan's locations: {', '.join(plan.locations)}")  # fmt: skip
    immutability = getattr(spec, "immutability", None)
    mode = immutability.mode if immutability else None
    allowed = unlocked or (chosen is not None and chosen.location == name and chosen.allow_unlocked)
    if not compliance_locked(spec) and not allowed:
        lock = (
            f"locks in {mode} mode, which privileged users can lift"
            if mode
            else "has no Object Lock"
        )
        raise UsageError(
            f"location {name} {lock}: evidence written there could be deleted",
            hint="pass --unlocked to capture there anyway (recorded as not immutable), or use a"
            " location with `immutability: {mode: compliance, days: N}`",
        )
    return Target(name, compliance_locked(spec), mode)


@dataclass(frozen=True)
class Source:
    """What a system's evidence is: paths read from the file system as they are now."""

    kind: str
    paths: list[str]
    details: dict[str, Any] = field(default_factory=dict)
    one_file_system: bool = False


def source_of(plan: Plan, system: str) -> Source:
    """A files system: its paths (excludes ignored: what was left out of backups may be
    exactly what the intruder left). PostgreSQL: its data directory with the tablespaces
    and the WAL directory it links to, read as they are: a running or crashed server's
    files, not a base backup."""
    spec = plan.systems.get(system)
    if spec is None:
        raise UsageError(f"{system!r} is not a system of the plan",
                         hint=f"the plan's systems: {', '.join(plan.systems)}")  # fmt: skip
    if spec.kind == "files":
        return Source("files", list(spec.paths), one_file_system=spec.one_file_system)
    if spec.kind != "postgres":
        raise UsageError(f"system {system} is a {spec.kind} system; evidence is captured of files"
                         " and postgres systems",
                         hint="capture its host's files with a files system of the plan")  # fmt: skip
    data_dir = spec.data_dir
    if not data_dir:
        raise UsageError(
            f"system {system} has no data_dir in the plan: its files cannot be found",
            hint="set the system's data_dir, and run the capture on the database host",
        )
    return _postgres(data_dir)


def _postgres(data_dir: str) -> Source:
    """The data directory, and the directories its links lead to (pg_tblspc/OID, pg_wal)."""
    linked: dict[str, str] = {}
    links = [os.path.join(data_dir, "pg_wal")]
    with contextlib.suppress(OSError):  # no tablespaces, or no data directory: the copy says
        links += [e.path for e in os.scandir(os.path.join(data_dir, "pg_tblspc"))]
    for link in links:
        if os.path.islink(link):
            where = os.path.join(os.path.dirname(link), os.readlink(link))
            linked[os.path.relpath(link, data_dir)] = os.path.normpath(where)
    details: dict[str, Any] = {"data_dir": data_dir, "linked": linked}
    try:
        with open(os.path.join(data_dir, "postmaster.pid"), "rb") as f:
            details["postmaster_pid"] = f.readline().decode(errors="replace").strip()
    except OSError:
        details["postmaster_pid"] = None  # stopped cleanly, or not a data directory
    return Source("postgres", [data_dir, *linked.values()], details)


@dataclass
class Capture:
    """One capture, as its timeline entry records it."""

    data: dict[str, Any]
    unread: list[str]
    problem: str | None = None  # the copy is stored, but not locked as it should be


def capture(
    repo: Repository, plan: Plan, system: str, incident: Incident, where: Target,
    service: Incidents, actor: str,
) -> Capture:  # fmt: skip
    """Copy ``system`` into ``repo`` (``where``'s, opened and locked by the caller), lock it,
    and record the capture in the incident's timeline."""
    what = source_of(plan, system)
    incident.writable()
    started, began = clock.now(), time.monotonic()
    host, user = socket.gethostname(), getpass.getuser()
    paths = roots(what.paths)
    manifest = Manifest({"incident": incident.id, "system": system, "kind": what.kind,
                         "host": host, "user": user, "started": clock.rfc3339(started),
                         "paths": [os.fsdecode(p) for p in paths]})  # fmt: skip
    with BlobPool(repo, DATA) as pool:
        copied = copy_paths(repo, pool, paths, manifest, what.one_file_system)
        if not {path_of(e) for e in manifest.entries} & set(paths):
            why = "; ".join([*manifest.unread, *manifest.skipped])
            raise SourceError(f"nothing was captured of {system}: {why}",
                              hint="check the system's paths in the plan, and run the capture"
                              " on its host; nothing was saved")  # fmt: skip
        manifest.header["finished"] = clock.rfc3339(clock.now())
        body = manifest.encode()
        stored = store_stream(repo, pool, io.BytesIO(body))
    files_dir = Node(name=FILES.encode(), type="dir", mode=0o700, uid=os.getuid(),
                     gid=os.getgid(), mtime_ns=time.time_ns(), subtree=copied.tree)  # fmt: skip
    tree = repo.save_tree([files_dir, file_node(NAME, stored, mode=0o400)])
    digest = sha256(body)
    source = {
        "kind": EVIDENCE_TAG, "incident": incident.id, "system": system, "system_kind": what.kind,
        "paths": manifest.header["paths"], **what.details, "immutable": where.immutable,
        "manifest": {"sha256": digest, "size": len(body), "entries": len(manifest.entries),
                     "files": copied.files, "bytes": copied.bytes},
    }  # fmt: skip
    summary = Summary(files_new=copied.files, dirs=copied.dirs, bytes_total=copied.bytes,
                      bytes_read=copied.bytes, bytes_added=repo.stats.bytes_added,
                      bytes_stored=repo.stats.bytes_stored, errors=list(manifest.unread),
                      duration_seconds=round(time.monotonic() - began, 3))  # fmt: skip
    snapshot = Snapshot(time=started, tree=tree, paths=[f"{EVIDENCE_TAG}:{system}"], host=host,
                        user=user, tags=[EVIDENCE_TAG, f"incident:{incident.id}"], source=source,
                        summary=summary, program=f"drplan {__version__}")  # fmt: skip
    repo.save_snapshot(snapshot)
    until, problem = _lock(repo, snapshot)
    data = {
        "system": system, "kind": what.kind, "paths": source["paths"], "files": copied.files,
        "bytes": copied.bytes, "entries": len(manifest.entries),
        "changed_while_read": copied.changed, "unread": len(manifest.unread),
        "skipped": len(manifest.skipped), "manifest_sha256": digest,
        "location": where.location, "repository": repo.storage.url, "snapshot": snapshot.id,
        "host": host, "user": user, "started": manifest.header["started"],
        "finished": manifest.header["finished"], "immutable": where.immutable and problem is None,
        "lock_mode": where.mode, "locked_until": clock.rfc3339(until) if until else None,
        **what.details,
    }  # fmt: skip
    if problem:
        data["lock_problem"] = problem
    service.record(incident.id, CAPTURED, actor, data, clock.now())
    return Capture(data, manifest.unread, problem)


def raise_for(done: Capture) -> None:
    """A capture that is stored and recorded, but not as it should be, as its error."""
    if done.problem:
        raise DrplanError(f"evidence {done.data['snapshot'][:8]} is stored in"
                          f" {done.data['location']} but not immutable: {done.problem}",
                          hint="the timeline records it as not immutable; check the bucket's"
                          " Object Lock and capture again")  # fmt: skip
    if done.unread:
        raise PartialBackupError(f"evidence {done.data['snapshot'][:8]} was saved, but"
                                 f" {len(done.unread)} item(s) could not be read",
                                 hint="they are listed above and in its manifest's `unread`")  # fmt: skip


def needed_objects(repo: Repository, snapshot: Snapshot) -> list[str]:
    """The snapshot object and every pack holding a blob it needs (the index is loaded)."""
    names = {SNAPSHOT_PREFIX + snapshot.id}
    for blob in blobs_of(repo, [snapshot]):
        where = repo.index.lookup(blob)
        if where is not None:
            names.add(pack_name(where.pack.id))
    return sorted(names)


def _lock(repo: Repository, snapshot: Snapshot) -> tuple[datetime | None, str | None]:
    """When the evidence's lock ends: the earliest lock of what it needs (blobs it shares
    with older backups sit in older packs; the repository extended their locks before it
    wrote the snapshot: ``immutability.cover_snapshot``), and what is not locked though the
    location says everything is."""
    if not repo.storage.lock_days:
        return None, None
    names = needed_objects(repo, snapshot)
    # The service's clock, never a pinned $DRPLAN_NOW: it enforces retention by its own.
    held = locks_of(repo.storage, names, datetime.now(UTC))
    missing = [n for n in names if n not in held]
    if missing:
        return None, f"{len(missing)} object(s) are not locked, e.g. {missing[0]}"
    return min(held.values()), None


def captures(incident: Incident) -> Iterator[dict[str, Any]]:
    """The captures of an incident, from its timeline, each with its last verification."""
    verified: dict[str, dict[str, Any]] = {}
    found = []
    for event in incident.events:
        if event.kind == CAPTURED:
            found.append({"incident": incident.id, "at": clock.rfc3339(event.at),
                          "actor": event.actor, "entry": event.seq, **event.data})  # fmt: skip
        elif event.kind == VERIFIED:
            verified[event.data["snapshot"]] = {
                "at": clock.rfc3339(event.at),
                "ok": event.data["ok"],
            }
    for row in found:
        yield {**row, "last_verified": verified.get(row["snapshot"])}

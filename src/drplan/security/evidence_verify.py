"""Verifying evidence against its chain of custody: each capture the timelines record,
read back from its location and held against what the timeline says was written.

Per capture: the snapshot is still there and is the incident's; its manifest's SHA-256 is
the one the timeline recorded (the timeline is hash-chained and kept on the responder's
host and in the catalog, so a manifest rewritten by someone holding the repository's key
is still caught); every stored file, read back and authenticated, has the manifest's
SHA-256, and every entry is there with its metadata; and, for a capture recorded as
immutable, every object it needs is still under its lock. Each verification is recorded
in the incident's timeline in turn, closed incidents included: custody goes on after the
review.
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.repo.immutability import locks_of
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.security.evidence import PROBLEMS_KEPT, VERIFIED, OpenLocation, captures, needed_objects
from drplan.security.evidence_manifest import FILES, NAME, Manifest, compare

if TYPE_CHECKING:
    from drplan.incidents.service import Incidents
    from drplan.incidents.state import Incident


@dataclass
class Verdict:
    incident: str
    snapshot: str
    location: str
    system: str
    problems: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    locked_until: datetime | None = None
    immutable: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident, "snapshot": self.snapshot, "location": self.location,
            "system": self.system, "ok": self.ok, "problems": self.problems, "files": self.files,
            "bytes": self.bytes, "immutable": self.immutable,
            "locked_until": clock.rfc3339(self.locked_until) if self.locked_until else None,
        }  # fmt: skip


def verify(
    service: Incidents, incidents: list[Incident], open_location: OpenLocation, actor: str
) -> list[Verdict]:
    """Verify every capture of ``incidents``, recording each verification in its timeline."""
    verdicts = []
    for incident in incidents:
        for row in captures(incident):
            verdict = Verdict(incident.id, row["snapshot"], row["location"], row["system"],
                              immutable=bool(row["immutable"]))  # fmt: skip
            try:
                with open_location(row["location"]) as repo:
                    _check(repo, row, verdict)
            except DrplanError as exc:  # the location cannot be read: it says which
                verdict.problems.append(f"not verified: {exc.message}")
            service.record(incident.id, VERIFIED, actor, {
                "snapshot": verdict.snapshot, "location": verdict.location, "captured": row["entry"],
                "ok": verdict.ok, "problems": verdict.problems[:PROBLEMS_KEPT],
                "problem_count": len(verdict.problems), "files": verdict.files,
                "bytes": verdict.bytes, "manifest_sha256": row["manifest_sha256"],
                "locked_until": verdict.as_dict()["locked_until"],
                "host": socket.gethostname(), "user": getpass.getuser(),
            }, clock.now())  # fmt: skip
            verdicts.append(verdict)
    return verdicts


def _check(repo: Repository, row: dict[str, Any], verdict: Verdict) -> None:
    try:
        snapshot = _contents(repo, row, verdict)
    except DrplanError as exc:  # damage found on the way: the snapshot's, not the location's
        verdict.problems.append(f"snapshot {row['snapshot'][:8]}: {exc.message}")
        return
    if snapshot is not None and verdict.immutable:
        _locks(repo, verdict, needed_objects(repo, snapshot))


def _contents(repo: Repository, row: dict[str, Any], verdict: Verdict) -> Snapshot | None:
    """The capture's snapshot, its manifest and files held against the record."""
    snapshot = next(
        (
            s
            for s in repo.readable_snapshots()[0]
            # re-encryption re-seals a snapshot under a new name, keeping the old one
            if row["snapshot"] in (s.id, *s.previous_ids)
        ),
        None,
    )
    if snapshot is None:
        verdict.problems.append(f"snapshot {row['snapshot'][:8]} is gone, or cannot be read")
        return None
    if snapshot.source.get("incident") != verdict.incident:
        verdict.problems.append(
            f"snapshot {snapshot.short_id} is not evidence of {verdict.incident}"
        )
    top = {node.name.decode(errors="replace"): node for node in repo.load_tree(snapshot.tree)}
    held, files = top.get(NAME), top.get(FILES)
    if held is None or files is None or files.subtree is None:
        verdict.problems.append(f"snapshot {snapshot.short_id} holds no {NAME} and {FILES}")
        return snapshot
    body = b"".join(repo.read_blob(blob) for blob in held.content)
    digest = hashlib.sha256(body).hexdigest()
    if digest != row["manifest_sha256"]:
        verdict.problems.append(f"the manifest's SHA-256 is {digest}, not {row['manifest_sha256']}"
                                " as the timeline recorded")  # fmt: skip
    elif snapshot.source.get("manifest", {}).get("sha256") != digest:
        verdict.problems.append("the snapshot records another manifest SHA-256 than its manifest's")
    manifest = Manifest.decode(body)
    problems, verdict.files, verdict.bytes = compare(repo, manifest, files.subtree)
    verdict.problems += problems
    return snapshot


def _locks(repo: Repository, verdict: Verdict, names: list[str]) -> None:
    """Every object the capture needs is locked now; the earliest end of their locks."""
    held = locks_of(repo.storage, names, clock.now())
    for name in names:
        if name not in held:
            verdict.problems.append(
                f"{name} is not under Object Lock (any more): it can be deleted"
            )
    if held:
        verdict.locked_until = min(held.values())

"""An etcd backup: the snapshot taken from the first member that answers, checked
twice before a byte of it is stored, then streamed into the repository as
``SYSTEM.db`` of a snapshot.

etcdctl writes a snapshot only to a file, so it is staged in a private directory
(0700) and removed afterwards, whatever happens. The checks need the file whole:

1. the SHA-256 etcd appends to the snapshot stream must match the database before it
   (a transfer cut short or damaged on the way fails here);
2. ``etcdctl snapshot status`` must open the database and answer its revision, hash
   and key count (a database bbolt cannot read fails here).

The live keys are then counted at the snapshot's revision (all of them, and each of
the system's ``check_prefixes``), on the member the snapshot came from: a drill holds
its restored copy against these counts. A revision compacted away in the meantime
leaves the counts out, with a warning; the snapshot is still good.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from drplan.errors import SourceError
from drplan.plan.model import EtcdSystem
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.etcd.etcdctl import SNAPSHOT_TIMEOUT, Etcdctl, EtcdError
from drplan.sources.stored import Run, TreeBuilder, store_stream

SHA256_TRAILER = 32
# bbolt writes a change into free pages where they lie and moves nothing else: blocks
# at fixed offsets keep every unchanged page's block, where content-defined chunks of
# 1 MiB around each of a change's scattered pages would store most of the file again.
# 64 KiB: ten changed keys cost about a megabyte, and an 8 GiB database 128 Ki blobs.
BLOCK = 64 * 1024
PAGE = 512  # etcd's snapshot: whole bbolt pages, then the SHA-256


def snapshot_name(system: str) -> str:
    return system + ".db"


def trailer_ok(path: Path) -> bool:
    """Whether the snapshot ends with the SHA-256 of what comes before it."""
    size = path.stat().st_size
    if size < PAGE or size % PAGE != SHA256_TRAILER:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = size - SHA256_TRAILER
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                return False
            digest.update(block)
            left -= len(block)
        return digest.digest() == f.read()


def take_snapshot(system: str, spec: EtcdSystem, into: Path) -> tuple[Etcdctl, dict[str, Any]]:
    """Save a checked snapshot at ``into`` from the first member that answers; the member
    and ``snapshot status``'s answer."""
    failures = []
    for endpoint in spec.endpoints:
        ctl = Etcdctl(system, spec, endpoint)
        try:
            member = ctl.member_status()
            ctl.run("snapshot", "save", str(into), timeout=SNAPSHOT_TIMEOUT)
        except EtcdError as exc:
            failures.append(exc)
            continue
        if not trailer_ok(into):
            raise EtcdError(
                f"system {system}: the snapshot from {endpoint} is damaged (its SHA-256 does"
                " not match); nothing was stored",
                hint="take the backup again; if it repeats, check the member's disk",
            )
        status = ctl.json("snapshot", "status", str(into))
        if not isinstance(status.get("revision"), int) or not isinstance(
            status.get("totalKey"), int
        ):
            raise EtcdError(f"system {system}: etcdctl snapshot status answered no revision")
        return ctl, {**status, "version": member.get("version")}
    if len(failures) == 1:
        raise failures[0]
    raise EtcdError(
        f"system {system}: no member could give a snapshot: "
        + "; ".join(f.message.split(": ", 1)[-1] for f in failures),
        hint=failures[-1].hint,
    )


def counts_at(ctl: Etcdctl, spec: EtcdSystem, revision: int) -> dict[str, int] | None:
    """The live keys at ``revision``: "" for all, and each check prefix; None if compacted."""
    try:
        return {p: ctl.key_count(p, revision) for p in ["", *spec.check_prefixes]}
    except EtcdError as exc:
        if "compacted" not in exc.message:
            raise
        print(f"drplan: warning: system {ctl.system}: revision {revision} was compacted before"
              " its keys were counted: drills will check the snapshot opens, not its counts",
              file=sys.stderr)  # fmt: skip
        return None


def etcd_backup(
    repo: Repository,
    *,
    system: str,
    spec: EtcdSystem,
    job: str | None,
    tags: list[str],
    host: str | None = None,
) -> Snapshot:
    """Take, check and store a snapshot of the system's cluster (``repo`` locked by the caller)."""
    run = Run(repo)
    staging = Path(tempfile.mkdtemp(prefix="drplan-etcd-"))
    try:
        file = staging / "snapshot.db"
        ctl, status = take_snapshot(system, spec, file)
        revision = int(status["revision"])
        counts = counts_at(ctl, spec, revision)
        tree = TreeBuilder()
        with file.open("rb") as stream, BlobPool(repo, DATA) as pool:
            stored = store_stream(repo, pool, stream, BLOCK)
        tree.add(snapshot_name(system), stored)
    except OSError as exc:
        raise SourceError(f"system {system}: cannot stage the etcd snapshot: {exc.strerror}",
                          hint="check the space and permissions of the temporary directory"
                          ) from None  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    source: dict[str, Any] = {
        "kind": "etcd",
        "endpoint": ctl.endpoint,
        "file": snapshot_name(system),
        "size": stored.size,
        "sha256": stored.sha256,
        "etcd_version": status.get("version"),
        "revision": revision,
        "hash": status.get("hash"),
        "total_keys": status.get("totalKey"),  # every revision of every key, as bbolt holds them
        "keys": None if counts is None else counts[""],
        "prefixes": None if counts is None else {p: counts[p] for p in spec.check_prefixes},
    }
    return run.save(tree, system=system, job=job, tags=tags, source=source,
                    bytes_read=stored.size, files_new=1, host=host)  # fmt: skip

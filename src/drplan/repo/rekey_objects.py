"""The standalone objects ``copy --rekey`` carries into the new repository, each opened with
the source's keys and sealed again with the target's: archived WAL files (renamed: their
name's digest is a keyed hash, recomputed under the new blob-id key, so ``wal fetch`` and
point-in-time recovery work from the new repository) and incident timelines (same names).

Audit entries are not carried: each location's trail is its own, and its hashes are keyed
with the blob-id key that the re-key replaces (the command starts the new repository's
trail with an entry naming the source and its head). Locks, key files, tombstones and
keyrings belong to the source's keys and are not carried either.

Each object is written whole or not at all, so after a crash a rerun copies what the target
lacks; a newer ``.partial`` of a segment replaces the one an earlier run carried.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from drplan.errors import DrplanError, IntegrityError
from drplan.incidents import replicas as incidents
from drplan.repo.objects import open_object, seal_object
from drplan.repo.repository import Repository
from drplan.sources.postgres.wal_archive import DIGEST_HEX, WAL_FILE, WAL_LEVEL, WAL_PREFIX
from drplan.storage import NotFound, ObjectInfo

WORKERS = 4  # WAL files in flight (16 MiB each, usually): hides S3 latency


@dataclass
class Carried:
    """What carrying one kind of object did."""

    copied: int = 0
    present: int = 0  # carried by an earlier run
    damaged: list[str] = field(default_factory=list)  # one line each: which, and why

    def as_dict(self) -> dict[str, object]:
        return {"copied": self.copied, "already_present": self.present, "damaged": self.damaged}


def carry_wal(
    source: Repository,
    target: Repository,
    systems: set[str] | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> Carried:
    """Every archived WAL file of ``systems`` (None: of every system) re-sealed into the
    target, under its digest there; of a segment's ``.partial`` files, the newest."""
    done = Carried()
    lock = threading.Lock()
    there: dict[str, list[str]] = {}  # object name without digest -> names in the target
    for info in target.storage.list(WAL_PREFIX):
        there.setdefault(info.name.rpartition(".")[0], []).append(info.name)

    def carry(info: ObjectInfo) -> None:
        stem, _, digest = info.name.rpartition(".")
        try:
            data = _wal_content(source, info.name, stem, digest)
        except (IntegrityError, NotFound) as exc:
            with lock:
                done.damaged.append(f"{info.name}: {exc}")
            return
        name = f"{stem}.{target.key.blob_id(data).hex()[:DIGEST_HEX]}"
        if name in there.get(stem, []):
            with lock:
                done.present += 1
            return
        target.storage.write(name, seal_object(target.key, target.cipher, "wal", data, WAL_LEVEL))
        for old in there.get(stem, []):  # an older .partial of the segment: the new one is durable
            with contextlib.suppress(DrplanError):
                target.storage.delete(old)
        with lock:
            done.copied += 1
        report(f"WAL {stem.rsplit('/', 1)[-1]} re-sealed")

    wanted = []
    for info in _newest_partials(source.storage.list(WAL_PREFIX)):
        stem = info.name.rpartition(".")[0]
        if systems is not None and stem.split("/")[1] not in systems:
            continue
        if stem in there and not stem.endswith(".partial"):
            done.present += 1  # a whole file's content never changes: not read again
            continue
        wanted.append(info)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="drplan-rekey-wal") as pool:
        for _ in pool.map(carry, wanted):
            pass
    return done


def _wal_content(source: Repository, name: str, stem: str, digest: str) -> bytes:
    """A WAL object's content, authenticated and held against the digest in its name."""
    if not WAL_FILE.fullmatch(stem.rsplit("/", 1)[-1]) or len(digest) != DIGEST_HEX:
        raise IntegrityError("not the name of an archived WAL file")
    data = open_object(source.key, source.cipher, "wal", source.storage.read(name), name)
    if source.key.blob_id(data).hex()[:DIGEST_HEX] != digest:
        raise IntegrityError("its content does not match its name (damaged)")
    return data


def _newest_partials(listing: Iterable[ObjectInfo]) -> list[ObjectInfo]:
    """The listing with, of several ``.partial`` of one segment (an old one that outlived its
    replacement, under Object Lock), only the newest: the one ``wal fetch`` takes."""
    out: dict[str, ObjectInfo] = {}
    for info in listing:
        stem = info.name.rpartition(".")[0]
        key = stem if stem.endswith(".partial") else info.name
        if key not in out or out[key].mtime < info.mtime:
            out[key] = info
    return sorted(out.values(), key=lambda i: i.name)


def carry_incidents(source: Repository, target: Repository) -> Carried:
    """Every copy of an incident's timeline, re-sealed under the same name."""
    done = Carried()
    there = {info.name for info in target.storage.list(incidents.PREFIX)}
    for info in source.storage.list(incidents.PREFIX):
        if info.name in there:
            done.present += 1
            continue
        try:
            stored = source.storage.read(info.name)
            body = open_object(source.key, source.cipher, incidents.KIND, stored, info.name)
        except (IntegrityError, NotFound) as exc:
            done.damaged.append(f"{info.name}: {exc}")
            continue
        sealed = seal_object(target.key, target.cipher, incidents.KIND, body, incidents.LEVEL)
        target.storage.write(info.name, sealed)
        done.copied += 1
    return done

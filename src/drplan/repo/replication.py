"""Replicas: one repository in many locations, and copying snapshots between them.

Every location of a plan holds a replica of the same repository: the same config
(id, chunker parameters, cipher) and the same key files, hence the same master key.
Objects are sealed once and move between replicas as they are: a pack keeps its
name (the BLAKE3 of its bytes), a snapshot its id. What differs per location is
which snapshots it holds (each location has its own retention), and so which packs
and index objects.

A copy writes in the order every writer follows: packs, then an index naming them,
then the snapshot objects; each object is verified on the target (read back, or by
the checksum the service computed where an archive class cannot be read) before
anything that refers to it is written. A copy cut short leaves packs without an
index: the next copy finds them, checks them against the source and reuses them,
and prune removes any that no copy comes back for. A snapshot is visible on the
target only when everything it references is durable and verified there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from drplan.errors import DrplanError, IntegrityError, ReplicaMismatchError
from drplan.progress import Progress
from drplan.repo.config import RepoConfig
from drplan.repo.crypto import object_id
from drplan.repo.index import IndexFile, PackInfo
from drplan.repo.keyring import KEYRING_PREFIX, load_keyring
from drplan.repo.keys import KEY_PREFIX, REVOKED_PREFIX, revoked_ids
from drplan.repo.objectlock import delete_unless_locked, wall_now
from drplan.repo.objects import open_object
from drplan.repo.pack import TREE
from drplan.repo.repository import (
    CONFIG,
    DATA_PREFIX,
    INDEX_PREFIX,
    SNAPSHOT_PREFIX,
    Repository,
    pack_name,
)
from drplan.repo.snapshot import Snapshot
from drplan.storage import NotFound, Storage


class SourceDamage(IntegrityError):
    """What a snapshot needs is damaged or missing in the source: that snapshot is skipped.
    (Failures writing or verifying on the target are not this: they stop the copy.)"""

    origin = "source"


COPY_WORKERS = 4  # packs in flight: hides S3 latency; each holds one pack in memory
INDEX_EVERY = 64  # packs per index object written during a copy, so a resume skips them


@dataclass
class CopyResult:
    created: bool = False  # the target was empty and is now a replica
    copied: list[str] = field(default_factory=list)  # snapshot ids now on the target
    already: list[str] = field(default_factory=list)  # wanted, and on the target before
    vanished: list[str] = field(default_factory=list)  # deleted from the source meanwhile
    damaged: dict[str, str] = field(default_factory=dict)  # snapshot id -> why not copied
    not_kept: int = 0  # left out: the target's retention would not keep them
    packs_copied: int = 0
    packs_reused: int = 0  # left on the target by an interrupted copy, verified and kept
    bytes_copied: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "created": self.created,
            "copied": self.copied,
            "already_present": self.already,
            "vanished": self.vanished,
            "damaged": self.damaged,
            "not_kept_by_target_retention": self.not_kept,
            "packs_copied": self.packs_copied,
            "packs_reused": self.packs_reused,
            "bytes_copied": self.bytes_copied,
        }


def put_verified(storage: Storage, name: str, data: bytes, *, hot: bool = False) -> None:
    """Write an object and confirm the location holds exactly those bytes."""
    storage.write(name, data, hot=hot)
    storage.verify(name, data)


def same_repository(source: Repository, target: Storage) -> bool | None:
    """Whether ``target`` holds a replica of ``source``: None when it holds no repository."""
    try:
        sealed = target.read(CONFIG)
    except NotFound:
        return None
    try:
        body = open_object(source.key, source.cipher, "config", sealed, "config")
    except IntegrityError:
        return False  # another master key: another repository
    return RepoConfig.from_json(body).id == source.config.id


def open_replica(source: Repository, target: Storage, *, create: bool) -> tuple[Repository, bool]:
    """``target`` as a replica of ``source``, and whether it was created just now.

    An empty target becomes a replica (key files first, the config last, as ``repo
    init`` writes them) when ``create`` is set; a target holding another repository,
    or objects but no config, is refused.
    """
    where = target.url
    match same_repository(source, target):
        case True:
            sync_keys(source, target)
            return Repository(
                target, source.config, source.key, source.key_id, source.master
            ), False
        case False:
            raise ReplicaMismatchError(
                f"{where} holds a different repository, or its config is damaged"
                " (it does not open with this one's key)",
                hint="copy to an empty location or to a replica of this repository;"
                " a damaged config can be copied back from a replica",
            )
    foreign = [
        info.name
        for prefix in (DATA_PREFIX, INDEX_PREFIX, SNAPSHOT_PREFIX)
        for info in target.list(prefix)
    ]
    if foreign:
        raise ReplicaMismatchError(
            f"{where} holds {len(foreign)} repository objects (e.g. {foreign[0]}) but no config",
            hint="it is not a replica of this repository; copy to an empty location",
        )
    if not create:
        raise ReplicaMismatchError(
            f"{where} holds no repository (destroyed, unmounted, or never seeded):"
            " seed it as a replica with `drplan copy --from LOCATION --to LOCATION`",
            hint="a backup never creates a replica by itself: an empty directory may be a"
            " disk that is not mounted",
        )
    sync_keys(source, target)
    put_verified(target, CONFIG, source.storage.read(CONFIG))
    return Repository(target, source.config, source.key, source.key_id, source.master), True


def sync_keys(source: Repository, target: Storage) -> None:
    """Bring the target's passwords in line: keys of the source are added, keys revoked on
    either side (a sealed tombstone under ``revoked/``) are revoked on the target.

    Additions come first, and the key that opened the source always ends up on the
    target, so the target never loses its last usable key, even if cut short.
    """
    ring, cipher = source.key, source.cipher
    sync_keyrings(source, target)
    revoked_here = revoked_ids(source.storage, ring, cipher)
    revoked_there = revoked_ids(target, ring, cipher)
    if source.key_id in revoked_there:
        raise DrplanError(
            f"{target.url} revokes key {source.key_id[:12]}, the one whose password opened"
            f" {source.storage.url}: the two locations disagree about passwords",
            hint="open with a password both locations accept (see `drplan key list` on each)",
        )
    revoked = revoked_here | revoked_there
    there = {info.name.removeprefix(KEY_PREFIX) for info in target.list(KEY_PREFIX)}
    for info in source.storage.list(KEY_PREFIX):
        key_id = info.name.removeprefix(KEY_PREFIX)
        if key_id not in revoked and key_id not in there:
            put_verified(target, info.name, source.storage.read(info.name))
    for key_id in sorted(revoked_here - revoked_there):
        put_verified(target, REVOKED_PREFIX + key_id, source.storage.read(REVOKED_PREFIX + key_id))
    now = wall_now()
    for key_id in sorted(there & revoked):
        # Hygiene only: the tombstone already makes the key useless. A key file under Object
        # Lock stays (a delete would only hide it) until a copy after its lock ends; one whose
        # location's credentials may not delete (an append-only host) stays too.
        with contextlib.suppress(DrplanError):
            delete_unless_locked(target, KEY_PREFIX + key_id, now)


def sync_keyrings(source: Repository, target: Storage) -> None:
    """Give the target the source's live keyrings (a key rotation it missed), then delete
    there the keyrings they supersede. The source's own keyring always reaches the target
    before anything sealed with its newest data key can."""
    if source.master is None:
        return
    loaded = load_keyring(source.storage, source.master, source.cipher)
    there = {info.name for info in target.list(KEYRING_PREFIX)}
    for name in sorted(loaded.live):
        if KEYRING_PREFIX + name not in there:
            put_verified(target, KEYRING_PREFIX + name, source.storage.read(KEYRING_PREFIX + name))
    replaced = {old for doc in loaded.live.values() for old in doc.supersedes}
    for name in sorted(replaced):
        if KEYRING_PREFIX + name in there:
            with contextlib.suppress(DrplanError):  # a locked one stays; it opens no data
                delete_unless_locked(target, KEYRING_PREFIX + name, wall_now())


def target_snapshot_ids(target: Repository) -> set[str]:
    return {
        info.name.removeprefix(SNAPSHOT_PREFIX) for info in target.storage.list(SNAPSHOT_PREFIX)
    }


def blobs_of(
    repo: Repository, snapshots: Iterable[Snapshot], seen: set[bytes] | None = None
) -> set[bytes]:
    """Every blob (trees and contents) the snapshots need, except below trees in ``seen``
    (already walked: what they need is known)."""
    needed: set[bytes] = set()
    seen = seen or set()
    for snapshot in snapshots:
        stack = [snapshot.tree]
        while stack:
            tree_id = stack.pop()
            if tree_id in needed or tree_id in seen:
                continue
            needed.add(tree_id)
            # Listings as stored, not nodes: only ids are needed, and building a node per
            # entry was most of the time of an incremental copy.
            try:
                for entry in repo.load_listing(tree_id).values():
                    needed.update(bytes.fromhex(c) for c in entry.get("content") or ())
                    if subtree := entry.get("subtree"):
                        stack.append(bytes.fromhex(subtree))
            except (TypeError, ValueError, AttributeError):
                raise IntegrityError(f"tree {tree_id.hex()[:16]} is malformed") from None
    return needed


def source_blobs(source: Repository, snapshots: list[Snapshot]) -> set[bytes]:
    """Every blob the snapshots need; SourceDamage when a tree of theirs cannot be read."""
    try:
        return blobs_of(source, snapshots)
    except IntegrityError as exc:
        raise SourceDamage(exc.message, exc.hint) from None


def packs_to_copy(
    source: Repository,
    target: Repository,
    snapshots: list[Snapshot],
    needed: set[bytes] | None = None,
) -> list[PackInfo]:
    """The source packs holding blobs the snapshots need (``needed``, when walked already)
    and the target lacks."""
    packs: dict[str, PackInfo] = {}
    if needed is None:
        needed = source_blobs(source, snapshots)
    for blob_id in needed:
        if blob_id in target.index.blobs:
            continue
        where = source.index.lookup(blob_id)
        if where is None:
            raise SourceDamage(
                f"{source.storage.url}: blob {blob_id.hex()[:16]} is not in the index",
                hint=f"run `drplan check --repo {source.storage.url}`",
            )
        packs[where.pack.id] = where.pack
    return sorted(packs.values(), key=lambda p: p.id)


class _Copier:
    def __init__(
        self,
        source: Repository,
        target: Repository,
        report: Callable[[str], None],
        progress: Progress | None = None,
    ) -> None:
        self.source, self.target, self.report = source, target, report
        self.progress = progress
        self.result = CopyResult()
        self._lock = threading.Lock()
        self._indexed: list[PackInfo] = []

    def copy_packs(self, packs: list[PackInfo], stored: dict[str, int]) -> None:
        with ThreadPoolExecutor(COPY_WORKERS, thread_name_prefix="drplan-copy") as pool:
            for done in pool.map(lambda p: self._copy_pack(p, stored), packs):
                self._indexed.append(done)
                if len(self._indexed) >= INDEX_EVERY:
                    self.write_index()
        self.write_index()

    def _copy_pack(self, pack: PackInfo, stored: dict[str, int]) -> PackInfo:
        name = pack_name(pack.id)
        try:
            data = self.source.storage.read(name)
        except NotFound:
            raise SourceDamage(
                f"{self.source.storage.url}: pack {pack.id[:16]} is missing; not copied",
                hint=f"run `drplan check --repo {self.source.storage.url}`",
            ) from None
        except DrplanError as exc:
            exc.origin = exc.origin or "source"  # the source failed, not the target
            raise
        if object_id(data) != pack.id:
            raise SourceDamage(
                f"{self.source.storage.url}: pack {pack.id[:16]} is damaged; not copied",
                hint=f"run `drplan check --repo {self.source.storage.url}`",
            )
        if stored.get(name) == len(data):
            try:
                self.target.storage.verify(name, data)
            except (IntegrityError, NotFound):
                pass  # damaged or gone since the listing: write it again
            else:
                with self._lock:
                    self.result.packs_reused += 1
                self._advanced(pack)
                return pack
        hot = all(e.type == TREE for e in pack.entries)
        before = wall_now()  # its lock (Object Lock) lasts from a moment after this
        put_verified(self.target.storage, name, data, hot=hot)
        self.target.lock_cover.written(name, before)
        with self._lock:
            stored[name] = len(data)
            self.result.packs_copied += 1
            self.result.bytes_copied += len(data)
        self.report(f"copied pack {pack.id[:16]} ({len(data)} bytes)")
        self._advanced(pack)
        return pack

    def _advanced(self, pack: PackInfo) -> None:
        # Counted as the total is (by the blobs' bytes): the headers are not known before.
        if self.progress is not None:
            self.progress.done(1, pack.size)

    def write_index(self) -> None:
        if not self._indexed:
            return
        body = self.target.encode_index(IndexFile(self._indexed))
        data = self.target.seal("index", body)
        put_verified(self.target.storage, INDEX_PREFIX + object_id(data), data)
        self.target.index_names.add(INDEX_PREFIX + object_id(data))
        for pack in self._indexed:
            self.target.index.add_pack(pack)
        self._indexed = []

    def copy_snapshot(self, snapshot: Snapshot, needed: set[bytes]) -> None:
        """Write the snapshot object last; ``needed``: the blobs it needs, all on the target."""
        name = SNAPSHOT_PREFIX + snapshot.id
        try:
            data = self.source.storage.read(name)
        except NotFound:
            self.result.vanished.append(snapshot.id)
            self.report(f"snapshot {snapshot.short_id} was deleted from the source; skipped")
            return
        if object_id(data) != snapshot.id:
            self.result.damaged[snapshot.id] = (
                f"{self.source.storage.url}: snapshot {snapshot.short_id} is damaged"
            )
            return
        if self.target.storage.lock_days:  # the packs it reuses there must outlast it
            # Imported here: immutability builds on this module (it walks trees with it).
            from drplan.repo.immutability import cover_snapshot  # noqa: PLC0415

            cover_snapshot(self.target, snapshot, needed)
        put_verified(self.target.storage, name, data)
        self.result.copied.append(snapshot.id)
        self.report(f"snapshot {snapshot.short_id} copied")


def copy_snapshots(
    source: Repository,
    target: Repository,
    snapshots: list[Snapshot],
    report: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy ``snapshots`` from ``source`` to the replica ``target`` (both locked by the caller).

    Both indexes must be loaded. Snapshots the target has are left alone. ``progress``
    counts packs and bytes sent (or found already there) of those the copy will send.
    """
    copier = _Copier(source, target, report, progress)
    present = target_snapshot_ids(target)
    todo = [s for s in snapshots if s.id not in present]
    copier.result.already = [s.id for s in snapshots if s.id in present]
    if not todo:
        return copier.result
    stored = {info.name: info.size for info in target.storage.list(DATA_PREFIX)}
    lost = [p for p in target.index.packs if pack_name(p) not in stored]
    if lost:  # its index would vouch for blobs it does not hold: copying on top hides that
        raise IntegrityError(
            f"{target.storage.url}: {len(lost)} pack(s) its index lists are missing"
            f" (e.g. {lost[0][:16]}); nothing was copied",
            hint=f"run `drplan prune --repo {target.storage.url}` to drop them from its index,"
            " then copy again to send what they held",
        )
    if progress is not None:
        sending = _to_send(source, target, todo)
        progress.set_totals(len(sending), sum(p.size for p in sending))
    # One snapshot at a time, oldest first: damage in one does not hold back the others,
    # and each becomes visible as soon as all it needs is there.
    for snapshot in sorted(todo, key=lambda s: (s.time, s.id)):
        try:
            needed = source_blobs(source, [snapshot])
            copier.copy_packs(packs_to_copy(source, target, [snapshot], needed), stored)
        except SourceDamage as exc:
            copier.write_index()  # what did arrive is kept, and indexed
            copier.result.damaged[snapshot.id] = exc.message
            report(f"snapshot {snapshot.short_id} not copied: {exc.message}")
            continue
        copier.copy_snapshot(snapshot, needed)
    return copier.result


def _to_send(source: Repository, target: Repository, snapshots: list[Snapshot]) -> list[PackInfo]:
    """The packs the copy of ``snapshots`` will send, for its progress: one more walk of
    their trees, made only when progress is shown. It never stops the copy: what it cannot
    read (a damaged snapshot) the copy itself reports, snapshot by snapshot."""
    try:
        return packs_to_copy(source, target, snapshots)
    except DrplanError:
        packs: dict[str, PackInfo] = {}
        for snapshot in snapshots:
            with contextlib.suppress(DrplanError):
                packs.update((p.id, p) for p in packs_to_copy(source, target, [snapshot]))
        return list(packs.values())

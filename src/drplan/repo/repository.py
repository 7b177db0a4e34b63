"""Opening, creating, reading and writing a repository on one storage backend.

Writers add blobs from several threads; blobs are hashed and compressed in the
caller's thread (the libraries release the GIL) and sealed into per-thread packs.
Packs are written when full, indexes after the packs they list, snapshots last:
the write order of docs/repository-format.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drplan.errors import DrplanError, IntegrityError, RepositoryNotFoundError
from drplan.repo import compression
from drplan.repo.config import DEFAULT_COMPRESSION_LEVEL, RepoConfig
from drplan.repo.crypto import CipherName, KeyRing, MasterKey, object_id
from drplan.repo.index import Index, IndexFile, Location, PackInfo, live_index_files
from drplan.repo.keyring import (
    KEYRING_PREFIX,
    LoadedKeyring,
    load_keyring,
    new_keyring,
    seal_keyring,
)
from drplan.repo.keys import KEY_PREFIX, KdfParams, add_key, open_with_password
from drplan.repo.objectlock import LockCover, wall_now
from drplan.repo.objects import open_object, seal_object
from drplan.repo.pack import DATA, TREE, PackWriter, open_blob
from drplan.repo.packcache import PackCache
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node, TreeDamage, decode_listing, decode_tree, encode_tree
from drplan.repo.whereis import path_of
from drplan.storage import NotFound, Storage

CONFIG = "config"
INDEX_PREFIX = "index/"
SNAPSHOT_PREFIX = "snapshots/"
DATA_PREFIX = "data/"
# Write an index after this many new packs, so a crash mid-backup loses little dedup state.
INDEX_EVERY_PACKS = 64
TREE_CACHE_SIZE = 2048
PACK_WRITERS = 1  # a thread writing finished packs (fsync locally, PUT on S3)
KEYRING_WATCH = 60.0  # seconds between looks at keyring/ by a process that writes
PACKS_IN_FLIGHT = 2  # finished packs waiting to be written, at most (16 MiB each)


def pack_name(pack_id: str) -> str:
    return f"{DATA_PREFIX}{pack_id[:2]}/{pack_id}"


@dataclass
class WriteStats:
    blobs_added: int = 0
    bytes_added: int = 0  # plaintext of new blobs
    bytes_stored: int = 0  # bytes written to packs


class Repository:
    def __init__(
        self,
        storage: Storage,
        config: RepoConfig,
        key: KeyRing,
        key_id: str,
        master: MasterKey | None = None,
    ) -> None:
        self.storage = storage
        self.config = config
        self.key = key  # the data keys: everything but key files and the keyring
        self.key_id = key_id
        self.master = master  # what key files wrap; None where only data is handled
        self.index = Index()
        self.index_names: set[str] = set()  # the live index objects (loaded, or written since)
        # Object Lock: what this run learnt of locks here (immutability.cover_snapshot).
        self.lock_cover = LockCover(storage)
        self.stats = WriteStats()
        self._lock = threading.Lock()
        self._pending: set[bytes] = set()
        # Trees and file data go to separate packs: listings stay small to read, and damage
        # to a data pack leaves the listings that name the affected files readable.
        self._idle: dict[int, list[PackWriter]] = {DATA: [], TREE: []}
        self._unindexed: list[PackInfo] = []
        self._trees: dict[bytes, list[Node]] = {}
        self.pack_cache: PackCache | None = None  # set by readers of many small blobs
        self.compression_level = config.compression_level  # a job may ask for another
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []
        self._write_slots = threading.BoundedSemaphore(PACKS_IN_FLIGHT)
        self._failure: BaseException | None = None
        self._keyring_seen: frozenset[str] | None = None  # see watch_keyring
        self._keyring_checked = 0.0
        self.looked_up: list[Snapshot] = []  # by find_snapshot: where damage is told to be
        self.passed_over: dict[str, str] = {}  # by find_snapshot("latest"): unreadable ones

    @property
    def cipher(self) -> CipherName:
        return self.config.cipher

    def opened_master(self) -> MasterKey:
        """The master key, for what changes passwords or keys: only a repository opened
        with a password has it."""
        if self.master is None:
            raise DrplanError(
                f"{self.storage.url} was not opened with a password",
                hint="open it with its password to change its keys",
            )
        return self.master

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        storage: Storage,
        password: bytes,
        *,
        kdf: KdfParams | None = None,
        cipher: CipherName = "aes-256-gcm",
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        config: RepoConfig | None = None,
        key: MasterKey | None = None,
    ) -> Repository:
        """Create a repository; its config is written last, so a crash leaves none half-visible."""
        if _has(storage, CONFIG):
            raise DrplanError(
                f"{storage.url} already holds a repository", hint="open it instead of init"
            )
        if any(True for _ in storage.list(KEY_PREFIX)):
            raise DrplanError(
                f"{storage.url} holds key files but no config: a repository creation was interrupted",
                hint="delete the location's keys/ and run `drplan repo init` again",
            )
        config = config or RepoConfig.new(cipher, compression_level)
        master = key or MasterKey.generate()
        # The keyring first, the key file next, the config last: a crash leaves no config,
        # and a repository whose data no master key seals directly (see the format).
        doc = new_keyring(None, [], [])
        name, data = seal_keyring(master, config.cipher, doc)
        storage.write(name, data)
        key_id = add_key(
            storage, master, password, kdf or KdfParams(), config.cipher, "initial key"
        )
        ring = doc.ring(master.id_key)
        storage.write(CONFIG, seal_object(ring, config.cipher, "config", config.to_json()))
        return cls(storage, config, ring, key_id, master)

    @classmethod
    def open(cls, storage: Storage, password: bytes) -> Repository:
        if not _has(storage, CONFIG):
            if any(True for _ in storage.list(KEY_PREFIX)):
                raise RepositoryNotFoundError(
                    f"{storage.url}: repository creation was interrupted (key files but no config)",
                    hint="delete the location's keys/ and run `drplan repo init` again",
                )
            raise RepositoryNotFoundError(
                f"no repository at {storage.url}",
                hint="check the location, or create one with `drplan repo init`",
            )
        opened = open_with_password(storage, password)
        ring = opened.keyring.ring
        stored = storage.read(CONFIG)
        try:
            body = open_object(ring, opened.cipher, "config", stored, "config")
        except IntegrityError:
            # A config sealed under a keyring, and no keyring this master opens.
            if opened.keyring.legacy and stored[4:5] != b"\x01":
                raise IntegrityError(
                    f"{storage.url}: the config does not open, and no keyring opens with this"
                    " password's master key (the keyring is damaged or missing)",
                    hint="restore keyring/ from a replica, or open with a newer password"
                    " if the key was rotated",
                ) from None
            raise IntegrityError(
                f"{storage.url}: the config object is damaged", hint="restore it from a replica"
            ) from None
        repo = cls(storage, RepoConfig.from_json(body), ring, opened.key_id, opened.master)
        repo.watch_keyring(opened.keyring)
        return repo

    # -- objects ----------------------------------------------------------------------------

    def watch_keyring(self, loaded: LoadedKeyring) -> None:
        """From now on, refuse to write once the keyring differs from ``loaded`` (a rotation
        elsewhere): a process that opened the repository before a re-encryption would
        otherwise write with data keys about to be dropped. Checked at most once a minute."""
        self._keyring_seen = loaded.names
        self._keyring_checked = time.monotonic()

    def refresh_keyring(self) -> None:
        """After this process changed the keyring itself: its data keys, watched afresh."""
        loaded = load_keyring(self.storage, self.opened_master(), self.cipher)
        self.key = loaded.ring
        self.watch_keyring(loaded)

    def _check_keyring(self) -> None:
        if self._keyring_seen is None or time.monotonic() - self._keyring_checked < KEYRING_WATCH:
            return
        self._keyring_checked = time.monotonic()
        if frozenset(i.name for i in self.storage.list(KEYRING_PREFIX)) != self._keyring_seen:
            raise DrplanError(
                f"{self.storage.url}: the repository's keyring changed since this process"
                " opened it (its master key was rotated): nothing more is written with the"
                " keys it holds",
                hint="restart it with the new password",
            )

    def seal(self, kind: str, body: bytes) -> bytes:
        """An object's stored bytes; its name is ``object_id`` of them."""
        self._check_keyring()
        return seal_object(self.key, self.cipher, kind, body, self.config.compression_level)

    def save_object(self, kind: str, prefix: str, body: bytes) -> str:
        data = self.seal(kind, body)
        name = object_id(data)
        self.storage.write(prefix + name, data)
        return name

    def load_object(self, kind: str, name: str) -> bytes:
        stored = self.storage.read(name)
        if object_id(stored) != name.rsplit("/", 1)[-1]:
            raise IntegrityError(f"{name}: its bytes do not match its name (damaged)")
        return open_object(self.key, self.cipher, kind, stored, name)

    # -- index -------------------------------------------------------------------------------

    def save_index(self, index_file: IndexFile) -> str:
        name = self.save_object("index", INDEX_PREFIX, self.encode_index(index_file))
        with self._lock:
            self.index_names.add(INDEX_PREFIX + name)
        return name

    def encode_index(self, index_file: IndexFile) -> bytes:
        return index_file.encode(versioned=self.key.versioned)

    def load_index(self) -> Index:
        files = [
            (
                info.name.removeprefix(INDEX_PREFIX),
                IndexFile.decode(self.load_object("index", info.name), info.name),
            )
            for info in self.storage.list(INDEX_PREFIX)
        ]
        index = Index()
        live = live_index_files(files)
        for _, index_file in live:
            index.add_file(index_file)
        self.index = index
        self.index_names = {INDEX_PREFIX + name for name, _ in live}
        return index

    def index_files(self) -> Iterator[tuple[str, IndexFile]]:
        for info in self.storage.list(INDEX_PREFIX):
            yield (
                info.name.removeprefix(INDEX_PREFIX),
                IndexFile.decode(self.load_object("index", info.name), info.name),
            )

    # -- writing blobs -----------------------------------------------------------------------

    def has_all(self, blob_ids: list[bytes]) -> bool:
        """Whether every blob is stored (the index) or being stored (pending): one call per file."""
        blobs, pending = self.index.blobs, self._pending
        # A plain loop, not all(): a generator costs more, and this runs once per unchanged file.
        for b in blob_ids:  # noqa: SIM110
            if b not in blobs and b not in pending:
                return False
        return True

    def save_blob(
        self,
        blob_type: int,
        plaintext: bytes | bytearray | memoryview,
        blob_id: bytes | None = None,
    ) -> tuple[bytes, bool]:
        """Store a blob unless the repository has it; returns its id and whether it was new."""
        if self._failure is not None:
            raise self._failure  # a pack write failed: stop adding to a backup that cannot finish
        blob_id = blob_id or self.key.blob_id(plaintext)
        with self._lock:
            if blob_id in self.index or blob_id in self._pending:
                return blob_id, False
            self._pending.add(blob_id)
            idle = self._idle[blob_type]
            packer = idle.pop() if idle else PackWriter(self.key, self.cipher)
        kind, payload = compression.compress(plaintext, self.compression_level)
        before = packer.size
        packer.add_prepared(blob_type, blob_id, kind, payload, len(plaintext))
        full = packer.size >= self.config.pack_size
        # One lock round for the bookkeeping and handing the packer back: this runs per blob.
        with self._lock:
            stats = self.stats
            stats.blobs_added += 1
            stats.bytes_added += len(plaintext)
            stats.bytes_stored += packer.size - before
            if not full:
                self._idle[blob_type].append(packer)
        if full:
            self._queue_pack(packer)
        return blob_id, True

    def save_tree(self, nodes: list[Node]) -> bytes:
        blob_id, _ = self.save_blob(TREE, encode_tree(nodes))
        return blob_id

    def _queue_pack(self, packer: PackWriter) -> None:
        """Write a full pack in the background, so hashing and compressing go on meanwhile.

        At most PACKS_IN_FLIGHT packs wait to be written: memory stays bounded, and a slow
        storage slows the backup down instead of filling memory.
        """
        self._write_slots.acquire()
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    max_workers=PACK_WRITERS, thread_name_prefix="drplan-pack-writer"
                )
            future = self._writer.submit(self._write_pack, packer)
            self._writes.append(future)
        future.add_done_callback(self._written)

    def _written(self, future: Future[None]) -> None:
        self._write_slots.release()
        error = future.exception()
        if error is not None and self._failure is None:
            self._failure = error

    def _wait_for_writes(self) -> None:
        """Wait for every pack being written, then raise the first failure: returning at the
        first would leave other writes running after the caller let go of its lock."""
        with self._lock:
            writes, self._writes = self._writes, []
            writer, self._writer = self._writer, None
        failure: BaseException | None = None
        for future in writes:
            try:
                future.result()
            except BaseException as exc:
                failure = failure or exc
        if writer is not None:
            writer.shutdown(wait=True)
        if failure is not None:
            raise failure

    def settle(self) -> None:
        """After a failed operation: let packs still being written finish or fail (and clean up
        after themselves) before the lock is released. Their errors were reported already."""
        with contextlib.suppress(BaseException):
            self._wait_for_writes()

    def _write_pack(self, packer: PackWriter) -> None:
        self._check_keyring()
        data = packer.finish()
        pack_id = object_id(data)
        hot = all(e.type == TREE for e in packer.entries)  # listings stay out of archive classes
        before = wall_now()  # its lock (Object Lock) lasts from a moment after this
        self.storage.write(pack_name(pack_id), data, hot=hot)
        self.lock_cover.written(pack_name(pack_id), before)
        info = PackInfo(pack_id, packer.salt, tuple(packer.entries), packer.generation)
        with self._lock:
            self.index.add_pack(info)
            self._pending.difference_update(e.id for e in packer.entries)
            self._unindexed.append(info)
            due = len(self._unindexed) >= INDEX_EVERY_PACKS
        if due:
            self._write_index()

    def _write_index(self) -> None:
        with self._lock:
            packs, self._unindexed = self._unindexed, []
        if packs:
            self.save_index(IndexFile(packs))

    def flush_packs(self) -> list[PackInfo]:
        """Write every open pack; return the packs no index lists yet (the caller indexes them)."""
        with self._lock:
            packers = [p for idle in self._idle.values() for p in idle]
            self._idle = {DATA: [], TREE: []}
        for packer in packers:
            if packer.entries:
                self._queue_pack(packer)
        self._wait_for_writes()
        with self._lock:
            packs, self._unindexed = self._unindexed, []
        return packs

    def flush(self) -> None:
        """Write every open pack, then the index of all packs written since the last index."""
        packs = self.flush_packs()
        if packs:
            self.save_index(IndexFile(packs))

    # -- reading -------------------------------------------------------------------------------

    def read_blob(self, blob_id: bytes) -> bytes:
        where = self.index.lookup(blob_id)
        if where is None:
            raise IntegrityError(
                f"blob {blob_id.hex()[:16]} is not in the index", hint="run `drplan check`"
            )
        return self.read_located(where)

    def read_located(self, where: Location) -> bytes:
        name = pack_name(where.pack.id)
        cache = self.pack_cache
        try:
            if cache is not None and where.pack.id in cache.hot:
                sealed = cache.read(
                    where.pack.id, name, where.entry.offset, where.entry.stored_length
                )
            else:
                sealed = self.storage.read(name, where.entry.offset, where.entry.stored_length)
        except NotFound:
            raise IntegrityError(
                f"pack {where.pack.id[:16]} is missing", hint="run `drplan check`"
            ) from None
        return open_blob(
            self.key,
            self.cipher,
            where.pack.salt,
            where.pack.generation,
            where.entry,
            sealed,
            f"blob {where.entry.id.hex()[:16]} in pack {where.pack.id[:16]}",
        )

    def load_tree(self, tree_id: bytes) -> list[Node]:
        """A directory listing; recently used ones are cached (trees never change)."""
        cached = self._trees.get(tree_id)
        if cached is not None:
            return cached
        try:
            nodes = decode_tree(self.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")
        except TreeDamage as damage:
            raise self._placed(damage, tree_id) from None
        with self._lock:
            if len(self._trees) >= TREE_CACHE_SIZE:
                self._trees.pop(next(iter(self._trees)))
            self._trees[tree_id] = nodes
        return nodes

    def _placed(self, damage: TreeDamage, tree_id: bytes) -> IntegrityError:
        """``damage`` told by snapshot and path, when a snapshot this process looked up (with
        ``find_snapshot``: what restore, ls and diff work on) holds the damaged tree."""
        for snapshot in reversed(self.looked_up):
            path = path_of(self.load_listing, snapshot.tree, tree_id)
            if path is not None:
                return IntegrityError(damage.placed(snapshot.short_id, path), damage.hint)
        return damage

    def load_listing(self, tree_id: bytes) -> dict[bytes, dict[str, Any]]:
        """A directory listing as decoded JSON by name, uncached: see ``tree.decode_listing``."""
        return decode_listing(self.read_blob(tree_id), f"tree {tree_id.hex()[:16]}")

    # -- snapshots -----------------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> str:
        """Flush, then write the snapshot: it becomes visible only now, with all it references
        durable (and, under Object Lock, locked at least as long as it will be)."""
        self.flush()
        if self.storage.lock_days:
            # Imported here: immutability builds on this module (it walks trees with it).
            from drplan.repo.immutability import cover_snapshot  # noqa: PLC0415

            cover_snapshot(self, snapshot)
        snapshot.id = self.save_object("snapshot", SNAPSHOT_PREFIX, snapshot.to_json())
        return snapshot.id

    def snapshots(self) -> list[Snapshot]:
        found = [
            Snapshot.from_json(
                self.load_object("snapshot", info.name), info.name.removeprefix(SNAPSHOT_PREFIX)
            )
            for info in self.storage.list(SNAPSHOT_PREFIX)
        ]
        return sorted(_current(found), key=lambda s: (s.time, s.id))

    def readable_snapshots(self) -> tuple[list[Snapshot], dict[str, str]]:
        """Every snapshot that reads, and why each of the others does not (by id): for work
        that must go on past one damaged snapshot object (copies)."""
        found, damaged = [], {}
        for info in self.storage.list(SNAPSHOT_PREFIX):
            snapshot_id = info.name.removeprefix(SNAPSHOT_PREFIX)
            try:
                found.append(
                    Snapshot.from_json(self.load_object("snapshot", info.name), snapshot_id)
                )
            except NotFound:
                continue  # forgotten meanwhile
            except DrplanError as exc:
                damaged[snapshot_id] = exc.message
            except (ValueError, KeyError, TypeError) as exc:
                damaged[snapshot_id] = f"snapshot {snapshot_id[:8]} is malformed ({exc})"
        return sorted(_current(found), key=lambda s: (s.time, s.id)), damaged

    def find_snapshot(self, ref: str) -> Snapshot:
        """A snapshot by id prefix (at least 4 hex digits) or ``latest``; a damaged snapshot
        object elsewhere in the repository does not stand in the way (check reports it)."""
        snapshots, damaged = self.readable_snapshots()
        if ref == "latest":
            if not snapshots:
                raise DrplanError(
                    f"{self.storage.url} holds no snapshots", hint="run a backup first"
                )
            # A snapshot that cannot be read may be newer: `latest` is then only the newest
            # that can be read, which the caller must say.
            self.passed_over = damaged
            self.looked_up.append(snapshots[-1])
            return snapshots[-1]
        matches = [s for s in snapshots if s.id.startswith(ref.lower())]
        if not matches:  # a name it had before re-encryption
            matches = [
                s for s in snapshots if any(p.startswith(ref.lower()) for p in s.previous_ids)
            ]
        if len(ref) < 4 or not matches:
            raise DrplanError(
                f"no snapshot {ref!r} in {self.storage.url}", hint="see `drplan snapshots`"
            )
        if len(matches) > 1:
            raise DrplanError(
                f"snapshot id {ref!r} is ambiguous ({len(matches)} match)", hint="give more digits"
            )
        self.looked_up.append(matches[0])
        return matches[0]


def _current(snapshots: list[Snapshot]) -> list[Snapshot]:
    """Without those another snapshot replaced (re-encryption writes the new one, then
    deletes the old: a crash between must not show the backup twice)."""
    replaced = {old for s in snapshots for old in s.previous_ids}
    return [s for s in snapshots if s.id not in replaced] if replaced else snapshots


def _has(storage: Storage, name: str) -> bool:
    try:
        storage.stat(name)
    except NotFound:
        return False
    return True


__all__ = ["DATA", "TREE", "Repository", "pack_name"]

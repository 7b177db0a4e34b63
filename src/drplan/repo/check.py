"""Checking a repository: structure always, and the data itself (all of it, or a rotating subset).

Structure: every index decodes, every pack an index names exists with a plausible
size, every snapshot decodes and every tree and data blob it references is indexed.
Data: packs are read back whole, their bytes checked against their names, headers
authenticated and compared with the index, and every blob decrypted and checked
against its keyed id: all of them, a part, or the rotation's next slice
(``drplan.repo.subset``, ``drplan.repo.rotation``). Findings name the snapshots and
files a damage affects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import IntegrityError
from drplan.repo.crypto import object_id
from drplan.repo.index import IndexFile, PackInfo, live_index_files
from drplan.repo.keyring import keyring_findings, load_keyring
from drplan.repo.keys import key_file_findings
from drplan.repo.pack import TRAILER, open_blob, read_header
from drplan.repo.repository import DATA_PREFIX, INDEX_PREFIX, SNAPSHOT_PREFIX, Repository, pack_name
from drplan.repo.rotation import Rotation
from drplan.repo.snapshot import Snapshot
from drplan.repo.subset import Part, Ring, Subset, budget_of, part_of
from drplan.repo.tree import TreeDamage
from drplan.storage import NotFound, StorageError

if TYPE_CHECKING:
    from drplan.progress import Progress

MAX_FILES_NAMED = 20


@dataclass
class Finding:
    severity: str  # "error" damages data; "info" is garbage prune removes
    message: str
    snapshots: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "message": self.message,
            "snapshots": self.snapshots,
            "files": self.files,
        }


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    data_bytes: int = 0  # of the packs that can be read back (indexed and stored)
    pack_ids_read: list[str] = field(default_factory=list)
    rotation: dict[str, Any] | None = None  # where the rotation stands, after an x% or size

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def percent_read(self) -> float:
        """The share of the repository's data this check read back, in percent."""
        return 100 * self.bytes_read / self.data_bytes if self.data_bytes else 0.0


class _Checker:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.report = CheckReport()
        self.snapshots: list[Snapshot] = []
        self.unreadable: set[bytes] = set()
        self.damage: dict[bytes, str] = {}  # malformed trees: what is wrong, and where
        self.stored: dict[str, int] = {}  # pack id -> size, as storage lists them

    def error(self, message: str) -> None:
        self.report.findings.append(Finding("error", message))

    def load_index(self) -> dict[str, PackInfo]:
        files: list[tuple[str, IndexFile]] = []
        for info in self.repo.storage.list(INDEX_PREFIX):
            name = info.name.removeprefix(INDEX_PREFIX)
            try:
                files.append(
                    (name, IndexFile.decode(self.repo.load_object("index", info.name), info.name))
                )
            except (IntegrityError, StorageError) as exc:
                self.error(
                    f"index {name[:16]}: {exc.message}; `drplan repair index` rebuilds it from the packs"
                )
        packs: dict[str, PackInfo] = {}
        for _, index_file in live_index_files(files):
            for pack in index_file.packs:
                packs[pack.id] = pack
                self.repo.index.add_pack(pack)
        return packs

    def check_packs(self, indexed: dict[str, PackInfo]) -> set[bytes]:
        """Compare the index with the packs in storage; return the ids of blobs found missing."""
        self.stored = stored = {
            info.name.rsplit("/", 1)[-1]: info.size for info in self.repo.storage.list(DATA_PREFIX)
        }
        self.report.packs = len(stored)
        lost: set[bytes] = set()
        for pack_id, pack in indexed.items():
            size = stored.get(pack_id)
            if size is None:
                self.error(f"pack {pack_id[:16]} is listed in the index but missing from storage")
                lost.update(e.id for e in pack.entries)
            elif size < pack.size + TRAILER.size:  # the shorter trailer, version 1's
                self.error(
                    f"pack {pack_id[:16]} is truncated ({size} bytes, its blobs alone take {pack.size})"
                )
                lost.update(e.id for e in pack.entries)
        for pack_id in stored.keys() - indexed.keys():
            self.report.findings.append(
                Finding(
                    "info",
                    f"pack {pack_id[:16]} is in no index (left by an interrupted backup; prune removes it)",
                )
            )
        return lost

    def check_snapshots(self) -> None:
        for info in self.repo.storage.list(SNAPSHOT_PREFIX):
            sid = info.name.removeprefix(SNAPSHOT_PREFIX)
            try:
                self.snapshots.append(
                    Snapshot.from_json(self.repo.load_object("snapshot", info.name), sid)
                )
            except (IntegrityError, StorageError) as exc:
                self.error(f"snapshot {sid[:8]}: {exc.message}")
        self.report.snapshots = len(self.snapshots)

    def references(
        self, snapshot: Snapshot, seen: set[bytes] | None = None
    ) -> Iterator[tuple[bytes, str]]:
        """(blob id, path) for every tree and data blob a snapshot needs; unreadable trees are noted.

        With ``seen``, trees already visited (through another snapshot) are not walked again.
        """
        stack = [(snapshot.tree, "")]
        while stack:
            tree_id, path = stack.pop()
            yield tree_id, path or "/"
            if tree_id not in self.repo.index or (seen is not None and tree_id in seen):
                continue
            if seen is not None:
                seen.add(tree_id)
            try:
                nodes = self.repo.load_tree(tree_id)
            except (IntegrityError, StorageError) as exc:
                self.unreadable.add(tree_id)
                if isinstance(exc, TreeDamage):
                    self.damage.setdefault(tree_id, exc.placed(snapshot.short_id, path or "/"))
                continue
            for node in nodes:
                child = f"{path}/{os.fsdecode(node.name)}"
                if node.subtree is not None:
                    stack.append((node.subtree, child))
                for blob in node.content:
                    yield blob, child

    def affected(self, damaged: set[bytes], message: str) -> None:
        """One finding for ``damaged`` blobs, naming the snapshots and files that use them."""
        snapshots: list[str] = []
        files: list[str] = []
        for snapshot in self.snapshots:
            hit = False
            for blob, path in self.references(snapshot):
                if blob in damaged:
                    hit = True
                    if len(files) < MAX_FILES_NAMED and path not in files:
                        files.append(path)
            if hit:
                snapshots.append(snapshot.short_id)
        self.report.findings.append(Finding("error", message, snapshots, files))

    def check_references(self, lost: set[bytes]) -> None:
        missing: set[bytes] = set()
        seen: set[bytes] = set()
        for snapshot in self.snapshots:
            for blob, _ in self.references(snapshot, seen):
                if blob not in lost and blob not in self.repo.index:
                    missing.add(blob)
        if lost:
            self.affected(lost, f"{len(lost)} blob(s) are in missing or truncated packs")
        if missing:
            self.affected(missing, f"{len(missing)} blob(s) that snapshots need are in no index")
        if self.unreadable - lost:
            told = [self.damage[t] for t in sorted(self.unreadable - lost) if t in self.damage]
            self.affected(
                self.unreadable - lost,
                f"{len(self.unreadable - lost)} directory listing(s) cannot be read"
                + "".join(f"; {what}" for what in told[:3]),
            )

    def ring(self, indexed: dict[str, PackInfo]) -> Ring:
        """The packs that can be read back, by id, with their stored sizes."""
        return sorted((i, size) for i, size in self.stored.items() if i in indexed)

    def read_packs(
        self, indexed: dict[str, PackInfo], chosen: list[str], progress: Progress | None
    ) -> set[str]:
        """Read back the ``chosen`` packs; return those that verified whole."""
        damaged: set[bytes] = set()
        sound: set[str] = set()
        if progress is not None:
            progress.set_totals(len(chosen), sum(self.stored[i] for i in chosen))
        for pack_id in chosen:
            try:
                data = self.repo.storage.read(pack_name(pack_id))
            except NotFound:
                continue  # deleted since the listing: reported by the next check's listing
            errors = len(self.report.errors)
            self.report.packs_read += 1
            self.report.bytes_read += len(data)
            self.report.pack_ids_read.append(pack_id)
            lost = self._read_pack(pack_id, indexed[pack_id], data)
            if not lost and len(self.report.errors) == errors:
                sound.add(pack_id)
            damaged |= lost
            if progress is not None:
                progress.done(1, len(data))
        if damaged:
            self.affected(damaged, f"{len(damaged)} blob(s) failed verification when read back")
        return sound

    def _read_pack(self, pack_id: str, pack: PackInfo, data: bytes) -> set[bytes]:
        everything = {e.id for e in pack.entries}
        if object_id(data) != pack_id:
            self.error(f"pack {pack_id[:16]}: its bytes do not match its name (damaged in storage)")
        try:
            salt, generation, entries = read_header(
                self.repo.key, self.repo.cipher, data, pack_id[:16]
            )
        except IntegrityError as exc:
            self.error(f"pack {pack_id[:16]}: {exc.message}")
            return everything
        by_seq = {e.seq: e for e in entries}
        damaged = set()
        for entry in pack.entries:
            if by_seq.get(entry.seq) != entry or (salt, generation) != (
                pack.salt,
                pack.generation,
            ):
                self.error(
                    f"pack {pack_id[:16]}: blob {entry.id.hex()[:16]} differs between index and pack header"
                )
                damaged.add(entry.id)
                continue
            sealed = data[entry.offset : entry.offset + entry.stored_length]
            try:
                open_blob(
                    self.repo.key,
                    self.repo.cipher,
                    salt,
                    generation,
                    entry,
                    sealed,
                    f"pack {pack_id[:16]}",
                )
                self.report.blobs_read += 1
            except IntegrityError:
                damaged.add(entry.id)
        return damaged


def check_repository(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: Subset | None = None,
    rotation: Rotation | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Check ``repo``: its structure, and the data of every pack (``read_data``) or of a
    ``subset``. A share or an amount reads the next slice of ``rotation``, which is then
    updated (the caller saves it) with what this run read and verified."""
    checker = _Checker(repo)
    checker.report.findings += [Finding(*found) for found in key_file_findings(repo.storage)]
    if repo.master is not None:
        loaded = load_keyring(repo.storage, repo.master, repo.cipher)
        checker.report.findings += [Finding(*found) for found in keyring_findings(loaded)]
    indexed = checker.load_index()
    lost = checker.check_packs(indexed)
    checker.check_snapshots()
    checker.check_references(lost)
    if not read_data and subset is None:
        return checker.report
    ring = checker.ring(indexed)
    checker.report.data_bytes = sum(size for _, size in ring)
    if read_data:
        checker.read_packs(indexed, [pack_id for pack_id, _ in ring], progress)
    elif isinstance(subset, Part):
        checker.read_packs(indexed, part_of(ring, subset), progress)
    else:
        assert subset is not None
        rotation = rotation if rotation is not None else Rotation()
        now = clock.rfc3339(clock.now())
        rotation.start(ring, now)
        chosen = rotation.next_slice(ring, budget_of(subset, checker.report.data_bytes))
        sound = checker.read_packs(indexed, chosen, progress)
        completed = rotation.record(chosen, sound, ring, now)
        checker.report.rotation = {
            "percent_read": float(f"{rotation.share_read(ring):.4g}"),  # in the current pass
            "pass_started": rotation.pass_started,  # None: this run completed one
            "pass_completed": completed,
            "passes_completed": rotation.passes,
            "last_pass": None
            if rotation.last_pass_completed is None
            else {
                "started": rotation.last_pass_started,
                "completed": rotation.last_pass_completed,
            },
        }
    return checker.report


__all__ = ["CheckReport", "Finding", "check_repository"]

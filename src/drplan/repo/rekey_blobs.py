"""Re-identifying what a snapshot references, for ``copy --rekey``: every data blob read
from the source, authenticated there, and stored in the target under the id the target's
blob-id key gives its plaintext; every tree rewritten bottom-up with its nodes' ``content``
and ``subtree`` ids mapped (a tree's own new id then follows from its new bytes).

Old ids map to new ones in memory, for one run: a blob or tree shared by several snapshots
is read and stored once. Nothing of the map needs persisting: ids are keyed hashes of the
plaintext, so a rerun after a crash derives the same ones again, and what the target's
index already holds is not stored again (``Repository.save_blob``).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from drplan.errors import IntegrityError
from drplan.repo.index import Location
from drplan.repo.pack import DATA, TREE, open_blob
from drplan.repo.replication import SourceDamage
from drplan.repo.repository import Repository, pack_name
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import decode_tree
from drplan.storage import NotFound

READERS = 4  # source packs read and re-keyed at once: hides S3 latency, one pack each in memory
# A pack is read whole (one request) when this many of its blobs are wanted, or half of its
# bytes; otherwise blob by blob (a later snapshot needs a few new blobs of many packs).
MANY_BLOBS = 32


@dataclass
class _Walk:
    """The trees below a root that are not mapped yet, and the data blobs they name."""

    order: list[bytes] = field(default_factory=list)  # children before their parents
    raw: dict[bytes, bytes] = field(default_factory=dict)  # tree id -> its plaintext
    data: set[bytes] = field(default_factory=set)


class Rekeyer:
    """Blobs of ``source`` stored again in ``target`` (a repository with other keys)."""

    def __init__(self, source: Repository, target: Repository) -> None:
        self.source, self.target = source, target
        self.data: dict[bytes, bytes] = {}  # source data blob id -> target id
        self.trees: dict[bytes, bytes] = {}  # source tree id -> target id
        self._lock = threading.Lock()

    def root(self, tree_id: bytes) -> bytes:
        """The target's id of the source tree ``tree_id``, once every blob below it is
        stored there (maybe still in packs being written: the caller flushes);
        SourceDamage when the source cannot give one of them."""
        walk = self._walk(tree_id)
        self._map_data(walk.data)
        for old in walk.order:
            self.trees[old] = self._rewrite(walk.raw.pop(old))
        return self.trees[tree_id]

    def _walk(self, root: bytes) -> _Walk:
        # Iterative post-order: directories nest deeper than Python's recursion allows.
        # A tree is marked when read, and trees are a DAG (ids are hashes of contents), so
        # each is read once and finishes before whatever was pushed before it.
        walk = _Walk()
        stack = [(root, False)]
        while stack:
            tree_id, children_done = stack.pop()
            if children_done:
                walk.order.append(tree_id)
                continue
            if tree_id in self.trees or tree_id in walk.raw:
                continue
            raw = self._read_tree(tree_id)
            walk.raw[tree_id] = raw
            stack.append((tree_id, True))
            try:
                nodes = decode_tree(raw, f"tree {tree_id.hex()[:16]}")
            except IntegrityError as exc:
                raise self._damage(exc.message) from None
            for node in nodes:
                if node.subtree is not None:
                    stack.append((node.subtree, False))
                walk.data.update(c for c in node.content if c not in self.data)
        return walk

    def _read_tree(self, tree_id: bytes) -> bytes:
        where = self._locate(tree_id)
        if where.entry.type != TREE:
            raise self._damage(f"blob {tree_id.hex()[:16]} is named as a tree but is not one")
        try:
            return self.source.read_located(where)
        except IntegrityError as exc:
            raise self._damage(exc.message) from None

    def _locate(self, blob_id: bytes) -> Location:
        where = self.source.index.lookup(blob_id)
        if where is None:
            raise self._damage(f"blob {blob_id.hex()[:16]} is not in the index")
        return where

    def _damage(self, message: str) -> SourceDamage:
        url = self.source.storage.url
        return SourceDamage(f"{url}: {message}", hint=f"run `drplan check --repo {url}`")

    def _map_data(self, wanted: set[bytes]) -> None:
        by_pack: dict[str, list[Location]] = {}
        for blob_id in wanted:
            where = self._locate(blob_id)
            if where.entry.type != DATA:
                raise self._damage(f"blob {blob_id.hex()[:16]} is named as data but is a tree")
            by_pack.setdefault(where.pack.id, []).append(where)
        with ThreadPoolExecutor(READERS, thread_name_prefix="drplan-rekey") as pool:
            for _ in pool.map(self._map_pack, by_pack.values()):
                pass  # each stores its blobs itself; this raises the first failure

    def _map_pack(self, wanted: list[Location]) -> None:
        for old, plain in self._plaintexts(wanted):
            new, _ = self.target.save_blob(DATA, plain)
            with self._lock:
                self.data[old] = new

    def _plaintexts(self, wanted: list[Location]) -> Iterator[tuple[bytes, bytes]]:
        """Each wanted blob's id and plaintext, authenticated (``open_blob`` also checks the
        plaintext against its id under the source's key: a blob swapped by whoever held the
        leaked key, but not the data key, is caught). One at a time: a pack of compressible
        data holds many times its size in plaintext."""
        pack = wanted[0].pack
        try:
            wanted_bytes = sum(w.entry.stored_length for w in wanted)
            if len(wanted) < MANY_BLOBS and wanted_bytes * 2 < pack.size:
                for w in wanted:
                    yield w.entry.id, self.source.read_located(w)
                return
            try:
                whole = self.source.storage.read(pack_name(pack.id))
            except NotFound:
                raise IntegrityError(f"pack {pack.id[:16]} is missing") from None
            for w in wanted:
                yield (
                    w.entry.id,
                    open_blob(
                        self.source.key,
                        self.source.cipher,
                        pack.salt,
                        pack.generation,
                        w.entry,
                        whole[w.entry.offset : w.entry.offset + w.entry.stored_length],
                        f"blob {w.entry.id.hex()[:16]} in pack {pack.id[:16]}",
                    ),
                )
        except IntegrityError as exc:
            raise self._damage(exc.message) from None

    def _rewrite(self, raw: bytes) -> bytes:
        """Store the tree ``raw`` with its ids mapped; its new id. The decoded JSON is edited,
        not rebuilt from nodes, so keys this drplan does not know survive; written canonical
        as ``encode_tree`` writes it, so a later backup of the same directory dedups."""
        doc = json.loads(raw)  # json, not orjson: trees of old writers hold lone surrogates
        for item in doc["nodes"]:
            if item.get("content"):
                item["content"] = [self.data[bytes.fromhex(c)].hex() for c in item["content"]]
            if item.get("subtree") is not None:
                item["subtree"] = self.trees[bytes.fromhex(item["subtree"])].hex()
        new = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        tree_id, _ = self.target.save_blob(TREE, new)
        return tree_id


def rekeyed_snapshot(snapshot: Snapshot, tree: bytes, ids: dict[str, str]) -> Snapshot:
    """``snapshot`` as the target stores it: its new root tree, the snapshot ids it names
    (``parent``, a base backup's ``chain``) mapped with ``ids`` (source id -> target id),
    and its source id added to ``previous_ids``. A parent that was not re-keyed is dropped
    (it only told a backup which files to compare); a chain must be whole (the caller
    checks)."""
    source = copy.deepcopy(snapshot.source)
    if "chain" in source:
        source["chain"] = [ids[link] for link in source["chain"]]
    return replace(
        snapshot,
        tree=tree,
        parent=ids.get(snapshot.parent) if snapshot.parent else None,
        source=source,
        previous_ids=[*snapshot.previous_ids, snapshot.id],
        id="",
    )

"""The index: which blob is in which pack, at which offset; kept in memory, stored as index objects."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from drplan.errors import IntegrityError
from drplan.repo.pack import PackEntry, entry_problem

MAGIC = b"DRIX"
VERSION = 1  # packs of generation 0 only
VERSIONED = 2  # each pack names its generation
_HEAD = struct.Struct("<4sB")
_COUNT = struct.Struct("<I")
_PACK = struct.Struct("<32s32sI")  # pack id, salt, blob count
_PACK_V2 = struct.Struct("<32s32sII")  # pack id, salt, generation, blob count
_BLOB = struct.Struct("<IIIIBB32s")  # seq, offset, stored, raw, type, compression, id


@dataclass(frozen=True)
class PackInfo:
    """One pack as the index knows it."""

    id: str
    salt: bytes
    entries: tuple[PackEntry, ...]
    generation: int = 0

    @property
    def size(self) -> int:
        return sum(e.stored_length for e in self.entries)


@dataclass(frozen=True)
class Location:
    """Where to read one blob."""

    pack: PackInfo
    entry: PackEntry


@dataclass
class IndexFile:
    """The contents of one index object."""

    packs: list[PackInfo] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)

    def encode(self, versioned: bool = True) -> bytes:
        """Version 2 (``versioned``: a repository with a keyring) names each pack's
        generation; version 1 can only list packs of generation 0."""
        version = VERSIONED if versioned else VERSION
        out = [_HEAD.pack(MAGIC, version), _COUNT.pack(len(self.supersedes))]
        out += [bytes.fromhex(i) for i in self.supersedes]
        out.append(_COUNT.pack(len(self.packs)))
        for pack in self.packs:
            if versioned:
                out.append(
                    _PACK_V2.pack(
                        bytes.fromhex(pack.id), pack.salt, pack.generation, len(pack.entries)
                    )
                )
            else:
                assert pack.generation == 0, "a version 1 index lists generation 0 only"
                out.append(_PACK.pack(bytes.fromhex(pack.id), pack.salt, len(pack.entries)))
            out += [
                _BLOB.pack(
                    e.seq, e.offset, e.stored_length, e.raw_length, e.type, e.compression, e.id
                )
                for e in pack.entries
            ]
        return b"".join(out)

    @classmethod
    def decode(cls, body: bytes, name: str) -> IndexFile:
        """The index object's contents; IntegrityError unless every pack's entries are what
        a pack writer makes: in order (seq 0, 1, ...), each at the end of the one before,
        of a known type and compression. Counts are checked against the bytes left before
        anything is allocated for them."""
        try:
            magic, version = _HEAD.unpack_from(body)
            if magic != MAGIC or version not in (VERSION, VERSIONED):
                raise IntegrityError(
                    f"index {name}: unknown format (magic {magic!r}, version {version})"
                )
            pos = _HEAD.size
            (count,) = _COUNT.unpack_from(body, pos)
            pos += _COUNT.size
            if 32 * count > len(body) - pos:
                raise struct.error("superseded ids past the end")
            supersedes = [body[pos + 32 * i : pos + 32 * (i + 1)].hex() for i in range(count)]
            pos += 32 * count
            (npacks,) = _COUNT.unpack_from(body, pos)
            pos += _COUNT.size
            packs = []
            for _ in range(npacks):
                if version == VERSIONED:
                    pack_id, salt, generation, nblobs = _PACK_V2.unpack_from(body, pos)
                    pos += _PACK_V2.size
                else:
                    pack_id, salt, nblobs = _PACK.unpack_from(body, pos)
                    generation = 0
                    pos += _PACK.size
                entries, offset = [], 0
                for i in range(nblobs):
                    seq, at, stored, raw, kind, comp, blob_id = _BLOB.unpack_from(body, pos)
                    pos += _BLOB.size
                    problem = entry_problem(kind, comp, stored)
                    if problem is None and (seq, at) != (i, offset):
                        problem = f"position {seq} at offset {at}, where {i} at {offset} belongs"
                    if problem:
                        raise IntegrityError(
                            f"index {name}: blob {i} of pack {pack_id.hex()[:16]} has {problem}"
                        )
                    entries.append(PackEntry(blob_id, kind, comp, seq, at, stored, raw))
                    offset += stored
                packs.append(PackInfo(pack_id.hex(), salt, tuple(entries), generation))
        except struct.error:
            raise IntegrityError(f"index {name} is truncated") from None
        if pos != len(body):
            raise IntegrityError(f"index {name} has {len(body) - pos} trailing bytes")
        return cls(packs, supersedes)


class Index:
    """The union of the repository's index objects, in memory."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, Location] = {}
        self.packs: dict[str, PackInfo] = {}

    def __len__(self) -> int:
        return len(self.blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self.blobs

    def add_pack(self, pack: PackInfo) -> None:
        self.packs[pack.id] = pack
        for entry in pack.entries:
            self.blobs.setdefault(entry.id, Location(pack, entry))

    def add_file(self, index_file: IndexFile) -> None:
        for pack in index_file.packs:
            self.add_pack(pack)

    def lookup(self, blob_id: bytes) -> Location | None:
        return self.blobs.get(blob_id)


def live_index_files(files: Iterable[tuple[str, IndexFile]]) -> list[tuple[str, IndexFile]]:
    """Index objects not superseded by another."""
    pairs = list(files)
    superseded = {old for _, f in pairs for old in f.supersedes}
    return [(name, f) for name, f in pairs if name not in superseded]

"""Packs: encrypted blobs one after another, described by an encrypted header at the end.

Version 1 packs are sealed with generation 0 of the keyring; version 2 packs (written in a
repository with a keyring) name their generation in the trailer.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from drplan.errors import IntegrityError
from drplan.repo import compression
from drplan.repo.crypto import SALT_SIZE, TAG_SIZE, CipherName, KeyRing, Sealer, new_salt

MAGIC = b"DRPK"
VERSION = 1
VERSIONED = 2  # names its generation
DATA, TREE = 0, 1
ENTRY = struct.Struct("<BBII32s")  # type, compression, stored length, raw length, id
TRAILER = struct.Struct(f"<{SALT_SIZE}sIB4s")  # salt, header length, version, magic
# salt, generation, header length, version, magic
TRAILER_V2 = struct.Struct(f"<{SALT_SIZE}sIIB4s")
HEADER_AAD = b"drplan/pack-header"
# The most a blob is decompressed to: chunks are at most 16 MiB, and a tree this large
# would list millions of entries of one directory.
MAX_BLOB = 1 << 30


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return b"drplan/blob" + bytes([blob_type]) + blob_id


class PackEntry(NamedTuple):
    """Where one blob is inside a pack. A tuple: one is made per blob, often millions."""

    id: bytes
    type: int
    compression: int
    seq: int
    offset: int
    stored_length: int
    raw_length: int


def entry_problem(blob_type: int, kind: int, stored: int) -> str | None:
    """What makes a described blob impossible, if anything: shared by the pack header and
    index decoders, so readers of either can trust type, compression and length."""
    if blob_type not in (DATA, TREE):
        return f"unknown blob type {blob_type}"
    if kind not in (compression.NONE, compression.ZSTD):
        return f"unknown compression {kind}"
    if stored < TAG_SIZE:
        return f"a stored length of {stored} bytes, shorter than its tag"
    return None


class PackWriter:
    """Builds one pack in memory; blobs are sealed as they are added."""

    def __init__(self, key: KeyRing, cipher: CipherName) -> None:
        self.salt = new_salt()
        self.generation = key.current
        self._versioned = key.versioned
        self._sealer: Sealer = key.sealer(cipher, self.salt)
        self._parts: list[bytes] = []
        self.entries: list[PackEntry] = []
        self.size = 0

    def add(
        self, blob_type: int, blob_id: bytes, plaintext: bytes | bytearray | memoryview, level: int
    ) -> PackEntry:
        kind, payload = compression.compress(plaintext, level)
        return self.add_prepared(blob_type, blob_id, kind, payload, len(plaintext))

    def add_prepared(
        self,
        blob_type: int,
        blob_id: bytes,
        kind: int,
        payload: bytes | bytearray | memoryview,
        raw_length: int,
    ) -> PackEntry:
        seq = len(self.entries)
        sealed = self._sealer.seal(seq + 1, payload, blob_aad(blob_type, blob_id))
        entry = PackEntry(blob_id, blob_type, kind, seq, self.size, len(sealed), raw_length)
        self._parts.append(sealed)
        self.entries.append(entry)
        self.size += len(sealed)
        return entry

    def finish(self) -> bytes:
        """The pack's bytes: blobs, sealed header, trailer."""
        plain = b"".join(
            ENTRY.pack(e.type, e.compression, e.stored_length, e.raw_length, e.id)
            for e in self.entries
        )
        header = self._sealer.seal(0, plain, HEADER_AAD)
        if self._versioned:
            trailer = TRAILER_V2.pack(self.salt, self.generation, len(header), VERSIONED, MAGIC)
        else:
            trailer = TRAILER.pack(self.salt, len(header), VERSION, MAGIC)
        data = b"".join([*self._parts, header, trailer])
        self._parts.clear()  # the joined copy is all that is needed now: halve the memory held
        return data


def read_header(
    key: KeyRing, cipher: CipherName, data: bytes, name: str
) -> tuple[bytes, int, list[PackEntry]]:
    """The salt, generation and entries of a whole pack held in ``data``; IntegrityError if
    it does not check."""
    if len(data) < TRAILER.size:
        raise IntegrityError(f"pack {name} is truncated ({len(data)} bytes)")
    version, magic = data[-5], data[-4:]
    if magic != MAGIC:
        raise IntegrityError(f"pack {name} has no pack trailer (truncated or not a pack)")
    if version == VERSION:
        salt, header_length, _, _ = TRAILER.unpack_from(data, len(data) - TRAILER.size)
        generation, trailer = 0, TRAILER.size
    elif version == VERSIONED and len(data) >= TRAILER_V2.size:
        salt, generation, header_length, _, _ = TRAILER_V2.unpack_from(
            data, len(data) - TRAILER_V2.size
        )
        trailer = TRAILER_V2.size
    else:
        raise IntegrityError(
            f"pack {name} has format version {version}; this drplan reads {VERSION} and {VERSIONED}"
        )
    start = len(data) - trailer - header_length
    if start < 0:
        raise IntegrityError(f"pack {name} is truncated: its header runs past its start")
    sealer = key.sealer(cipher, salt, generation, f"pack {name}")
    plain = sealer.open(
        0, data[start : start + header_length], HEADER_AAD, f"header of pack {name}"
    )
    if len(plain) % ENTRY.size:
        raise IntegrityError(f"pack {name}: its header is not a whole number of entries")
    entries, offset = [], 0
    for seq, fields in enumerate(ENTRY.iter_unpack(plain)):
        blob_type, kind, stored, raw, blob_id = fields
        problem = entry_problem(blob_type, kind, stored)
        if problem:
            raise IntegrityError(f"pack {name}: blob {seq} has {problem}")
        entries.append(PackEntry(blob_id, blob_type, kind, seq, offset, stored, raw))
        offset += stored
    if offset != start:
        raise IntegrityError(
            f"pack {name}: header describes {offset} bytes of blobs, pack holds {start}"
        )
    return salt, generation, entries


def open_blob(
    key: KeyRing,
    cipher: CipherName,
    salt: bytes,
    generation: int,
    entry: PackEntry,
    sealed: bytes,
    where: str,
) -> bytes:
    """Decrypt, decompress and verify one blob: its keyed hash must equal its id."""
    plain = key.sealer(cipher, salt, generation, where).open(
        entry.seq + 1, sealed, blob_aad(entry.type, entry.id), where
    )
    limit = min(entry.raw_length, MAX_BLOB)  # a forged raw length allocates no more
    data = compression.decompress(entry.compression, plain, limit, where)
    if len(data) != entry.raw_length or key.blob_id(data) != entry.id:
        raise IntegrityError(f"{where}: content does not match its id")
    return data

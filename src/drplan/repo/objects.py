"""Encrypted standalone objects (config, index, snapshot, lock, WAL file): the "DRPO" envelope.

Version 1 is sealed with generation 0 of the keyring (a repository without a keyring,
and the keyring object itself); version 2 names the generation that sealed it.
"""

from __future__ import annotations

import struct

from drplan.errors import IntegrityError
from drplan.repo import compression
from drplan.repo.crypto import SALT_SIZE, CipherName, KeyRing, new_salt

MAGIC = b"DRPO"
VERSION = 1
VERSIONED = 2  # names its generation
_HEAD = struct.Struct("<4sB")
_GENERATION = struct.Struct("<I")
KINDS = ("config", "index", "snapshot", "lock", "revoked", "wal", "incident", "keyring", "audit")
# The largest body an object may hold: a WAL segment is at most 1 GiB, and an index of
# millions of blobs takes tens of MiB.
MAX_BODY = 1 << 30


def seal_object(key: KeyRing, cipher: CipherName, kind: str, body: bytes, level: int = 3) -> bytes:
    """The stored bytes of one object of ``kind`` holding ``body``, sealed with the
    keyring's current generation."""
    assert kind in KINDS
    flag, payload = compression.compress(body, level)
    salt = new_salt()
    sealed = key.sealer(cipher, salt).seal(
        0, bytes([flag]) + bytes(payload), b"drplan/" + kind.encode()
    )
    if not key.versioned:
        return _HEAD.pack(MAGIC, VERSION) + salt + sealed
    return _HEAD.pack(MAGIC, VERSIONED) + _GENERATION.pack(key.current) + salt + sealed


def object_generation(stored: bytes, name: str) -> int:
    """The keyring generation that sealed a stored object (0 for version 1)."""
    if len(stored) < _HEAD.size:
        raise IntegrityError(f"{name} is truncated ({len(stored)} bytes)")
    magic, version = _HEAD.unpack_from(stored)
    if magic != MAGIC:
        raise IntegrityError(f"{name} is not a drplan object")
    if version == VERSION:
        return 0
    if version == VERSIONED and len(stored) >= _HEAD.size + _GENERATION.size:
        return int(_GENERATION.unpack_from(stored, _HEAD.size)[0])
    raise IntegrityError(
        f"{name} has object format version {version}; this drplan reads versions"
        f" {VERSION} and {VERSIONED}"
    )


def open_object(key: KeyRing, cipher: CipherName, kind: str, stored: bytes, name: str) -> bytes:
    """The body of a stored object; IntegrityError when it does not authenticate."""
    generation = object_generation(stored, name)
    start = _HEAD.size + (_GENERATION.size if stored[4] == VERSIONED else 0)
    if len(stored) < start + SALT_SIZE + 17:
        raise IntegrityError(f"{name} is truncated ({len(stored)} bytes)")
    salt = stored[start : start + SALT_SIZE]
    plain = key.sealer(cipher, salt, generation, name).open(
        0, stored[start + SALT_SIZE :], b"drplan/" + kind.encode(), name
    )
    return compression.decompress(plain[0], plain[1:], MAX_BODY, name)

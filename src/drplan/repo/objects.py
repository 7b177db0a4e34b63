"""Encrypted standalone objects (config, index, snapshot, lock, WAL file): the "DRPO" envelope."""

from __future__ import annotations

import struct

from drplan.errors import IntegrityError
from drplan.repo import compression
from drplan.repo.crypto import SALT_SIZE, CipherName, MasterKey, new_salt

MAGIC = b"DRPO"
VERSION = 1
_HEAD = struct.Struct("<4sB")
KINDS = ("config", "index", "snapshot", "lock", "revoked", "wal", "incident")
# The largest body an object may hold: a WAL segment is at most 1 GiB, and an index of
# millions of blobs takes tens of MiB.
MAX_BODY = 1 << 30


def seal_object(
    key: MasterKey, cipher: CipherName, kind: str, body: bytes, level: int = 3
) -> bytes:
    """The stored bytes of one object of ``kind`` holding ``body``."""
    assert kind in KINDS
    flag, payload = compression.compress(body, level)
    salt = new_salt()
    sealed = key.sealer(cipher, salt).seal(
        0, bytes([flag]) + bytes(payload), b"drplan/" + kind.encode()
    )
    return _HEAD.pack(MAGIC, VERSION) + salt + sealed


def open_object(key: MasterKey, cipher: CipherName, kind: str, stored: bytes, name: str) -> bytes:
    """The body of a stored object; IntegrityError when it does not authenticate."""
    if len(stored) < _HEAD.size + SALT_SIZE + 17:
        raise IntegrityError(f"{name} is truncated ({len(stored)} bytes)")
    magic, version = _HEAD.unpack_from(stored)
    if magic != MAGIC:
        raise IntegrityError(f"{name} is not a drplan object")
    if version != VERSION:
        raise IntegrityError(
            f"{name} has object format version {version}; this drplan reads version {VERSION}"
        )
    salt = stored[_HEAD.size : _HEAD.size + SALT_SIZE]
    plain = key.sealer(cipher, salt).open(
        0, stored[_HEAD.size + SALT_SIZE :], b"drplan/" + kind.encode(), name
    )
    return compression.decompress(plain[0], plain[1:], MAX_BODY, name)

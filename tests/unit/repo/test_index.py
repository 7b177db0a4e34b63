"""Index objects: whatever their body holds, a decoded index describes blobs as a pack
writer lays them out, or the index is damage (IntegrityError), told at once."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo.crypto import MasterKey
from drplan.repo.index import IndexFile, PackInfo
from drplan.repo.pack import DATA, TREE, PackWriter
from tests.fixtures.fuzz import decoded_or_damage, fuzz, mutated

KEY = MasterKey.generate().ring()


def _pack(*blobs: bytes) -> PackInfo:
    writer = PackWriter(KEY, "aes-256-gcm")
    for blob in blobs:
        writer.add(TREE if blob.startswith(b"{") else DATA, KEY.blob_id(blob), blob, 3)
    writer.finish()
    return PackInfo(os.urandom(32).hex(), writer.salt, tuple(writer.entries))


VALID = IndexFile(
    [_pack(b"x" * 100, os.urandom(300)), _pack(b'{"nodes":[]}')], supersedes=["cd" * 32]
).encode(versioned=False)


def trustworthy(index: IndexFile) -> None:
    """What readers of an index take for granted: each entry where a pack writer puts it."""
    for old in index.supersedes:
        assert len(bytes.fromhex(old)) == 32
    for pack in index.packs:
        assert len(bytes.fromhex(pack.id)) == 32
        assert len(pack.salt) == 32
        offset = 0
        for seq, entry in enumerate(pack.entries):
            assert (entry.seq, entry.offset) == (seq, offset)
            assert entry.type in (DATA, TREE)
            assert entry.compression in (0, 1)
            assert entry.stored_length >= 16
            assert len(entry.id) == 32
            offset += entry.stored_length


@fuzz
@given(st.binary(max_size=400) | mutated(VALID))
def test_fuzz_index(body: bytes) -> None:
    decoded = decoded_or_damage(lambda: IndexFile.decode(body, "i"))
    if decoded is not None:
        trustworthy(decoded)


def test_a_huge_declared_count_is_refused_before_anything_is_allocated() -> None:
    """Four billion superseded ids declared in a body of a few bytes: the decoder must not
    build a list of that many before it finds the body too short."""
    body = struct.pack("<4sBI", b"DRIX", 1, 0xFFFFFFFF) + b"\0" * 40
    started = time.monotonic()
    with pytest.raises(IntegrityError, match="truncated"):
        IndexFile.decode(body, "i")
    assert time.monotonic() - started < 1


def _entries(body: bytes, change: dict[str, int]) -> bytes:
    """``VALID`` with a field of its first blob entry set (offsets as the format lays them)."""
    start = 5 + 4 + 32 + 4 + 32 + 32 + 4  # head, superseded ids, pack count, first pack
    fields = list(struct.unpack_from("<IIIIBB32s", body, start))
    for name, value in change.items():
        fields[["seq", "offset", "stored", "raw", "type", "compression"].index(name)] = value
    return body[:start] + struct.pack("<IIIIBB32s", *fields) + body[start + 54 :]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": 7}, "unknown blob type 7"),
        ({"compression": 9}, "unknown compression 9"),
        ({"stored": 3}, "shorter than its tag"),
        ({"seq": 5}, "position 5 at offset 0, where 0 at 0 belongs"),
        ({"offset": 1 << 31}, "where 0 at 0 belongs"),
    ],
)
def test_an_entry_no_pack_writer_makes_is_damage(change: dict[str, int], problem: str) -> None:
    with pytest.raises(IntegrityError, match=problem):
        IndexFile.decode(_entries(VALID, change), "i")

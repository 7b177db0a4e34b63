"""Packs: whatever a pack's header or a blob holds once decrypted, reading it gives blobs as
a pack writer laid them out, or damage (IntegrityError), never another error."""

from __future__ import annotations

import os
import struct

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo.crypto import CipherName, MasterKey
from drplan.repo.pack import (
    DATA,
    ENTRY,
    HEADER_AAD,
    MAGIC,
    TRAILER,
    TREE,
    VERSION,
    PackEntry,
    PackWriter,
    blob_aad,
    open_blob,
    read_header,
)
from tests.fixtures.fuzz import decoded_or_damage, fuzz, mutated

KEY = MasterKey.generate().ring()
CIPHER: CipherName = "aes-256-gcm"
WRITER = PackWriter(KEY, CIPHER)
for blob in (b"a" * 5000, os.urandom(700), b"tree"):
    WRITER.add(DATA, KEY.blob_id(blob), blob, 3)
PACK = WRITER.finish()
BLOBS = PACK[: sum(e.stored_length for e in WRITER.entries)]
HEADER = b"".join(
    ENTRY.pack(e.type, e.compression, e.stored_length, e.raw_length, e.id) for e in WRITER.entries
)


def with_header(plain: bytes) -> bytes:
    """The sample pack with ``plain`` as its header, sealed as a pack writer seals one."""
    sealed = KEY.sealer(CIPHER, WRITER.salt).seal(0, plain, HEADER_AAD)
    return BLOBS + sealed + TRAILER.pack(WRITER.salt, len(sealed), VERSION, MAGIC)


def trustworthy(entries: list[PackEntry], pack: bytes) -> None:
    offset = 0
    for seq, entry in enumerate(entries):
        assert (entry.seq, entry.offset) == (seq, offset)
        assert entry.type in (DATA, TREE)
        assert entry.compression in (0, 1)
        assert entry.stored_length >= 16
        offset += entry.stored_length
    assert offset <= len(pack)


@fuzz
@given(st.binary(max_size=300) | mutated(HEADER).map(with_header))
def test_fuzz_pack_header(pack: bytes) -> None:
    """Any bytes as a pack, and packs whose header, once decrypted, is mutated."""
    found = decoded_or_damage(lambda: read_header(KEY, CIPHER, pack, "p"))
    if found is not None:
        trustworthy(found[2], pack)


def test_a_header_of_a_partial_entry_is_damage() -> None:
    with pytest.raises(IntegrityError, match="not a whole number of entries"):
        read_header(KEY, CIPHER, with_header(HEADER + b"\0"), "p")


def _sealed_blob(payload: bytes, kind: int, raw_length: int) -> tuple[PackEntry, bytes]:
    blob_id = os.urandom(32)
    entry = PackEntry(blob_id, DATA, kind, 0, 0, len(payload) + 16, raw_length)
    return entry, KEY.sealer(CIPHER, WRITER.salt).seal(1, payload, blob_aad(DATA, blob_id))


@fuzz
@given(
    st.binary(max_size=200) | mutated(zstandard.ZstdCompressor().compress(b"log line\n" * 50)),
    st.integers(0, 255),
    st.integers(0, 1 << 20),
)
def test_fuzz_blob_plaintext(payload: bytes, kind: int, raw_length: int) -> None:
    """A blob that authenticates but holds anything, stored as any compression: its content
    or damage (it cannot match its id here, so always damage)."""
    entry, sealed = _sealed_blob(payload, kind, raw_length)
    assert (
        decoded_or_damage(lambda: open_blob(KEY, CIPHER, WRITER.salt, 0, entry, sealed, "b"))
        is None
    )


def test_a_frame_declaring_more_than_the_blob_is_refused_before_it_is_allocated() -> None:
    """A zstd frame declaring 2**40 bytes: zstd would allocate that at once (MemoryError)."""
    frame = bytes.fromhex("28b52ffd") + bytes([0b11100000]) + struct.pack("<Q", 1 << 40)
    frame += (1 | 1 << 3).to_bytes(3, "little") + b"a"  # one raw block of one byte, the last
    entry, sealed = _sealed_blob(frame, 1, 1 << 32 - 1)
    with pytest.raises(IntegrityError, match="declares 1099511627776 bytes"):
        open_blob(KEY, CIPHER, WRITER.salt, 0, entry, sealed, "b")

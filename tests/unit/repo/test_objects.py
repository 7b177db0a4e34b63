"""Encrypted objects (config, index, snapshot, lock, tombstone, WAL): whatever the sealed
plaintext holds, opening gives a body or damage (IntegrityError), never another error."""

from __future__ import annotations

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo import compression
from drplan.repo.crypto import CipherName, MasterKey
from drplan.repo.objects import KINDS, open_object
from tests.fixtures.fuzz import decoded_or_damage, fuzz, mutated, seal_plaintext

KEY = MasterKey.generate().ring()
CIPHER: CipherName = "aes-256-gcm"
BODY = b'{"host": "db1", "pid": 42}' * 20
COMPRESSED = b"\x01" + zstandard.ZstdCompressor().compress(BODY)


@fuzz
@given(
    st.sampled_from(KINDS),
    st.binary(max_size=200).map(lambda b: ("stored", b))
    | (mutated(COMPRESSED) | mutated(b"\x00" + BODY) | st.binary(max_size=100)).map(
        lambda b: ("plaintext", b)
    ),
)
def test_fuzz_object(kind: str, given_bytes: tuple[str, bytes]) -> None:
    """Any bytes as a stored object, and objects that authenticate but whose plaintext
    (flag byte, body) is mutated."""
    layer, data = given_bytes
    stored = data if layer == "stored" else seal_plaintext(KEY, CIPHER, kind, data)
    decoded_or_damage(lambda: open_object(KEY, CIPHER, kind, stored, "o"))


@pytest.mark.parametrize(
    ("plaintext", "problem"),
    [
        (b"\x07" + BODY, "unknown compression 7"),
        (b"\x01" + BODY, "cannot be decompressed"),
    ],
)
def test_an_object_that_cannot_be_decompressed_is_damage(plaintext: bytes, problem: str) -> None:
    stored = seal_plaintext(KEY, CIPHER, "snapshot", plaintext)
    with pytest.raises(IntegrityError, match=problem):
        open_object(KEY, CIPHER, "snapshot", stored, "snapshots/1a2b")


def test_a_frame_that_declares_no_size_is_held_to_the_limit() -> None:
    """zstd would allocate the whole limit for such a frame (1 GiB for an object): it is
    read a chunk at a time instead, and refused once past the limit."""
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 5_000_000)
    assert compression.decompress(compression.ZSTD, frame, 5_000_000, "o") == b"\0" * 5_000_000
    with pytest.raises(IntegrityError, match="o: holds more than 4999999 bytes"):
        compression.decompress(compression.ZSTD, frame, 4_999_999, "o")

"""The repository's building blocks: each object kind round-trips and refuses tampering."""

from __future__ import annotations

import base64
import os

import pytest

from drplan.errors import IntegrityError
from drplan.repo.compression import NONE, ZSTD, compress
from drplan.repo.crypto import MasterKey
from drplan.repo.index import IndexFile, PackInfo
from drplan.repo.objects import open_object, seal_object
from drplan.repo.pack import DATA, TREE, PackWriter, open_blob, read_header
from drplan.repo.tree import Node, decode_tree, encode_tree

KEY = MasterKey.generate().ring()


def test_blob_ids_are_keyed() -> None:
    other = MasterKey.generate().ring()
    assert KEY.blob_id(b"same") == KEY.blob_id(b"same")
    assert KEY.blob_id(b"same") != other.blob_id(b"same")


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_object_round_trip_and_kind_binding(cipher: str) -> None:
    stored = seal_object(KEY, cipher, "snapshot", b'{"x": 1}' * 100)  # type: ignore[arg-type]
    assert open_object(KEY, cipher, "snapshot", stored, "s") == b'{"x": 1}' * 100  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_object(KEY, cipher, "index", stored, "s")  # type: ignore[arg-type]
    flipped = bytearray(stored)
    flipped[-5] ^= 1
    with pytest.raises(IntegrityError):
        open_object(KEY, cipher, "snapshot", bytes(flipped), "s")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_object(MasterKey.generate().ring(), cipher, "snapshot", stored, "s")  # type: ignore[arg-type]


def test_two_seals_of_the_same_plaintext_differ() -> None:
    assert seal_object(KEY, "aes-256-gcm", "lock", b"x") != seal_object(
        KEY, "aes-256-gcm", "lock", b"x"
    )


def test_incompressible_data_is_stored_as_is() -> None:
    random = os.urandom(300_000)
    assert compress(random, 3)[0] == NONE
    kind, packed = compress(b"log line\n" * 10_000, 3)
    assert kind == ZSTD
    assert len(packed) < 1000


def test_pack_round_trip_and_tamper_detection() -> None:
    writer = PackWriter(KEY, "aes-256-gcm")
    blobs = [os.urandom(1000), b"a" * 5000, b"tree"]
    entries = [
        writer.add(TREE if i == 2 else DATA, KEY.blob_id(b), b, 3) for i, b in enumerate(blobs)
    ]
    data = writer.finish()
    salt, _, header = read_header(KEY, "aes-256-gcm", data, "p")
    assert header == entries
    for entry, blob in zip(entries, blobs, strict=True):
        sealed = data[entry.offset : entry.offset + entry.stored_length]
        assert open_blob(KEY, "aes-256-gcm", salt, 0, entry, sealed, "b") == blob
    # Swapping two blobs' ciphertexts is caught: ids and positions are bound into the tags.
    e0, e1 = entries[0], entries[1]
    with pytest.raises(IntegrityError):
        open_blob(
            KEY, "aes-256-gcm", salt, 0, e0, data[e1.offset : e1.offset + e1.stored_length], "b"
        )
    with pytest.raises(IntegrityError, match=r"truncated|no pack trailer"):
        read_header(KEY, "aes-256-gcm", data[:-10], "p")


def test_index_round_trip_and_truncation() -> None:
    writer = PackWriter(KEY, "aes-256-gcm")
    writer.add(DATA, KEY.blob_id(b"x"), b"x", 3)
    writer.finish()
    index = IndexFile(
        [PackInfo("ab" * 32, writer.salt, tuple(writer.entries))], supersedes=["cd" * 32]
    )
    body = index.encode()
    assert IndexFile.decode(body, "i") == index
    with pytest.raises(IntegrityError, match="truncated"):
        IndexFile.decode(body[:-3], "i")


def test_trees_are_canonical_and_refuse_escaping_names() -> None:
    a = Node(name=b"b", type="file", mode=0o644, uid=0, gid=0, mtime_ns=1)
    b = Node(
        name=b"\xff\xfe", type="dir", mode=0o755, uid=0, gid=0, mtime_ns=2, subtree=b"\x01" * 32
    )
    assert encode_tree([a, b]) == encode_tree([b, a])
    decoded = decode_tree(encode_tree([a, b]), "t")
    assert [n.name for n in decoded] == [b"b", b"\xff\xfe"]
    for bad in (b"..", b".", b"a/b", b"", b"x\0"):
        raw = encode_tree(
            [Node(name=b"ok", type="file", mode=0, uid=0, gid=0, mtime_ns=0)]
        ).replace(b'"name":"ok"', b'"name_b64":"' + base64.b64encode(bad) + b'"')
        with pytest.raises(IntegrityError, match="invalid entry name"):
            decode_tree(raw, "t")

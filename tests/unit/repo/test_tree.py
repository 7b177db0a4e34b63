"""Tree decoding: whatever a tree blob holds, its nodes can be acted on as they are, or it
is damage (IntegrityError naming the entry). Restore, ls and check rely on it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo.tree import (
    NODE_TYPES,
    Node,
    decode_listing,
    decode_tree,
    encode_tree,
    valid_name,
)
from tests.fixtures.fuzz import decoded_or_damage, fuzz, json_mutated, mutated

ID = b"\x01" * 32
NODES = [
    Node(
        name=b"app.conf",
        type="file",
        mode=0o644,
        uid=1000,
        gid=1000,
        mtime_ns=1_600_000_000_123_456_789,
        ctime_ns=1_600_000_000_123_456_789,
        user="app",
        group="app",
        size=12,
        content=[ID, b"\x02" * 32],
        inode=42,
        device=2049,
        links=2,
        xattrs=[(b"user.checksum", b"abc123")],
    ),
    Node(name=b"etc", type="dir", mode=0o750, uid=0, gid=0, mtime_ns=1, subtree=ID),
    Node(name=b"link", type="symlink", mode=0o777, uid=0, gid=0, mtime_ns=-5, target=b"../x"),
    Node(name=b"raw-\xff", type="file", mode=0o600, uid=0, gid=0, mtime_ns=0),
    Node(name=b"tty", type="chardev", mode=0o620, uid=0, gid=5, mtime_ns=0, rdev=1025),
]
VALID = encode_tree(NODES)
DOC: dict[str, Any] = json.loads(VALID)


def trustworthy(node: Node) -> None:
    """What restore, ls and check take for granted of a decoded node."""
    assert valid_name(node.name)
    assert node.type in NODE_TYPES
    assert 0 <= node.mode <= 0o7777
    assert 0 <= node.uid < 1 << 32
    assert 0 <= node.gid < 1 << 32
    assert -(1 << 63) <= node.mtime_ns < 1 << 63
    assert -(1 << 63) <= node.ctime_ns < 1 << 63
    assert 0 <= node.size < 1 << 63
    assert all(type(v) is int and v >= 0 for v in (node.rdev, node.inode, node.device, node.links))
    assert (node.subtree is not None) == (node.type == "dir")
    assert node.subtree is None or len(node.subtree) == 32
    assert (node.target is not None) == (node.type == "symlink")
    assert node.target is None or (node.target and b"\0" not in node.target)
    assert not node.content or node.type == "file"
    assert all(type(c) is bytes and len(c) == 32 for c in node.content)
    assert node.user is None or type(node.user) is str
    assert node.group is None or type(node.group) is str
    assert all(name and b"\0" not in name and type(v) is bytes for name, v in node.xattrs)


def decodes_or_is_damage(raw: bytes) -> None:
    nodes = decoded_or_damage(lambda: decode_tree(raw, "tree t"))
    for node in nodes or []:
        trustworthy(node)
    if nodes is not None:
        assert len({n.name for n in nodes}) == len(nodes)
    listing = decoded_or_damage(lambda: decode_listing(raw, "tree t"))
    for name, entry in (listing or {}).items():
        assert valid_name(name)
        assert entry["type"] in NODE_TYPES
        assert (entry.get("subtree") is not None) == (entry["type"] == "dir")
        built = decoded_or_damage(lambda entry=entry: Node.from_json(entry))  # type: ignore[misc]
        if built is not None:
            trustworthy(built)


@fuzz
@given(st.binary(max_size=600) | mutated(VALID) | json_mutated(DOC))
def test_fuzz_tree(raw: bytes) -> None:
    decodes_or_is_damage(raw)


def _with(index: int, **changes: Any) -> bytes:
    """The sample tree with node ``index`` changed (a value of None removes the key)."""
    doc = json.loads(VALID)
    node = doc["nodes"][index]
    for key, value in changes.items():
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return json.dumps(doc).encode()


FILE, DIR, LINK = 0, 1, 2


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (_with(DIR, subtree=None), "a directory without a subtree"),
        (_with(LINK, target=None), "a symlink without a target"),
        (_with(LINK, target=""), "a symlink target that is empty or holds NUL"),
        (_with(LINK, target="a\0b"), "a symlink target that is empty or holds NUL"),
        (_with(FILE, subtree="01" * 32), "a file with a subtree"),
        (_with(DIR, content=["01" * 32]), "content"),
        (_with(FILE, uid="1000"), "uid is 1000, not an integer"),
        (_with(FILE, uid=-1), "uid is -1"),
        (_with(FILE, gid=1 << 32), "gid is 4294967296"),
        (_with(FILE, mode=0o10644), "mode is 4516"),
        (_with(FILE, mtime_ns=True), "mtime_ns is True"),
        (_with(FILE, mtime_ns=1.5), "mtime_ns is 1.5"),
        (_with(FILE, size=-1), "size is -1"),
        (_with(FILE, links="2"), "links is 2"),
        (_with(FILE, user=7), "user is 7, not a string"),
        (_with(FILE, content="01" * 32), "content"),
        (_with(FILE, content=["01" * 31]), "not a blob id"),
        (_with(FILE, content=["01 " * 21 + "0"]), "not a blob id"),
        (_with(FILE, xattrs=[{"name": "user.x"}]), "xattrs"),
        (_with(FILE, xattrs=[{"name": "", "value_b64": ""}]), "xattrs"),
        (_with(FILE, xattrs=[{"name": "user.x", "value_b64": "not base64!"}]), "xattrs"),
        (_with(DIR, subtree="zz" * 32), "not a blob id"),
        (_with(FILE, type="door"), "unknown type door"),
    ],
)
def test_fields_of_the_wrong_form_are_damage_naming_the_entry(raw: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError, match="entry ") as caught:
        decode_tree(raw, "tree 0123")
    assert problem in caught.value.message
    assert caught.value.message.startswith("tree 0123: entry ")


@pytest.mark.parametrize(
    "name",
    [
        {"name": ".."},
        {"name": "a/b"},
        {"name": "x\0"},
        {"name": ""},
        {"name": 5},
        {"name_b64": "*"},
    ],
)
def test_a_name_must_be_one_path_component(name: dict[str, Any]) -> None:
    doc = json.loads(VALID)
    del doc["nodes"][FILE]["name"]
    doc["nodes"][FILE].update(name)
    raw = json.dumps(doc).encode()
    for decode in (decode_tree, decode_listing):
        with pytest.raises(IntegrityError, match="invalid entry name"):
            decode(raw, "t")


def test_a_tree_whose_nodes_are_no_list_is_damage() -> None:
    for decode in (decode_tree, decode_listing):
        with pytest.raises(IntegrityError, match="no list of nodes"):
            decode(b'{"nodes": {"a": {}}}', "t")


def test_a_listing_refuses_a_directory_without_a_subtree() -> None:
    """Copies walk listings, not nodes: a directory without its subtree would copy as an
    empty one."""
    with pytest.raises(IntegrityError, match="entry etc: a directory without a subtree"):
        decode_listing(_with(DIR, subtree=None), "t")


def test_damage_is_told_at_its_snapshot_and_path() -> None:
    with pytest.raises(IntegrityError) as caught:
        decode_tree(_with(DIR, subtree=None), "tree 0123")
    assert (
        caught.value.placed("1a2b3c4d", "/srv")  # type: ignore[attr-defined]  # a TreeDamage
        == "snapshot 1a2b3c4d: /srv/etc: a directory without a subtree (tree 0123 is damaged)"
    )


def test_an_extended_attribute_whose_name_is_not_utf8_round_trips() -> None:
    """Linux allows any bytes but NUL in an xattr name; the tree must hold them as they are
    (a backup of such a file was an internal error: JSON cannot carry them as text)."""
    node = Node(
        name=b"f", type="file", mode=0o644, uid=0, gid=0, mtime_ns=0,
        xattrs=[(b"user.\xffbad", b"\x00value"), (b"user.plain", b"v")],
    )  # fmt: skip
    raw = encode_tree([node])
    assert b"name_b64" in raw
    (back,) = decode_tree(raw, "tree t")
    assert back.xattrs == node.xattrs


def test_a_tree_of_an_earlier_drplan_with_such_a_name_still_reads() -> None:
    """Before name_b64 such a name was written as lone surrogate escapes."""
    legacy = DOC["nodes"][0] | {"xattrs": [{"name": "user.\udcffbad", "value_b64": "dg=="}]}
    raw = json.dumps({"nodes": [legacy]}).encode()
    (back,) = decode_tree(raw, "tree t")
    assert back.xattrs == [(b"user.\xffbad", b"v")]

"""Trees: directory listings with full metadata, stored as canonical JSON blobs.

Decoding checks every entry against the format (docs/repository-format.md, Trees):
what comes out is safe to act on as it is, and anything else is TreeDamage, naming
the entry.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from drplan.errors import IntegrityError

NODE_TYPES = ("file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket")


@dataclass
class Node:
    """One entry of a directory. ``name`` and ``target`` are bytes: file names need not be UTF-8."""

    name: bytes
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int = 0
    user: str | None = None
    group: str | None = None
    size: int = 0
    content: list[bytes] = field(default_factory=list)
    subtree: bytes | None = None
    target: bytes | None = None
    rdev: int = 0
    inode: int = 0
    device: int = 0
    links: int = 1
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        }
        _put_bytes(out, "name", self.name)
        out["mtime_ns"] = self.mtime_ns
        out["ctime_ns"] = self.ctime_ns
        if self.user is not None:
            out["user"] = self.user
        if self.group is not None:
            out["group"] = self.group
        if self.type == "file":
            out["size"] = self.size
            out["content"] = [c.hex() for c in self.content]
            out["inode"], out["device"], out["links"] = self.inode, self.device, self.links
        if self.subtree is not None:
            out["subtree"] = self.subtree.hex()
        if self.target is not None:
            _put_bytes(out, "target", self.target)
        if self.rdev:
            out["rdev"] = self.rdev
        if self.xattrs:
            out["xattrs"] = [_xattr(n, v) for n, v in self.xattrs]
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "tree") -> Node:
        """A node as the format allows it, or TreeDamage: restore, ls and check act on what
        this returns (a directory has a subtree, a symlink a target) without checking again."""
        if type(data) is not dict:
            raise TreeDamage(where, "an entry is not a JSON object")
        name = _name(data, where)
        try:
            return cls._checked(name, data)
        except _Invalid as exc:
            raise TreeDamage(where, str(exc), name) from None

    @classmethod
    def _checked(cls, name: bytes, data: dict[str, Any]) -> Node:
        # Hot path: a restore decodes every tree. Plain lookups and comparisons only.
        kind = data.get("type")
        if kind not in NODE_TYPES:
            raise _Invalid(f"unknown type {_shown(kind)[:40]}")
        get = data.get
        subtree, content, xattrs = get("subtree"), get("content"), get("xattrs")
        target = _get_bytes(data, "target")
        if (subtree is not None) != (kind == "dir"):
            raise _Invalid(
                "a directory without a subtree" if kind == "dir" else f"a {kind} with a subtree"
            )
        if (target is not None) != (kind == "symlink"):
            raise _Invalid(
                "a symlink without a target" if kind == "symlink" else f"a {kind} with a target"
            )
        if target is not None and (not target or b"\0" in target):
            raise _Invalid("a symlink target that is empty or holds NUL")
        if content is not None and (kind != "file" or type(content) is not list):
            raise _Invalid(f"content {_shown(content)[:40]} on a {kind}")
        return cls(
            name,
            kind,
            _int(data, "mode", 0, 0o7777),
            _int(data, "uid", 0, _U32),
            _int(data, "gid", 0, _U32),
            _int(data, "mtime_ns", -_I64, _I64 - 1),
            _int(data, "ctime_ns", -_I64, _I64 - 1, 0),
            _text(get("user"), "user"),
            _text(get("group"), "group"),
            _int(data, "size", 0, _I64 - 1, 0),
            [_blob_id(c, "content") for c in content] if content else [],
            None if subtree is None else _blob_id(subtree, "subtree"),
            target,
            _int(data, "rdev", 0, _U64, 0),
            _int(data, "inode", 0, _U64, 0),
            _int(data, "device", 0, _U64, 0),
            _int(data, "links", 0, _U64, 1),
            _xattrs(xattrs) if xattrs is not None else [],
        )


class TreeDamage(IntegrityError):
    """A tree that authenticates but breaks the format (a bug or an attacker with the key
    wrote it): where it is, what is wrong, and the entry concerned when one is."""

    def __init__(self, where: str, problem: str, entry: bytes | None = None) -> None:
        self.where, self.problem, self.entry = where, problem, entry
        shown = "" if entry is None else f"entry {_shown(os.fsdecode(entry))}: "
        super().__init__(
            f"{where}: {shown}{problem}",
            hint="`drplan check` lists what it affects; restore those files from another location",
        )

    def placed(self, snapshot: str, path: str) -> str:
        """The damage told where a user sees it: ``snapshot 1a2b3c4d: /etc/x: <problem>``."""
        if self.entry is not None:
            path = f"{path.rstrip('/')}/{os.fsdecode(self.entry)}"
        return f"snapshot {snapshot}: {_shown(path)}: {self.problem} ({self.where} is damaged)"


class _Invalid(ValueError):
    """A field of an entry breaks the format; Node.from_json names the entry."""


_U32, _U64, _I64 = (1 << 32) - 1, (1 << 64) - 1, 1 << 63


def _shown(value: object) -> str:
    """A value as it may appear in a one-line message: control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    return text if text.isprintable() else repr(text)[1:-1]


def _int(data: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = data.get(key, default)
    if type(value) is not int or not low <= value <= high:  # bool is no integer here
        raise _Invalid(f"{key} is {_shown(value)[:40]}, not an integer from {low} to {high}")
    return value


def _text(value: object, key: str) -> str | None:
    if value is not None and type(value) is not str:
        raise _Invalid(f"{key} is {_shown(value)[:40]}, not a string")
    return value


def _blob_id(value: object, key: str) -> bytes:
    try:
        blob_id = bytes.fromhex(value)  # type: ignore[arg-type]  # anything else is refused
    except (TypeError, ValueError):
        blob_id = b""
    if len(blob_id) != 32:
        raise _Invalid(f"{key} holds {_shown(value)[:80]}, not a blob id (64 hex digits)")
    return blob_id


def _xattr(name: bytes, value: bytes) -> dict[str, str]:
    """An extended attribute: its name as text, or base64 (``name_b64``) when it is not
    UTF-8, as entry names are; its value always base64."""
    out = {"value_b64": base64.b64encode(value).decode()}
    _put_bytes(out, "name", name)
    return out


def _xattrs(value: object) -> list[tuple[bytes, bytes]]:
    out = []
    try:
        for x in value:  # type: ignore[attr-defined]  # anything else is refused below
            name = (
                base64.b64decode(x["name_b64"], validate=True)
                if "name_b64" in x
                # Text, or (trees of drplan before name_b64) a name not UTF-8 as escapes.
                else x["name"].encode("utf-8", "surrogateescape")
            )
            if not name or b"\0" in name:
                raise ValueError
            out.append((name, base64.b64decode(x["value_b64"], validate=True)))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise _Invalid(f"xattrs {_shown(value)[:80]} are malformed") from None
    return out


def _name(data: dict[str, Any], where: str) -> bytes:
    try:
        name = _get_bytes(data, "name")
    except _Invalid:
        name = None
    if name is None or not valid_name(name):
        raise TreeDamage(where, f"an invalid entry name {name!r}: refusing it")
    return name


def valid_name(name: bytes) -> bool:
    """A name that stays inside its directory: not empty, '.', '..', no '/' or NUL."""
    return bool(name) and name not in (b".", b"..") and b"/" not in name and b"\0" not in name


def _put_bytes(out: dict[str, Any], key: str, value: bytes) -> None:
    try:
        out[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_b64"] = base64.b64encode(value).decode()


def _get_bytes(data: dict[str, Any], key: str) -> bytes | None:
    """``key`` as text, or ``key_b64`` as base64; _Invalid when it is neither."""
    try:
        if key in data:
            return data[key].encode("utf-8")  # type: ignore[no-any-return]
        if key + "_b64" in data:
            return base64.b64decode(data[key + "_b64"], validate=True)
    except (AttributeError, TypeError, ValueError):
        raise _Invalid(f"{key} is not text or base64") from None
    return None


def encode_tree(nodes: list[Node]) -> bytes:
    """Canonical JSON: nodes sorted by name bytes, keys sorted, no spaces."""
    ordered = sorted(nodes, key=lambda n: n.name)
    return json.dumps(
        {"nodes": [n.to_json() for n in ordered]}, sort_keys=True, separators=(",", ":")
    ).encode()


def _lone_surrogates(raw: bytes) -> Any:
    """A tree written before xattr names had ``name_b64``: one that is not UTF-8 was
    written as lone-surrogate escapes, which orjson refuses and json reads."""
    if b"\\udc" not in raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _items(raw: bytes, where: str) -> list[Any]:
    try:
        # orjson: about three times faster than json, and a backup reads every parent tree
        data = orjson.loads(raw)
    except ValueError as exc:  # orjson's errors, invalid UTF-8 and nesting too deep included
        data = _lone_surrogates(raw)
        if data is None:
            raise TreeDamage(where, f"malformed tree ({exc})") from None
    items = data.get("nodes") if type(data) is dict else None
    if type(items) is not list:
        raise TreeDamage(where, "malformed tree (no list of nodes)")
    return items


def decode_listing(raw: bytes, where: str) -> dict[bytes, dict[str, Any]]:
    """A tree's entries by name, left as decoded JSON.

    For comparing a parent snapshot with the file system: most entries of an
    incremental backup are unchanged, and building a node for each of them cost more
    than the rest of the comparison. Only what walking the tree needs is checked here
    (names, types, a subtree where a directory is); entries that are used are built
    with ``Node.from_json``, which checks the rest.
    """
    listing: dict[bytes, dict[str, Any]] = {}
    for item in _items(raw, where):
        if type(item) is not dict:
            raise TreeDamage(where, "an entry is not a JSON object")
        name = _name(item, where)
        kind = item.get("type")
        if kind not in NODE_TYPES:
            raise TreeDamage(where, f"unknown type {_shown(kind)[:40]}", name)
        if (item.get("subtree") is not None) != (kind == "dir"):
            raise TreeDamage(
                where,
                "a directory without a subtree" if kind == "dir" else f"a {kind} with a subtree",
                name,
            )
        if name in listing:
            raise TreeDamage(where, "listed twice", name)
        listing[name] = item
    return listing


def decode_tree(raw: bytes, where: str) -> list[Node]:
    """A tree's nodes, every one as ``Node.from_json`` allows it; TreeDamage otherwise."""
    nodes = [Node.from_json(item, where) for item in _items(raw, where)]
    seen: set[bytes] = set()
    for node in nodes:
        if node.name in seen:
            raise TreeDamage(where, "listed twice", node.name)
        seen.add(node.name)
    return nodes

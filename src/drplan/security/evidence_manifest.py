"""The evidence manifest: what a capture read, entry by entry, and the SHA-256 of each
file's bytes as read; its canonical encoding, and a stored copy held against it.

A manifest is canonical JSON (keys sorted, no whitespace, ASCII with escapes), so its own
SHA-256 is well defined: that digest goes into the snapshot and the incident's timeline,
and ``drplan evidence verify`` recomputes it. Entries are in walk order (a directory before
what it holds), one per node of the capture's ``files`` tree, keyed by absolute path.
docs/security.md ("Evidence") describes every field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drplan.errors import DrplanError
from drplan.repo.repository import Repository
from drplan.repo.tree import Node

VERSION = 1
NAME = "manifest.json"  # beside `files` in the root of an evidence snapshot
FILES = "files"
ALTERED = "the evidence was altered, or not written by drplan"  # the hint of a bad manifest
# Compared between the manifest and the stored tree: a difference is tampering by someone
# holding the repository's key, or a bug, either way the copy is not what was read.
COMPARED = ("type", "mode", "uid", "gid", "mtime_ns", "size", "target", "target_b64")


def put_bytes(entry: dict[str, Any], key: str, value: bytes) -> None:
    """``key`` as text when the bytes are UTF-8, else ``key_b64``, as trees store names."""
    try:
        entry[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        entry[f"{key}_b64"] = base64.b64encode(value).decode()


def path_of(entry: dict[str, Any]) -> bytes:
    if "path_b64" in entry:
        return base64.b64decode(entry["path_b64"])
    return os.fsencode(str(entry["path"]))


def shown(path: bytes) -> str:
    return os.fsdecode(path)


def entry_of(path: bytes, node: Node, st: os.stat_result) -> dict[str, Any]:
    """An entry's metadata as the walk saw it (before reading; a file's digest is added
    once it is read)."""
    entry: dict[str, Any] = {
        "type": node.type, "mode": node.mode, "uid": node.uid, "gid": node.gid,
        "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "atime_ns": st.st_atime_ns,
        "mtime": datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC).isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    put_bytes(entry, "path", path)
    if node.type == "file":
        entry.update(size=node.size, inode=st.st_ino, links=st.st_nlink)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        entry["rdev"] = st.st_rdev
    return entry


@dataclass
class Manifest:
    header: dict[str, Any]  # incident, system, kind, host, user, started, finished, paths
    entries: list[dict[str, Any]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # could not be read: "path: why"
    skipped: list[str] = field(default_factory=list)  # vanished meanwhile, other file systems

    def encode(self) -> bytes:
        doc = {**self.header, "version": VERSION, "entries": self.entries,
               "unread": self.unread, "skipped": self.skipped}  # fmt: skip
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def decode(cls, body: bytes) -> Manifest:
        try:
            doc = json.loads(body)
            if doc.pop("version") != VERSION:
                raise ValueError("unknown version")
            entries, unread, skipped = doc.pop("entries"), doc.pop("unread"), doc.pop("skipped")
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ValueError("entries are not a list of objects")
            for entry in entries:
                path_of(entry)
            return cls(doc, entries, [str(u) for u in unread], [str(u) for u in skipped])
        except KeyError as exc:
            raise DrplanError(f"its manifest lacks {exc}", hint=ALTERED) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise DrplanError(f"its manifest is not one ({exc})", hint=ALTERED) from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_nodes(
    repo: Repository, tree: bytes, prefix: bytes = b""
) -> Iterator[tuple[bytes, Node]]:
    """Every node below ``tree`` with its absolute path, directories before their contents
    (the walk of a stored tree, iterative: evidence may be nested deeper than the stack)."""
    stack = [(prefix, tree)]
    while stack:
        base, tree_id = stack.pop()
        below = []
        for node in repo.load_tree(tree_id):
            path = base + b"/" + node.name
            yield path, node
            if node.type == "dir" and node.subtree is not None:
                below.append((path, node.subtree))
        stack.extend(reversed(below))


def content_digest(repo: Repository, node: Node) -> tuple[str, int]:
    """The SHA-256 and length of a stored file's content, each blob authenticated on the way."""
    digest, size = hashlib.sha256(), 0
    for blob in node.content:
        data = repo.read_blob(blob)
        digest.update(data)
        size += len(data)
    return digest.hexdigest(), size


def compare(repo: Repository, manifest: Manifest, files_tree: bytes) -> tuple[list[str], int, int]:
    """What in the stored ``files`` tree differs from the manifest, by path (every file
    read back and hashed); with the files and bytes checked."""
    expected = {path_of(e): e for e in manifest.entries}
    expected.pop(b"/", None)  # "/" captured whole: its node is the `files` directory itself
    problems: list[str] = []
    files = size = 0
    for path, node in stored_nodes(repo, files_tree):
        entry = expected.pop(path, None)
        if entry is None:
            problems.append(f"{shown(path)}: stored, but not in the manifest")
            continue
        held = node.to_json()
        differ = [k for k in COMPARED if k in entry and entry[k] != held.get(k)]
        if differ:
            problems.append(f"{shown(path)}: {', '.join(differ)} differ from the manifest")
        if node.type != "file" or "sha256" not in entry:
            continue
        try:
            digest, length = content_digest(repo, node)
        except DrplanError as exc:
            problems.append(f"{shown(path)}: cannot be read back: {exc.message}")
            continue
        files, size = files + 1, size + length
        if digest != entry["sha256"]:
            problems.append(
                f"{shown(path)}: its content does not match its SHA-256 in the manifest"
            )
    problems += [f"{shown(p)}: in the manifest, but not stored" for p in expected]
    return problems, files, size

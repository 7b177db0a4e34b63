"""Reading snapshots as file trees: walking paths and comparing two snapshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from drplan.errors import DrplanError
from drplan.nesting import flatten_nested
from drplan.repo.repository import Repository
from drplan.repo.tree import Node


def walk(repo: Repository, tree: bytes, below: str = "/") -> Iterator[tuple[str, Node]]:
    """(path, node) of every entry under ``below``, depth first, in name order."""
    parts = [p for p in below.strip("/").split("/") if p]
    current, prefix = tree, ""
    for part in parts:
        nodes = {n.name: n for n in repo.load_tree(current)}
        node = nodes.get(os.fsencode(part))
        prefix = f"{prefix}/{part}"
        if node is None:
            raise DrplanError(f"{prefix} is not in the snapshot", hint="see `drplan ls SNAPSHOT`")
        if node.type != "dir" or node.subtree is None:
            yield prefix, node
            return
        current = node.subtree
    yield from _walk(repo, current, prefix)


def _walk(repo: Repository, tree: bytes, prefix: str) -> Iterator[tuple[str, Node]]:
    return flatten_nested(_level(repo, tree, prefix))


def _level(repo: Repository, tree: bytes, prefix: str) -> Iterator[Any]:
    """A directory's (path, node) entries, each directory's own level after it (nested:
    see ``drplan.nesting``)."""
    for node in repo.load_tree(tree):
        path = f"{prefix}/{os.fsdecode(node.name)}"
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            yield _level(repo, node.subtree, path)


def _own_metadata(node: Node) -> tuple[object, ...]:
    """What a user changes on an entry itself. A directory's mtime is left out: it moves
    whenever an entry in it is created, removed or renamed (an editor's save, anything in
    /tmp), and those entries are reported themselves."""
    kept = (node.mode, node.uid, node.gid, node.xattrs)
    return kept if node.type == "dir" else (*kept, node.mtime_ns)


def diff_snapshots(
    repo: Repository, first: bytes, second: bytes, prefix: str = ""
) -> Iterator[tuple[str, str]]:
    """(change, path), as restic's diff marks them: '+' added, '-' removed, 'M' modified
    (a file's content, a symlink's target), 'T' type changed (a file became a symlink),
    'U' metadata updated (mode, owner, extended attributes; a file's mtime)."""
    return flatten_nested(_compare(repo, first, second, prefix))


def _compare(repo: Repository, first: bytes, second: bytes, prefix: str) -> Iterator[Any]:
    """One directory's changes, each changed subdirectory's own after it (nested)."""
    if first == second:
        return  # identical trees: nothing below differs
    old = {n.name: n for n in repo.load_tree(first)}
    new = {n.name: n for n in repo.load_tree(second)}
    for name in sorted(old.keys() | new.keys()):
        path = f"{prefix}/{os.fsdecode(name)}"
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            change, node = ("+", b) if a is None else ("-", a)
            assert node is not None
            yield change, path
            if node.type == "dir" and node.subtree is not None:
                yield ((change, sub) for sub, _ in _walk(repo, node.subtree, path))
        elif a.type != b.type:
            yield "T", path
        else:
            if (a.content, a.size, a.target, a.rdev) != (b.content, b.size, b.target, b.rdev):
                yield "M", path
            elif _own_metadata(a) != _own_metadata(b):
                yield "U", path
            if a.type == "dir" and a.subtree and b.subtree:
                yield _compare(repo, a.subtree, b.subtree, path)

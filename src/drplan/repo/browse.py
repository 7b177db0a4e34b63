"""Reading snapshots as file trees: walking paths and comparing two snapshots."""

from __future__ import annotations

import os
from collections.abc import Iterator

from drplan.errors import DrplanError
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
    for node in repo.load_tree(tree):
        path = f"{prefix}/{os.fsdecode(node.name)}"
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            yield from _walk(repo, node.subtree, path)


def _same_metadata(a: Node, b: Node) -> bool:
    return (a.mode, a.uid, a.gid, a.mtime_ns, a.target, a.xattrs) == (
        b.mode,
        b.uid,
        b.gid,
        b.mtime_ns,
        b.target,
        b.xattrs,
    )


def diff_snapshots(
    repo: Repository, first: bytes, second: bytes, prefix: str = ""
) -> Iterator[tuple[str, str]]:
    """(change, path): '+' added, '-' removed, 'M' content modified, 'T' type or metadata changed."""
    if first == second:
        return  # identical trees: nothing below differs
    old = {n.name: n for n in repo.load_tree(first)}
    new = {n.name: n for n in repo.load_tree(second)}
    for name in sorted(old.keys() | new.keys()):
        path = f"{prefix}/{os.fsdecode(name)}"
        a, b = old.get(name), new.get(name)
        if a is None:
            assert b is not None
            yield "+", path
            yield from _all_below(repo, b, path, "+")
        elif b is None:
            yield "-", path
            yield from _all_below(repo, a, path, "-")
        elif a.type != b.type:
            yield "T", path
        elif a.type == "dir":
            if not _same_metadata(a, b):
                yield "T", path
            if a.subtree and b.subtree:
                yield from diff_snapshots(repo, a.subtree, b.subtree, path)
        elif a.content != b.content or a.size != b.size:
            yield "M", path
        elif not _same_metadata(a, b):
            yield "T", path


def _all_below(repo: Repository, node: Node, path: str, change: str) -> Iterator[tuple[str, str]]:
    if node.type == "dir" and node.subtree is not None:
        for sub, _ in _walk(repo, node.subtree, path):
            yield change, sub

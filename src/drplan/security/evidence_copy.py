"""Copying a compromised system's files into a repository as they are, for evidence.

Unlike a backup, nothing is taken on trust: there is no parent snapshot, so every file is
read whole, however unchanged its metadata looks (an intruder can set mtimes, and root
can set the clock). Each file is read once; its chunks go to the repository and its
SHA-256 is taken from those very bytes, so the manifest says what was read, not what a
second read would find. No symlink is followed (``O_NOFOLLOW``, ``lstat``), nothing is
written to the system, and files and directories are opened with ``O_NOATIME`` where
the kernel allows, so access times stay as the intruder left them. A file that changes
while it is read (a live database) is stored as read and marked so.

The result is the tree of the captured paths under their absolute paths, like a files
snapshot's root, and one manifest entry per node of it (:mod:`evidence_manifest`).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass

from drplan.nesting import Nested, run_nested
from drplan.repo.blob_pool import BlobPool
from drplan.repo.repository import Repository
from drplan.repo.tree import Node
from drplan.security.evidence_manifest import Manifest, entry_of, put_bytes, shown
from drplan.sources.files.metadata import node_from_stat, read_xattrs
from drplan.sources.stored import store_stream

NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass
class Copied:
    tree: bytes  # the root of the captured paths (the evidence snapshot's `files`)
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    changed: int = 0  # files that changed while they were read


def roots(paths: list[str]) -> list[bytes]:
    """Absolute, normalized, sorted, and none inside another (that one covers it)."""
    found = sorted({os.fsencode(os.path.normpath(os.path.abspath(p))) for p in paths})
    kept: list[bytes] = []
    for path in found:
        if not any(path == k or path.startswith(k.rstrip(b"/") + b"/") for k in kept):
            kept.append(path)
    return kept


def copy_paths(
    repo: Repository, pool: BlobPool, paths: list[bytes], manifest: Manifest,
    one_file_system: bool = False,
) -> Copied:  # fmt: skip
    """Store ``paths`` (from :func:`roots`) and what they hold; entries and what could not
    be read go into ``manifest``."""
    copier = _Copier(repo, pool, manifest, one_file_system)
    walk = copier.root() if paths == [b"/"] else copier.tree_for(paths, b"")
    copier.copied.tree = run_nested(walk)
    return copier.copied


class _Copier:
    def __init__(self, repo: Repository, pool: BlobPool, manifest: Manifest,
                 one_file_system: bool) -> None:  # fmt: skip
        self.repo, self.pool, self.manifest = repo, pool, manifest
        self.one_file_system = one_file_system
        self.copied = Copied(tree=b"")

    def _unread(self, path: bytes, why: str, exc: OSError | None = None) -> None:
        """What could not be read, or (``skipped``, no failure) what vanished before it
        was (a live database removes files as it goes) or lies on another file system."""
        vanished = isinstance(exc, FileNotFoundError)
        listed = self.manifest.skipped if vanished else self.manifest.unread
        listed.append(f"{shown(path)}: {'vanished before it was read' if vanished else why}")

    def root(self) -> Nested[bytes]:
        """The whole of ``/``: its listing is the tree, and its own entry is recorded."""
        st = os.lstat(b"/")
        self.manifest.entries.append(entry_of(b"/", node_from_stat(b"/", st), st))
        tree: bytes = yield self._dir(b"/", st.st_dev)
        return tree

    def tree_for(self, paths: list[bytes], prefix: bytes) -> Nested[bytes]:
        """The tree of directory ``prefix`` ("" for the root), holding only what leads to
        the captured ``paths``."""
        children: dict[bytes, list[bytes]] = {}
        for path in paths:
            children.setdefault(path[len(prefix) + 1 :].split(b"/", 1)[0], []).append(path)
        nodes = []
        for name, below in sorted(children.items()):
            here = prefix + b"/" + name
            if here in below:
                node = yield from self._entry(here, name, None)
            else:
                node = yield from self._entry(here, name, None, leading_to=below)
            if node is not None:
                nodes.append(node)
        return self.repo.save_tree(nodes)

    def _entry(
        self, path: bytes, name: bytes, root_dev: int | None, leading_to: list[bytes] | None = None
    ) -> Nested[Node | None]:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._unread(path, f"cannot be examined ({exc.strerror})", exc)
            return None
        if leading_to is not None and not stat.S_ISDIR(st.st_mode):
            self._unread(path, "is not a directory (a captured path lies below it)")
            return None
        node = node_from_stat(name, st)
        node.xattrs = read_xattrs(path)
        entry = entry_of(path, node, st)
        self.manifest.entries.append(entry)  # before what a directory holds: walk order
        if node.type == "file":
            return self._file(path, node, st, entry)
        if node.type == "symlink":
            try:
                node.target = os.readlink(path)
            except OSError as exc:
                self._unread(path, f"link cannot be read ({exc.strerror})", exc)
                node.target = b"?"  # kept: that a link was there is evidence too
            put_bytes(entry, "target", node.target)
        elif node.type == "dir" and leading_to is not None:
            node.subtree = yield self.tree_for(leading_to, path)
        elif node.type == "dir":
            dev = st.st_dev if root_dev is None else root_dev
            node.subtree = yield self._dir(
                path, dev, skip=self.one_file_system and st.st_dev != dev
            )
        return node

    def _dir(self, path: bytes, root_dev: int, skip: bool = False) -> Nested[bytes]:
        self.copied.dirs += 1
        names: list[bytes] = []
        if skip:
            self.manifest.skipped.append(f"{shown(path)}: another file system, not entered")
        else:
            try:
                fd = _open(path, os.O_DIRECTORY)
                try:
                    names = sorted(os.fsencode(e.name) for e in os.scandir(fd))
                finally:
                    os.close(fd)
            except OSError as exc:
                self._unread(path, f"cannot be listed ({exc.strerror}); stored empty", exc)
        nodes = []
        for name in names:
            child = path.rstrip(b"/") + b"/" + name
            node = yield from self._entry(child, name, root_dev)
            if node is not None:
                nodes.append(node)
        return self.repo.save_tree(nodes)

    def _file(self, path: bytes, node: Node, st: os.stat_result, entry: dict[str, object]) -> Node:
        """Read and store the file once, hashing the bytes stored. One that cannot be read
        stays in the tree, empty, and its entry says so: that it was there is evidence."""
        try:
            fd = _open(path)
            with io.FileIO(fd, "rb") as f:
                stored = store_stream(self.repo, self.pool, f)
                after = os.fstat(f.fileno())
        except OSError as exc:
            self._unread(path, f"cannot be read ({exc.strerror})", exc)
            entry["vanished" if isinstance(exc, FileNotFoundError) else "unread"] = True
            node.content, node.size = [], 0
            entry["size"] = 0
            return node
        node.content, node.size = stored.blobs, stored.size
        entry["sha256"], entry["size"] = stored.sha256, stored.size
        before = (st.st_ino, st.st_size, st.st_mtime_ns)
        if (after.st_ino, after.st_size, after.st_mtime_ns) != before or stored.size != st.st_size:
            entry["changed_while_read"] = True
            self.copied.changed += 1
        self.copied.files += 1
        self.copied.bytes += stored.size
        return node


def _open(path: bytes, extra: int = 0) -> int:
    """The file (or directory), never through a symlink, without touching its access time
    where the kernel lets us (O_NOATIME needs the file's owner, or root)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | extra
    try:
        return os.open(path, flags | NOATIME)
    except PermissionError:
        if not NOATIME:
            raise
        return os.open(path, flags)

"""What the sources that are not a file tree share (command output, etcd, git, images):
a stream stored as one file of a snapshot, files put into a tree by their paths, the
snapshot saved with its summary, and a stored file read back.

A stream is cut with the content-defined chunker as it arrives and its chunks are
stored on worker threads (a ``BlobPool``), so it is never held whole in memory; its
SHA-256 is taken on the way, for the sources whose own format names content by it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from drplan import __version__, clock
from drplan.repo.blob_pool import BlobPool
from drplan.repo.chunker import Chunker
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot, Summary
from drplan.repo.tree import Node


@dataclass
class Stored:
    """A stream as the repository holds it: its chunks' ids, its size and its SHA-256."""

    blobs: list[bytes]
    size: int
    sha256: str


def fixed_blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while block := stream.read(size):
        yield block


def store_stream(
    repo: Repository, pool: BlobPool, stream: BinaryIO, block_size: int | None = None
) -> Stored:
    """Store ``stream`` to its end (the caller's ``pool`` writes the chunks): cut by
    content, or in blocks of ``block_size`` for a file whose changes never move what
    follows them (a database's pages), where fixed blocks find every unchanged page."""
    digest = hashlib.sha256()
    futures, size = [], 0
    cuts = (Chunker(repo.config.chunker).chunks(stream) if block_size is None
            else fixed_blocks(stream, block_size))  # fmt: skip
    for chunk in cuts:
        data = bytes(chunk)
        digest.update(data)
        futures.append(pool.save(data))
        size += len(data)
    return Stored([f.result() for f in futures], size, digest.hexdigest())


def file_node(name: str, stored: Stored, mode: int = 0o600) -> Node:
    return Node(
        name=os.fsencode(name), type="file", mode=mode, uid=os.getuid(), gid=os.getgid(),
        mtime_ns=time.time_ns(), size=stored.size, content=stored.blobs,
    )  # fmt: skip


@dataclass
class TreeBuilder:
    """Files added by their path (``a/b/c``); ``save`` writes the directories, deepest first."""

    files: dict[tuple[str, ...], Node] = field(default_factory=dict)

    def add(self, path: str, stored: Stored | Node, mode: int = 0o600) -> None:
        parts = tuple(p for p in path.split("/") if p)
        node = stored if isinstance(stored, Node) else file_node(parts[-1], stored, mode)
        node.name = os.fsencode(parts[-1])
        self.files[parts] = node

    def save(self, repo: Repository) -> tuple[bytes, int]:
        """The root tree's id, and how many directories it holds (the root is no directory
        of the source's, as in a files snapshot)."""
        dirs = 0

        def write(prefix: tuple[str, ...]) -> bytes:
            nonlocal dirs
            depth = len(prefix)
            children: dict[str, Node] = {}
            subdirs = sorted(
                {p[depth] for p in self.files if len(p) > depth + 1 and p[:depth] == prefix}
            )
            for name in subdirs:
                subtree = write((*prefix, name))
                children[name] = Node(
                    name=os.fsencode(name), type="dir", mode=0o700, uid=os.getuid(),
                    gid=os.getgid(), mtime_ns=time.time_ns(), subtree=subtree,
                )  # fmt: skip
            for path, node in self.files.items():
                if len(path) == depth + 1 and path[:depth] == prefix:
                    children[path[-1]] = node
            dirs += 1
            return repo.save_tree([children[n] for n in sorted(children)])

        return write(()), dirs - 1


@dataclass
class Run:
    """One backup of a source, measured: what the repository gained while it ran."""

    repo: Repository
    started: float = field(default_factory=time.monotonic)
    start_time: datetime = field(default_factory=clock.now)
    added_before: int = 0
    stored_before: int = 0

    def __post_init__(self) -> None:
        self.added_before = self.repo.stats.bytes_added
        self.stored_before = self.repo.stats.bytes_stored

    def save(
        self,
        tree: TreeBuilder,
        *,
        system: str,
        job: str | None,
        tags: Iterable[str],
        source: dict[str, Any],
        bytes_read: int,
        files_new: int,
        files_unchanged: int = 0,
        host: str | None = None,
        parent: str | None = None,
        errors: list[str] | None = None,
    ) -> Snapshot:
        """Write the tree, then the snapshot: the backup exists from this moment on."""
        root, dirs = tree.save(self.repo)
        stats = self.repo.stats
        summary = Summary(
            files_new=files_new, files_unchanged=files_unchanged, dirs=dirs,
            bytes_total=sum(n.size for n in tree.files.values()), bytes_read=bytes_read,
            bytes_added=stats.bytes_added - self.added_before,
            bytes_stored=stats.bytes_stored - self.stored_before,
            duration_seconds=round(time.monotonic() - self.started, 3), errors=errors or [],
        )  # fmt: skip
        snapshot = Snapshot(
            time=self.start_time, tree=root, paths=[f"{source['kind']}:{system}"],
            host=host or socket.gethostname(), user=getpass.getuser(), tags=sorted(set(tags)),
            job=job, system=system, parent=parent, source=source, summary=summary,
            program=f"drplan {__version__}",
        )  # fmt: skip
        self.repo.save_snapshot(snapshot)
        return snapshot


def newest_of(repo: Repository, system: str, kind: str) -> Snapshot | None:
    """The system's newest readable snapshot of this source kind."""
    mine = [
        s
        for s in repo.readable_snapshots()[0]
        if s.system == system and s.source.get("kind") == kind
    ]
    return max(mine, key=lambda s: s.time) if mine else None


def files_of(repo: Repository, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every file of a tree, with its path (``a/b/c``)."""
    for node in repo.load_tree(tree_id):
        path = prefix + os.fsdecode(node.name)
        if node.type == "dir" and node.subtree is not None:
            yield from files_of(repo, node.subtree, path + "/")
        elif node.type == "file":
            yield path, node


def read_stored(repo: Repository, node: Node) -> Iterator[bytes]:
    """A stored file's content, chunk by chunk (each checked against its id on the way)."""
    for blob in node.content:
        yield repo.read_blob(blob)

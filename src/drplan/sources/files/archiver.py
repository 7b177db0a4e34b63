"""Backing up files: walk, detect what changed since the parent snapshot, store the rest, write a snapshot.

The walk runs in the calling thread; file contents are read, chunked, hashed,
compressed and sealed by a pool of worker threads (the compiled libraries release
the GIL). Memory is bounded by the number of workers: each holds at most one chunk
and one open pack. Files that vanish or cannot be read are reported, not fatal;
a file that changes while it is read is saved as read and reported.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from drplan import __version__, clock
from drplan.errors import IntegrityError, SourceError
from drplan.nesting import Nested, run_nested
from drplan.progress import Progress
from drplan.repo.chunker import Chunker
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot, Summary
from drplan.repo.tree import Node
from drplan.sources.files.excludes import Excludes
from drplan.sources.files.metadata import node_from_stat, read_xattrs
from drplan.sources.files.scanner import scanning_ahead

T = TypeVar("T")
IN_FLIGHT_PER_WORKER = 256
STAT_THREADS = 4
BATCH_FILES = 32  # small files per worker task
BATCH_BYTES = 4 * 1024 * 1024
STAT_PARALLEL_FROM = 32  # entries in a directory before its lstats go in parallel


@dataclass
class BackupOptions:
    paths: list[str]
    excludes: list[str] = field(default_factory=list)
    one_file_system: bool = False
    tags: list[str] = field(default_factory=list)
    host: str = field(default_factory=socket.gethostname)
    job: str | None = None
    system: str | None = None
    parent: Snapshot | None = None
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    compression_level: int | None = None


@dataclass
class BackupResult:
    snapshot: Snapshot
    warnings: list[str]


class _Archiver:
    def __init__(
        self, repo: Repository, options: BackupOptions, progress: Progress, scan_ahead: bool
    ) -> None:
        self.repo = repo
        self.options = options
        self.progress = progress
        self.scan_ahead = scan_ahead  # count what there is to do, for a progress shown
        self.excludes = Excludes(options.excludes)
        self.summary = Summary()
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(
            max_workers=options.workers, thread_name_prefix="drplan-backup"
        )
        # Bounds how far the walk runs ahead of the workers, so memory does not grow with the tree.
        self._slots = threading.BoundedSemaphore(options.workers * IN_FLIGHT_PER_WORKER)
        self._stat_pool = ThreadPoolExecutor(
            max_workers=STAT_THREADS, thread_name_prefix="drplan-stat"
        )
        self._unchanged_files = 0
        self._unchanged_bytes = 0

    # -- helpers ----------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)

    def _count(self, attr: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self.summary, attr, getattr(self.summary, attr) + amount)

    def _chunker(self) -> Chunker:
        chunker: Chunker | None = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = self._local.chunker = Chunker(self.repo.config.chunker)
        return chunker

    def _parent_listing(self, tree_id: bytes | None) -> Listing:
        if tree_id is None:
            return {}
        try:
            return self.repo.load_listing(tree_id)
        except Exception:  # a damaged parent only costs re-reading files
            return {}

    # -- files ------------------------------------------------------------------------------

    def _unchanged_file(self, st: os.stat_result, old: dict[str, Any]) -> _Kept | None:
        """The parent's entry, if the file is the one it describes and its blobs are all stored.

        The same inode with the same size, mtime and ctime: any write, chmod, chown,
        new link or extended attribute change moves the ctime, which no user can set
        back. (Owner names are kept as recorded.) Such a file is not read, and its
        entry is kept as stored. Runs in the walking thread only, so the counters need
        no lock; they join the summary at the end.
        """
        if (
            old.get("type") != "file"
            or old.get("size") != st.st_size
            or old.get("mtime_ns") != st.st_mtime_ns
            or old.get("ctime_ns") != st.st_ctime_ns
            or old.get("inode") != st.st_ino
            or old.get("device") != st.st_dev
            or old.get("links") != st.st_nlink
            or old.get("mode") != stat.S_IMODE(st.st_mode)
            or old.get("uid") != st.st_uid
            or old.get("gid") != st.st_gid
        ):
            return None
        try:
            node = Node.from_json(old)
        except IntegrityError:
            return None  # a damaged parent entry costs reading the file again, nothing more
        if not self.repo.has_all(node.content):
            return None
        self._unchanged_files += 1
        self._unchanged_bytes += st.st_size
        self.progress.done(1, st.st_size)
        return _Kept(old, node)

    def _file(self, path: bytes, node: Node, was_file: bool) -> Node | None:
        display = os.fsdecode(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0))
        except PermissionError:
            fd = -1
        except FileNotFoundError:
            self._warn(f"{display}: vanished before it was read; not in the snapshot")
            return None
        if fd == -1:  # O_NOATIME needs ownership; retry without it
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                self._warn(f"{display}: cannot be read ({exc.strerror}); not in the snapshot")
                return None
        # The walk's lstat is the "before": a file that changes between the walk and the end
        # of the read (or is swapped for another) is reported, and keeps the walk's times,
        # so the next backup reads it again.
        try:
            with io.FileIO(fd, "rb") as f:
                content, size = self._store_content(f, node.size)
                after = os.fstat(f.fileno())
        except OSError as exc:
            self._warn(f"{display}: read failed ({exc.strerror}); not in the snapshot")
            return None
        if (after.st_mtime_ns, after.st_size, after.st_ino) != (
            node.mtime_ns,
            node.size,
            node.inode,
        ) or size != node.size:
            self._warn(f"{display}: changed while it was read; saved as read")
        node.content, node.size = content, size
        with self._lock:
            if was_file:
                self.summary.files_changed += 1
            else:
                self.summary.files_new += 1
            self.summary.bytes_read += size
            self.summary.bytes_total += size
        small = size <= self.repo.config.chunker.min_size
        self.progress.done(1, size if small else 0, display)
        return node

    def _store_content(self, f: io.FileIO, expected: int) -> tuple[list[bytes], int]:
        params = self.repo.config.chunker
        content: list[bytes] = []
        size = 0
        if expected <= params.min_size:
            data = f.read(params.min_size + 1) or b""
            if len(data) <= params.min_size:
                if data:
                    content.append(self.repo.save_blob(DATA, data)[0])
                return content, len(data)  # progress counts it with the file, in one update
            f.seek(0)  # grew meanwhile: chunk it
        for chunk in self._chunker().chunks(f):
            content.append(self.repo.save_blob(DATA, chunk)[0])
            size += len(chunk)
            self.progress.done(0, len(chunk))
        return content, size

    # -- directories ------------------------------------------------------------------------

    def _entry(
        self,
        path: bytes,
        name: bytes,
        parent: Listing,
        root_dev: int,
        prefetched: os.stat_result | OSError | None = None,
        batch: _Batch | None = None,
    ) -> Nested[Pending | None]:
        """The entry at ``path``, stored or submitted; a directory's listing is worked out
        first (yielded: see ``drplan.nesting``, trees go deeper than the call stack)."""
        try:
            if isinstance(prefetched, OSError):
                raise prefetched
            st = prefetched or os.lstat(path)
        except FileNotFoundError:
            self._warn(f"{os.fsdecode(path)}: vanished during the backup; not in the snapshot")
            return None
        except OSError as exc:
            self._warn(
                f"{os.fsdecode(path)}: cannot be examined ({exc.strerror}); not in the snapshot"
            )
            return None
        old = parent.get(name)
        if old is not None and stat.S_ISREG(st.st_mode):
            kept = self._unchanged_file(st, old)  # in this thread: a pool round trip costs more
            if kept is not None:
                return kept
        node = node_from_stat(name, st)
        node.xattrs = read_xattrs(path)
        if node.type == "file":
            was_file = old is not None and old.get("type") == "file"
            if batch is not None and node.size <= self.repo.config.chunker.min_size:
                batch.add(path, node, was_file)
                return self._submit_batch(batch) if batch.full else None
            return self._submit(self._file, path, node, was_file)
        if node.type == "dir":
            crosses = self.options.one_file_system and st.st_dev != root_dev
            node.subtree = yield self._dir(path, _subtree_of(old), root_dev, skip=crosses)
        elif node.type == "symlink":
            try:
                node.target = os.readlink(path)
            except OSError as exc:
                self._warn(f"{os.fsdecode(path)}: link cannot be read ({exc.strerror})")
                return None
        if old is not None and node.to_json() == old:
            return _Kept(old, node)  # a directory only when nothing below it changed either
        return node

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        self._slots.acquire()
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _submit_batch(self, batch: _Batch) -> Future[list[Node | None]]:
        """Small files go to the workers in batches: one task per dozens of files, not one each."""
        items, batch.items, batch.size = batch.items, [], 0
        return self._submit(self._files, items)

    def _files(self, items: list[tuple[bytes, Node, bool]]) -> list[Node | None]:
        return [self._file(path, node, was_file) for path, node, was_file in items]

    def _lstat_all(self, paths: list[bytes]) -> list[os.stat_result | OSError]:
        """lstat of every entry of a directory, in parallel slices when there are many.

        Uncached metadata is a disk read per entry; a few in flight at once hide most of
        the latency, and slicing keeps the overhead low when the cache already has it.
        """
        if len(paths) < STAT_PARALLEL_FROM:
            return [_lstat(p) for p in paths]
        size = -(-len(paths) // STAT_THREADS)
        slices = [paths[i : i + size] for i in range(0, len(paths), size)]
        return [st for part in self._stat_pool.map(_lstat_slice, slices) for st in part]

    def _dir(
        self, path: bytes, parent_tree: bytes | None, root_dev: int, skip: bool = False
    ) -> Nested[bytes]:
        self._count("dirs")
        parent = self._parent_listing(parent_tree)
        pending: list[Pending] = []
        if not skip:
            try:
                names = sorted(entry.name for entry in os.scandir(path))
            except OSError as exc:
                self._warn(
                    f"{os.fsdecode(path)}: directory cannot be listed ({exc.strerror}); saved empty"
                )
                names = []
            joined = [(name, path + b"/" + name if path != b"/" else b"/" + name) for name in names]
            children = [
                (name, child) for name, child in joined if not self.excludes.excluded(child, name)
            ]
            stats = self._lstat_all([child for _, child in children])
            batch = _Batch()
            for (name, child), st in zip(children, stats, strict=True):
                result = yield from self._entry(child, name, parent, root_dev, st, batch)
                if result is not None:
                    pending.append(result)
            if batch.items:
                pending.append(self._submit_batch(batch))
        done = _flatten(pending)
        if (
            parent_tree is not None
            and len(done) == len(parent)
            and all(type(entry) is _Kept for entry in done)
        ):
            return parent_tree  # nothing changed in or below it: the parent's listing is this one
        return self._save_tree(done)

    def _save_tree(self, entries: list[Node | _Kept]) -> bytes:
        return self.repo.save_tree([e.node if isinstance(e, _Kept) else e for e in entries])

    # -- the whole backup -------------------------------------------------------------------

    def run(self) -> Snapshot:
        started = time.monotonic()
        start_time = clock.now()
        paths = sorted({os.path.abspath(p) for p in self.options.paths})
        _refuse_when_nothing_exists(paths)
        parent_root = self.options.parent.tree if self.options.parent else None
        ahead = (
            scanning_ahead(paths, self.excludes, self.options.one_file_system, self.progress)
            if self.scan_ahead
            else contextlib.nullcontext()
        )
        with ahead:  # until the last file is read, not only walked: the ETA matters to the end
            try:
                root = run_nested(self._tree_for(paths, b"/", parent_root))
            finally:
                self._pool.shutdown(wait=True)
                self._stat_pool.shutdown(wait=True)
        stats = self.repo.stats
        self.summary.files_unchanged += self._unchanged_files
        self.summary.bytes_total += self._unchanged_bytes
        self.summary.bytes_added = stats.bytes_added
        self.summary.bytes_stored = stats.bytes_stored
        self.summary.errors = list(self.warnings)
        snapshot = Snapshot(
            time=start_time,
            tree=root,
            paths=paths,
            host=self.options.host,
            user=getpass.getuser(),
            tags=sorted(set(self.options.tags)),
            job=self.options.job,
            system=self.options.system,
            parent=self.options.parent.id if self.options.parent else None,
            summary=self.summary,
            program=f"drplan {__version__}",
        )
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        self.repo.save_snapshot(snapshot)
        return snapshot

    def _tree_for(
        self, paths: list[str], prefix: bytes, parent_tree: bytes | None
    ) -> Nested[bytes]:
        """The tree of directory ``prefix``, holding only what leads to the backed-up paths."""
        parent = self._parent_listing(parent_tree)
        children: dict[bytes, list[str]] = {}
        for p in paths:
            rest = os.fsencode(p)[len(prefix) :].lstrip(b"/")
            children.setdefault(rest.split(b"/", 1)[0], []).append(p)
        nodes: list[Pending] = []
        for name, below in sorted(children.items()):
            here = os.path.join(prefix, name)
            if any(os.fsencode(p) == here for p in below):
                try:
                    root_dev = os.lstat(here).st_dev
                except OSError as exc:
                    self._warn(f"{os.fsdecode(here)}: cannot be backed up ({exc.strerror})")
                    continue
                result = yield from self._entry(here, name, parent, root_dev)
            else:
                result = yield from self._intermediate(here, name, below, parent)
            if result is not None:
                nodes.append(result)
        return self._save_tree(_flatten(nodes))

    def _intermediate(
        self, path: bytes, name: bytes, paths: list[str], parent: Listing
    ) -> Nested[Node | None]:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._warn(f"{os.fsdecode(path)}: cannot be examined ({exc.strerror})")
            return None
        if not stat.S_ISDIR(st.st_mode):
            self._warn(f"{os.fsdecode(path)}: is not a directory")
            return None
        node = node_from_stat(name, st)
        node.subtree = yield self._tree_for(paths, path, _subtree_of(parent.get(name)))
        return node


def _refuse_when_nothing_exists(paths: list[str]) -> None:
    """Fail, saving nothing, when not one path can be examined: an empty snapshot would
    pass for a backup (and keep a vanished source looking backed up) while holding nothing.
    With some paths there, the others are warnings and the snapshot is partial."""
    problems = []
    for path in paths:
        try:
            os.lstat(path)
            return
        except OSError as exc:
            problems.append(f"{path} ({exc.strerror})")
    raise SourceError(
        f"nothing was backed up: no path can be read: {', '.join(problems)}",
        hint="check the paths (the system's `paths` in the plan); nothing was saved",
    )


class _Kept(NamedTuple):
    """An entry unchanged since the parent snapshot, still as the parent stored it (and
    as a node, checked by ``Node.from_json`` like any stored tree's)."""

    raw: dict[str, Any]
    node: Node


Listing = dict[bytes, dict[str, Any]]  # a parent directory's entries by name, as stored
Pending = Node | _Kept | Future[Node | None] | Future[list[Node | None]]


@dataclass
class _Batch:
    """Small files of one directory waiting to go to a worker together."""

    items: list[tuple[bytes, Node, bool]] = field(default_factory=list)
    size: int = 0

    def add(self, path: bytes, node: Node, was_file: bool) -> None:
        self.items.append((path, node, was_file))
        self.size += node.size

    @property
    def full(self) -> bool:
        return len(self.items) >= BATCH_FILES or self.size >= BATCH_BYTES


def _subtree_of(old: dict[str, Any] | None) -> bytes | None:
    """The parent's tree of a directory entry, to compare the directory's contents with."""
    if old is None or old.get("type") != "dir":
        return None
    try:
        return bytes.fromhex(old["subtree"])
    except (KeyError, TypeError, ValueError):
        return None


def _flatten(pending: list[Pending]) -> list[Node | _Kept]:
    out: list[Node | _Kept] = []
    for item in pending:
        result = item.result() if isinstance(item, Future) else item
        if isinstance(result, list):
            out.extend(n for n in result if n is not None)
        elif result is not None:
            out.append(result)
    return out


def _lstat(path: bytes) -> os.stat_result | OSError:
    try:
        return os.lstat(path)
    except OSError as exc:
        return exc


def _lstat_slice(paths: list[bytes]) -> list[os.stat_result | OSError]:
    return [_lstat(p) for p in paths]


def backup_files(
    repo: Repository, options: BackupOptions, progress: Progress | None = None
) -> BackupResult:
    """Back up ``options.paths`` into ``repo`` and write the snapshot (the caller holds a lock).

    With ``progress``, files and bytes are counted into it as they are backed up, and a
    scan running ahead (``scanner``) counts what there is to back up."""
    if options.compression_level is not None:
        repo.compression_level = options.compression_level
    archiver = _Archiver(repo, options, progress or Progress(), scan_ahead=progress is not None)
    snapshot = archiver.run()
    return BackupResult(snapshot, archiver.warnings)


def find_parent(repo: Repository, paths: list[str], host: str, job: str | None) -> Snapshot | None:
    """The newest snapshot of the same paths from the same host (and job), for change detection."""
    wanted = sorted({os.path.abspath(p) for p in paths})
    candidates = [
        s
        for s in repo.snapshots()
        if s.paths == wanted and s.host == host and (job is None or s.job == job)
    ]
    return candidates[-1] if candidates else None

"""Restoring a file snapshot into a target directory, bit-exact, and never outside it.

Safety: every entry is created relative to an open directory descriptor with
``O_NOFOLLOW``, so no symlink, whether planted in the target or restored from the
snapshot, is ever followed while restoring; tree names that could leave their
directory (``..``, ``/``, NUL) are refused when trees are read. Every blob is
authenticated and its keyed hash checked before a byte of it is written.

Resume: a file whose size and mtime already match is skipped; a partial file is
compared blob by blob (by keyed hash) and only what differs is fetched again.

A full target file system stops the restore with one error: how many files were
restored, which were partly written (kept: the next run resumes them), how much more
the snapshot needs. A file is never left looking complete when it is not: its mtime is
set last, so a partly written file is compared again, not skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from drplan.errors import DrplanError, IntegrityError, UsageError
from drplan.nesting import Nested, run_nested
from drplan.progress import Progress
from drplan.repo.index import Location
from drplan.repo.packcache import PackCache
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.storage import StorageError, TransientError

IS_ROOT = os.geteuid() == 0
OWN_UID, OWN_GID = os.geteuid(), os.getegid()


def _umask() -> int:
    """The process umask, read without changing it (Linux exposes it in /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: always chmod


UMASK = _umask()
SPECIAL_FILES = ("fifo", "chardev", "blockdev")  # made only with RestoreOptions.special_files
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # the target is full (or over its quota)
INCOMPLETE_SHOWN = 5  # partly written files named in the error; the rest counted
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
MAX_OPEN_DIRS = 128
# Blobs up to this size are read through whole cached packs when HOT_PACK_BLOBS or more of
# them come from one pack: one read of 16 MiB beats a thousand of 2 KiB.
SMALL_BLOB = 256 * 1024
HOT_PACK_BLOBS = 8
# The small files of a directory go to one worker as one task. Creating a file takes the
# directory's lock in the kernel: two workers creating in one directory spun on it for
# almost a tenth of the restore's CPU time (perf), and one task per file cost more in
# thread hand-offs than writing the file. Larger files go in batches of up to BATCH_BYTES.
SMALL_FILE = 64 * 1024
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class RestoreOptions:
    target: str
    includes: list[str] = field(default_factory=list)
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    # Device nodes and FIFOs only when asked: a block device node from a snapshot, made
    # as root, would give its (world-writable) permissions on a disk of this host.
    special_files: bool = False


@dataclass
class RestoreResult:
    """Counted as a backup counts (``Summary``): regular files, each name of a hard link;
    directories of the tree backed up, not the parents of its path; bytes of the files."""

    files: int = 0  # in place: written, or already complete (files_skipped)
    files_skipped: int = 0
    dirs: int = 0
    bytes_total: int = 0  # the size of those files
    bytes_written: int = 0
    bytes_verified_in_place: int = 0
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # files not restored: damaged or missing data
    incomplete: list[str] = field(default_factory=list)  # partly written: the target filled up
    skipped_special: list[str] = field(default_factory=list)  # devices, FIFOs, sockets not made


class _Includes:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p.rstrip("/") or "/" for p in patterns]

    def matches(self, path: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(path, p) for p in self.patterns)

    def may_contain(self, directory: str) -> bool:
        """Whether something below ``directory`` could match (compared up to the first glob)."""
        if not self.patterns:
            return True
        for pattern in self.patterns:
            literal = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
            if (
                literal.startswith(directory + "/")
                or directory.startswith(literal.rstrip("/"))
                or not literal
            ):
                return True
        return False


class _Restorer:
    def __init__(
        self, repo: Repository, options: RestoreOptions, progress: Progress | None = None
    ) -> None:
        self.repo = repo
        self.options = options
        self.includes = _Includes(options.includes)
        self.result = RestoreResult()
        self._lock = threading.Lock()
        self._root_fd = -1
        # (device, inode) -> the first file's path below the target, and its write
        self._links: dict[tuple[int, int], tuple[bytes, Future[None]]] = {}
        # Directories whose entries are being written, oldest first; each is finished (its
        # files awaited, its metadata applied, its descriptor closed) in this post-order, so a
        # directory's mtime is set after its children and few descriptors stay open.
        self._open: deque[tuple[int, Node | None, list[Future[None]]]] = deque()
        self._pool = ThreadPoolExecutor(
            max_workers=options.workers, thread_name_prefix="drplan-restore"
        )
        self._roots: list[str] = []  # the paths backed up: directories below them are counted
        self.progress = progress
        self.planned_files = self.planned_bytes = 0  # what the restore is to write (needed())
        self._full: OSError | None = None  # set when the target filled up: the rest is skipped
        # Set when the location stopped answering (past its retries): the rest is skipped too.
        self._unreachable: TransientError | None = None

    def _warn(self, message: str) -> None:
        with self._lock:
            self.result.warnings.append(message)

    def needed(self, tree: bytes) -> Iterator[Location]:
        """Where each blob of file contents this restore reads is (repeats included)."""
        lookup = self.repo.index.lookup
        stack = [(tree, "", False)]
        while stack:
            tree_id, path, matched = stack.pop()
            # Trees as decoded JSON, not nodes: this pass runs before the first file is
            # written, so it is all waiting time. The restore itself validates every entry.
            # Damage is skipped here: the restore itself reports it where it is.
            with contextlib.suppress(IntegrityError, StorageError, TypeError, ValueError):
                for name, entry in self.repo.load_listing(tree_id).items():
                    child = f"{path}/{os.fsdecode(name)}"
                    here = matched or self.includes.matches(child)
                    subtree = entry.get("subtree")
                    if subtree and (here or self.includes.may_contain(child)):
                        stack.append((bytes.fromhex(subtree), child, here))
                    elif here and entry.get("type") == "file":
                        self.planned_files += 1
                        self.planned_bytes += int(entry.get("size") or 0)
                        if self.progress is not None:
                            self.progress.found(1, int(entry.get("size") or 0))
                        for blob in entry.get("content") or ():
                            where = lookup(bytes.fromhex(blob))
                            if where is not None:
                                yield where

    def _hot_packs(self, tree: bytes) -> set[str]:
        """Packs from which the restore needs many small blobs: worth reading whole."""
        counts = Counter(
            where.pack.id for where in self.needed(tree) if where.entry.stored_length <= SMALL_BLOB
        )
        return {pack for pack, n in counts.items() if n >= HOT_PACK_BLOBS}

    def run(self, snapshot: Snapshot) -> RestoreResult:
        # Command and PostgreSQL snapshots name no file-system path: all of the tree is theirs.
        self._roots = [p.rstrip("/") for p in snapshot.paths if p.startswith("/")]
        self.repo.pack_cache = PackCache(
            self.repo.storage, self._hot_packs(snapshot.tree), self.options.workers + 2
        )
        if self.progress is not None:
            self.progress.totals_complete()
        os.makedirs(self.options.target, exist_ok=True)
        self._root_fd = os.open(self.options.target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            run_nested(self._dir(self._root_fd, snapshot.tree, "", b"", matched=False))
            while self._open:
                self._finish_oldest()
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            self._full = self._full or exc  # a directory, or its metadata, could not be made
        finally:
            self._pool.shutdown(wait=True)
            self.repo.pack_cache = None
            for fd, _, _ in self._open:
                if fd != self._root_fd:
                    os.close(fd)
            os.close(self._root_fd)
        if self._full is not None:
            raise self._target_full(self._full)
        if self._unreachable is not None:
            raise TransientError(
                f"restore into {self.options.target} stopped: {self._unreachable.message}",
                hint="once the location answers again, run the same restore: it resumes,"
                " checking what is already written",
            )
        return self.result

    def _target_full(self, exc: OSError) -> DrplanError:
        result = self.result
        partly = result.incomplete[:INCOMPLETE_SHOWN]
        more = len(result.incomplete) - len(partly)
        named = ", ".join(partly) + (f" and {more} more" if more else "")
        left = max(0, self.planned_bytes - result.bytes_total)
        return DrplanError(
            f"restore into {self.options.target} stopped: its file system is full"
            f" ({exc.strerror}); {result.files} of {self.planned_files} file(s) restored,"
            + (f" {len(result.incomplete)} partly written (kept, to resume): {named}"
               if result.incomplete else " none partly written")
            + f"; {_mib(left)} of the snapshot's files still to write",
            hint="free space there and run the same restore again: it resumes, checking"
            " what is already written",
        )  # fmt: skip

    def _no_space(self, exc: OSError, display: str | None) -> None:
        """The target is full: say which file it cut short, and restore nothing more."""
        with self._lock:
            if display is not None:
                self.result.incomplete.append(display)
            self._full = self._full or exc

    def _finish_oldest(self) -> None:
        fd, node, futures = self._open.popleft()
        try:
            for future in futures:
                future.result()
            if node is not None:
                self._metadata(fd, node)
        finally:
            if fd != self._root_fd:
                os.close(fd)

    def _dir(
        self,
        dir_fd: int,
        tree_id: bytes,
        path: str,
        rel: bytes,
        matched: bool,
        node: Node | None = None,
        fresh: bool = False,
    ) -> Nested[None]:
        """Restore a directory's entries; its subdirectories' are yielded (``drplan.nesting``:
        a tree may be nested deeper than the call stack)."""
        files = _DirFiles(self, dir_fd, fresh)
        for child_node in self.repo.load_tree(tree_id):
            if self._full is not None:
                break  # the target is full: the error says what was restored
            name = child_node.name
            child = f"{path}/{os.fsdecode(name)}"
            child_rel = rel + b"/" + name if rel else name
            here = matched or self.includes.matches(child)
            if child_node.type == "dir":
                if not (here or self.includes.may_contain(child)):
                    continue
                made = self._make_dir(dir_fd, name, child)
                if made is None:
                    continue
                fd, created = made
                assert child_node.subtree is not None
                if here and self._backed_up(child):
                    self.result.dirs += 1
                meta = child_node if here else None
                yield self._dir(fd, child_node.subtree, child, child_rel, here, meta, created)
            elif here and child_node.type == "file":
                files.add(child_node, child, child_rel)
            elif here:
                self._special(dir_fd, child_node, child)
        self._open.append((dir_fd, node, files.submit_rest()))
        while len(self._open) > MAX_OPEN_DIRS:
            self._finish_oldest()

    def _backed_up(self, path: str) -> bool:
        """Whether ``path`` is in the tree backed up, not a parent of it made to hold it."""
        if not self._roots:
            return True
        return any(path == root or path.startswith(root + "/") for root in self._roots)

    def _make_dir(self, dir_fd: int, name: bytes, display: str) -> tuple[int, bool] | None:
        """An open descriptor of the directory, and whether this restore created it (empty)."""
        fresh = True
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            fresh = False
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(dir_fd, name)
                os.mkdir(name, 0o700, dir_fd=dir_fd)
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dir_fd), fresh
        except OSError as exc:
            self._warn(f"{display}: cannot open directory ({exc.strerror}); skipped")
            return None

    def _remove(self, dir_fd: int, name: bytes) -> None:
        """Remove what is in the way of an entry (never following it, never a directory tree)."""
        try:
            os.unlink(name, dir_fd=dir_fd)
        except IsADirectoryError:
            raise DrplanError(
                f"cannot restore over directory {os.fsdecode(name)!r} with a non-directory",
                hint="restore into an empty target",
            ) from None
        except FileNotFoundError:
            pass

    # -- files --------------------------------------------------------------------------------

    def _files(self, dir_fd: int, batch: list[tuple[Node, str]], fresh: bool) -> None:
        for node, display in batch:
            self._file(dir_fd, node, display, fresh)

    def _file(self, dir_fd: int, node: Node, display: str, fresh: bool = False) -> None:
        """Restore one file; damaged data fails this file only, which is removed and reported.
        A full target, or a location out of reach, stops the restore: this file is kept as far
        as it was written."""
        if self._full is not None or self._unreachable is not None:
            return  # the target is full, or the location out of reach: nothing more is started
        try:
            if fresh:
                self._write_new_file(dir_fd, node, display)
            else:
                self._write_file(dir_fd, node, display)
        except TransientError as exc:  # not damage: this file is kept as far as it was written
            with self._lock:
                self._unreachable = self._unreachable or exc
        except (IntegrityError, StorageError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(node.name, dir_fd=dir_fd)
            with self._lock:
                self.result.failed.append(f"{display}: {exc.message}")
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            self._no_space(exc, display)
        finally:
            if self.progress is not None:
                self.progress.done(1, 0, display)

    def _write_new_file(self, dir_fd: int, node: Node, display: str) -> None:
        """A file in a directory this restore created: nothing to compare, fewest system calls.

        Created with its permission bits, chmod only when the umask cut some of them,
        and, when it is ours anyway, without a chown: open, write, set times, close.
        """
        fd = os.open(
            node.name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            node.mode & 0o777,
            dir_fd=dir_fd,
        )
        try:
            offset = 0
            for blob_id in node.content:
                data = self.repo.read_blob(blob_id)
                _pwrite_all(fd, data, offset)
                offset += len(data)
                self._advanced(len(data))
            if offset != node.size:
                self._warn(f"{display}: restored {offset} bytes, the snapshot recorded {node.size}")
            if IS_ROOT and (node.uid, node.gid) != (OWN_UID, OWN_GID):
                os.fchown(fd, node.uid, node.gid)
            if node.mode & (0o7000 | UMASK):
                os.fchmod(fd, node.mode)  # bits the umask cut, and set-id bits (after the chown)
            self._xattrs(fd, node)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        finally:
            os.close(fd)
        with self._lock:
            self.result.files += 1
            self.result.bytes_total += offset
            self.result.bytes_written += offset

    def _advanced(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.done(0, nbytes)

    def _write_file(self, dir_fd: int, node: Node, display: str) -> None:
        try:
            st = os.stat(node.name, dir_fd=dir_fd, follow_symlinks=False)
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_size == node.size
                and st.st_mtime_ns == node.mtime_ns
            ):
                with self._lock:
                    self.result.files += 1
                    self.result.files_skipped += 1
                    self.result.bytes_total += node.size
                self._advanced(node.size)
                return
            if not stat.S_ISREG(st.st_mode):
                self._remove(dir_fd, node.name)
        except FileNotFoundError:
            pass
        fd = os.open(node.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            existing = os.fstat(fd).st_size
            offset = written = verified = 0
            for blob_id in node.content:
                location = self.repo.index.lookup(blob_id)
                length = location.entry.raw_length if location else -1
                if length > 0 and offset + length <= existing:
                    old = os.pread(fd, length, offset)
                    if self.repo.key.blob_id(old) == blob_id:
                        offset += length
                        verified += length
                        self._advanced(length)
                        continue
                data = self.repo.read_blob(blob_id)
                _pwrite_all(fd, data, offset)
                offset += len(data)
                written += len(data)
                self._advanced(len(data))
            os.ftruncate(fd, offset)
            if offset != node.size:
                self._warn(f"{display}: restored {offset} bytes, the snapshot recorded {node.size}")
            self._metadata(fd, node)
        finally:
            os.close(fd)
        with self._lock:
            self.result.files += 1
            self.result.bytes_total += offset
            self.result.bytes_written += written
            self.result.bytes_verified_in_place += verified

    def _link_when_written(
        self, first: tuple[bytes, Future[None]], dir_fd: int, node: Node, display: str
    ) -> Future[None]:
        """Link to the first file of an inode once it is written; the result keeps dir_fd open till then."""
        first_path, written = first
        name, size = node.name, node.size
        done: Future[None] = Future()

        def link(_: Future[None]) -> None:
            try:
                self._hardlink(first_path, dir_fd, name, display, size)
            finally:
                done.set_result(None)

        written.add_done_callback(link)
        return done

    def _hardlink(self, first: bytes, dir_fd: int, name: bytes, display: str, size: int) -> None:
        # `first` runs through directories this restore created and checked with O_NOFOLLOW.
        try:
            self._remove(dir_fd, name)
            os.link(first, name, src_dir_fd=self._root_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                self._no_space(exc, None)
            else:
                self._warn(f"{display}: hard link could not be made ({exc.strerror})")
        else:
            with self._lock:  # another name of a file: counted as a backup counts it
                self.result.files += 1
                self.result.bytes_total += size
        finally:
            if self.progress is not None:
                self.progress.done(1, size, display)

    def _metadata(self, fd: int, node: Node) -> None:
        if IS_ROOT:
            os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, node.mode)
        self._xattrs(fd, node)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))

    def _xattrs(self, fd: int, node: Node) -> None:
        for xname, value in node.xattrs:
            try:
                os.setxattr(fd, xname, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    # -- everything else --------------------------------------------------------------------

    def _special(self, dir_fd: int, node: Node, display: str) -> None:
        name = node.name
        if node.type == "socket" or (node.type in SPECIAL_FILES and not self.options.special_files):
            with self._lock:  # sockets belong to the process that made them: never made
                self.result.skipped_special.append(f"{display} ({node.type})")
            return
        self._remove(dir_fd, name)
        try:
            if node.type == "symlink":
                assert node.target is not None
                os.symlink(node.target, name, dir_fd=dir_fd)
            elif node.type == "fifo":
                os.mkfifo(name, node.mode, dir_fd=dir_fd)
            elif node.type in ("chardev", "blockdev"):
                if not IS_ROOT:
                    self._warn(f"{display}: device nodes can only be restored by root; skipped")
                    return
                kind = stat.S_IFCHR if node.type == "chardev" else stat.S_IFBLK
                os.mknod(name, kind | node.mode, node.rdev, dir_fd=dir_fd)
            else:
                return
            if IS_ROOT:
                os.chown(name, node.uid, node.gid, dir_fd=dir_fd, follow_symlinks=False)
            if node.type != "symlink":
                os.chmod(name, node.mode, dir_fd=dir_fd)
            os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                self._no_space(exc, None)
            else:
                self._warn(f"{display}: could not be restored ({exc.strerror})")


class _DirFiles:
    """The files of one directory, grouped into worker tasks (see SMALL_FILE)."""

    def __init__(self, restorer: _Restorer, dir_fd: int, fresh: bool) -> None:
        self.restorer, self.dir_fd, self.fresh = restorer, dir_fd, fresh
        self.futures: list[Future[None]] = []
        self.small: list[tuple[Node, str]] = []
        self.batch: list[tuple[Node, str]] = []
        self.batch_bytes = 0

    def add(self, node: Node, display: str, rel: bytes) -> None:
        r = self.restorer
        if node.links > 1 and node.inode:
            key = (node.device, node.inode)
            if key in r._links:
                self.futures.append(r._link_when_written(r._links[key], self.dir_fd, node, display))
            else:
                future = r._pool.submit(r._file, self.dir_fd, node, display, self.fresh)
                r._links[key] = (rel, future)  # its other names are linked once it is written
                self.futures.append(future)
        elif node.size <= SMALL_FILE:
            self.small.append((node, display))
        else:
            self.batch.append((node, display))
            self.batch_bytes += node.size
            if self.batch_bytes >= BATCH_BYTES:
                self._submit(self.batch)
                self.batch, self.batch_bytes = [], 0

    def submit_rest(self) -> list[Future[None]]:
        for files in (self.small, self.batch):
            if files:
                self._submit(files)
        return self.futures

    def _submit(self, files: list[tuple[Node, str]]) -> None:
        r = self.restorer
        self.futures.append(r._pool.submit(r._files, self.dir_fd, files, self.fresh))


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``: a file system filling up writes part of it and
    says so only on the next write (ENOSPC), which this makes."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def packs_needed(repo: Repository, snapshot: Snapshot, includes: list[str]) -> set[str]:
    """The packs a restore of ``snapshot`` (limited to ``includes``) reads file data from."""
    restorer = _Restorer(repo, RestoreOptions(target="", includes=includes))
    return {where.pack.id for where in restorer.needed(snapshot.tree)}


def restore_files(
    repo: Repository,
    snapshot: Snapshot,
    options: RestoreOptions,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore ``snapshot`` (or the part matching ``options.includes``) under ``options.target``;
    ``progress`` counts files and bytes of what it restores, all known before the first."""
    refuse_target(options.target)
    return _Restorer(repo, options, progress).run(snapshot)


def refuse_target(target: str) -> None:
    """Fail, before anything is read or written, when ``target`` cannot be the directory a
    restore goes into: it is a file, or something on its way is."""
    path = os.path.abspath(target)
    while True:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(path)
            if parent == path:
                return
            path = parent  # created by the restore: what matters is what exists above it
            continue
        except OSError as exc:
            raise UsageError(
                f"cannot restore into {target}: {path} cannot be examined ({exc.strerror})",
                hint="choose a target directory you may write to",
            ) from None
        if stat.S_ISDIR(st.st_mode):
            return
        what = "is a file" if stat.S_ISREG(st.st_mode) else "is not a directory"
        raise UsageError(
            f"cannot restore into {target}: {path} {what}",
            hint="give --target a directory (it is created when missing), or move the file away",
        )

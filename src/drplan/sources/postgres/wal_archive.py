"""The WAL archive inside a repository: one encrypted object per WAL file, found by name.

WAL files are not deduplicated (they hardly ever repeat) nor packed (each must be
fetchable alone, fast, during recovery). Each is stored as a sealed object named
``wal/<system>/<timeline>/<log>/<file name>.<digest>``, where the digest is the
repository's keyed hash of the file: a listing alone tells whether a file is archived
and whether what is archived under that name is the same file, so pushing twice is
cheap and a different file under a stored name is caught without reading anything
back. ``<log>`` is the second eight digits of a segment's name (history files have
none): a local location lists a whole directory to find one file, and this bounds a
directory to 256 segments (with 16 MiB segments), where one per timeline would grow
by 86,400 a day on a server writing a segment a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from drplan.errors import DrplanError, IntegrityError, WalConflictError
from drplan.repo.objectlock import delete_unless_locked, wall_now
from drplan.repo.objects import open_object, seal_object
from drplan.repo.repository import Repository
from drplan.storage import NotFound, ObjectInfo, PermissionDenied, StorageError

WAL_PREFIX = "wal/"
DIGEST_HEX = 32  # 128 bits of the keyed BLAKE3 hash: collisions are not a concern
WAL_LEVEL = 1  # zstd level: WAL compresses well even at 1, and pushing must keep up
# zstd's fast mode, for an archiver that has fallen behind (see wal_agent): on pgbench WAL
# it compressed 16 MiB in half the time of level 1, to 10.5% of it instead of 5.5%.
CATCH_UP_LEVEL = -3
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
# Also history files, backup history files and partial segments (from pg_receivewal).
WAL_FILE = re.compile(r"^[0-9A-F]{8}(\.history|[0-9A-F]{16}(\.[0-9A-F]{8}\.backup|\.partial)?)$")


@dataclass(frozen=True)
class ArchivedWal:
    file: str  # the WAL file name, e.g. 000000010000000000000003
    object: str  # its object name in the repository
    size: int  # stored (sealed) size
    mtime: float  # when it was stored

    @property
    def timeline(self) -> int:
        return int(self.file[:8], 16)


def check_name(file: str) -> str:
    if not WAL_FILE.fullmatch(file):
        raise DrplanError(
            f"{file!r} is not the name of a WAL file",
            hint="pass %f (the file name) and %p (its path) as PostgreSQL does",
        )
    return file


def segment_number(file: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The position of a segment in the WAL stream, whatever its timeline."""
    per_id = 0x100000000 // segment_size
    return int(file[8:16], 16) * per_id + int(file[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def lsn_value(lsn: str) -> int:
    """``16/B374D848`` as a number, to compare positions in the WAL."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_segment(lsn: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment number holding ``lsn`` (``X/Y``)."""
    return lsn_value(lsn) // segment_size


class WalArchive:
    """The WAL files of one system in one repository (each system has its own: WAL file
    names of different clusters collide)."""

    def __init__(self, repo: Repository, system: str) -> None:
        self.repo = repo
        self.system = system
        self.prefix = f"{WAL_PREFIX}{system}/"
        # Old partials that stay: under Object Lock (until when), or all of them once the
        # location's credentials refused a delete (an append-only host: forget removes them).
        self._locked: dict[str, datetime] = {}
        self._may_delete = True

    def _digest(self, data: bytes) -> str:
        return self.repo.key.blob_id(data).hex()[:DIGEST_HEX]

    def _object(self, file: str, digest: str = "") -> str:
        """The name ``file`` is stored under (with ``digest``), or its prefix (without)."""
        log = f"{file[8:16]}/" if len(file) >= 24 else ""  # a history file has no log
        return f"{self.prefix}{file[:8]}/{log}{file}.{digest}"

    def _stored(self, file: str) -> list[ObjectInfo]:
        prefix = self._object(file)
        # The prefix also matches longer names (a segment's backup history file):
        # only the digest may follow the file's name.
        return [i for i in self.repo.storage.list(prefix) if "." not in i.name[len(prefix) :]]

    def stored_as(self, file: str) -> list[str]:
        """Object names holding ``file`` (normally none or one)."""
        return [i.name for i in self._stored(file)]

    def push(self, file: str, data: bytes, level: int = WAL_LEVEL) -> bool:
        """Store ``file`` (compressed at zstd ``level``); False when the same file was stored
        already. A different file under the name raises WalConflictError: the archive never
        silently holds two histories."""
        check_name(file)
        if file.endswith(".partial"):
            # Partial segments are replaced, not conflicts: the stream ships one every few
            # seconds, and a promoted standby archives its own for the same segment.
            return self.push_partial(file.removesuffix(".partial"), data, level)
        name = self._object(file, self._digest(data))
        stored = self.stored_as(file)
        if name in stored:
            return False
        if stored:
            raise WalConflictError(
                f"the archive of {self.system} at {self.repo.storage.url} already holds a"
                f" different {file}",
                hint="another cluster (or a restored copy of this one) archives as the same"
                " system: give each its own system in the plan",
            )
        sealed = seal_object(self.repo.key, self.repo.cipher, "wal", data, level)
        self.repo.storage.write(name, sealed)
        return True

    def push_partial(self, segment: str, data: bytes, level: int = WAL_LEVEL) -> bool:
        """Store the segment being written (``pg_receivewal``'s ``.partial``), replacing the
        one stored before; False when it has not changed. The new one is durable before the
        old goes, so a crash leaves one or both, never none. An old one under Object Lock
        stays (a delete would only hide it), as do all on an append-only host: ``fetch``
        takes the newest, and forget removes the others once it may."""
        name = check_name(f"{segment}.partial")
        object_name = self._object(name, self._digest(data))
        stored = self.stored_as(name)
        if object_name in stored:
            return False
        sealed = seal_object(self.repo.key, self.repo.cipher, "wal", data, level)
        self.repo.storage.write(object_name, sealed)
        self._let_go(stored)
        return True

    def _let_go(self, partials: list[str]) -> None:
        now = wall_now()
        for old in partials:
            if not self._may_delete:
                return
            if self._locked.get(old, now) > now:
                continue  # still locked, as found before: not asked again
            try:
                until = delete_unless_locked(self.repo.storage, old, now)
            except PermissionDenied:
                self._may_delete = False
                return
            except StorageError:
                continue  # cleaning up failed, archiving did not: the next push tries again
            if until is not None:
                self._locked[old] = until

    def fetch(self, file: str) -> bytes | None:
        """The file's bytes, None when it is not archived; IntegrityError when damaged. A
        segment archived only while it was being written (its ``.partial``) is returned as
        that: recovery replays what it holds and ends after it."""
        check_name(file)
        stored = self.stored_as(file)
        if not stored and SEGMENT.match(file):
            partials = self._stored(f"{file}.partial")
            if partials:  # the newest, should an old one have outlived its replacement
                stored = [max(partials, key=lambda i: i.mtime).name]
        if not stored:
            return None
        if len(stored) > 1:
            raise IntegrityError(
                f"the archive holds {len(stored)} different copies of {file}",
                hint="two clusters archived to one location; restore from another location",
            )
        try:
            sealed = self.repo.storage.read(stored[0])
        except NotFound:
            return None
        data = open_object(self.repo.key, self.repo.cipher, "wal", sealed, stored[0])
        if self._digest(data) != stored[0].rsplit(".", 1)[1]:
            raise IntegrityError(f"{stored[0]}: its content does not match its name (damaged)")
        return data

    def files(self) -> list[ArchivedWal]:
        """Every archived WAL file, in WAL order (timeline, then position)."""
        found = []
        for info in self.repo.storage.list(self.prefix):
            file = info.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if WAL_FILE.fullmatch(file):
                found.append(ArchivedWal(file, info.name, info.size, info.mtime))
        return sorted(found, key=lambda w: w.file)


@dataclass
class WalReadBack:
    """What reading back every archived WAL file found (``drplan check --read-data``)."""

    files: int = 0
    bytes_read: int = 0
    damaged: list[str] = field(default_factory=list)  # one line each: which, and why


def read_back(repo: Repository) -> WalReadBack:
    """Read every WAL object of every system, authenticate it and hold its content
    against the digest in its name: what ``fetch`` would refuse is found here first."""
    found = WalReadBack()
    for info in repo.storage.list(WAL_PREFIX):
        file, _, digest = info.name.rsplit("/", 1)[-1].rpartition(".")
        if not WAL_FILE.fullmatch(file) or len(digest) != DIGEST_HEX:
            found.damaged.append(f"{info.name}: not the name of an archived WAL file")
            continue
        try:
            sealed = repo.storage.read(info.name)
        except NotFound:
            continue  # removed meanwhile (a partial replaced, retention)
        found.files += 1
        found.bytes_read += len(sealed)
        try:
            data = open_object(repo.key, repo.cipher, "wal", sealed, info.name)
        except IntegrityError as exc:
            found.damaged.append(f"{info.name}: {exc.message}")
            continue
        if repo.key.blob_id(data).hex()[:DIGEST_HEX] != digest:
            found.damaged.append(f"{info.name}: its content does not match its name (damaged)")
    return found


def segments_by_number(
    files: Iterable[ArchivedWal], segment_size: int = DEFAULT_SEGMENT_SIZE
) -> dict[int, ArchivedWal]:
    """Completed segments by position; where timelines overlap, the newest timeline's."""
    out: dict[int, ArchivedWal] = {}
    for wal in files:
        if SEGMENT.match(wal.file):
            number = segment_number(wal.file, segment_size)
            if number not in out or out[number].timeline < wal.timeline:
                out[number] = wal
    return out


def gaps(present: Iterable[int], first: int, last: int) -> list[tuple[int, int]]:
    """Runs of missing segment numbers between ``first`` and ``last`` (inclusive)."""
    have = set(present)
    runs: list[tuple[int, int]] = []
    start = None
    for n in range(first, last + 1):
        if n not in have:
            start = n if start is None else start
        elif start is not None:
            runs.append((start, n - 1))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs

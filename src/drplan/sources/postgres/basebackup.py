"""Base backups, full and incremental: the server's tar stream, stored as it arrives.

From PostgreSQL 15 on, drplan runs the replication protocol's ``BASE_BACKUP`` itself
(see ``protocol``); before 15, ``pg_basebackup -D - -Ft`` writes one tar of the whole
cluster to a pipe. Either way nothing is staged on local disk: each tar member
becomes a node of an ordinary snapshot tree as it arrives (so restores, diffs,
checks, copies and deduplication work as for files: a daily full of a mostly
unchanged cluster stores only what changed). What identifies the backup (start and
end LSN, timeline, system identifier, server version, label, whether WAL is
included) goes into the snapshot's ``source``. An incremental (PostgreSQL 17+) is
taken against the manifest of the newest base backup of the same cluster in the
repository, and its snapshot records the chain (the full, then each incremental)
that pg_combinebackup needs to rebuild it.

The WAL the backup needs to be consistent is in it (fetched at its end, as
``-X fetch`` does), so a base backup restores on its own, archive or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from drplan import __version__, clock
from drplan.errors import SourceError
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot, Summary
from drplan.repo.tree import Node
from drplan.sources.postgres import protocol, tarstream
from drplan.sources.postgres.cluster import Preflight, ServerInfo
from drplan.sources.postgres.wal_archive import lsn_value

MANIFEST = "backup_manifest"
LABEL_FILE = "backup_label"
_LABEL_LINE = re.compile(r"^(START WAL LOCATION|CHECKPOINT LOCATION|START TIMELINE|LABEL): (.*)$")
_LSN_IN = re.compile(r"^([0-9A-F]+/[0-9A-F]+)")


class BaseBackupError(SourceError):
    """pg_basebackup failed, or its output is not what a base backup must be."""


@dataclass
class _Dir:
    node: Node | None  # None for the root
    children: dict[bytes, Node | _Dir] = field(default_factory=dict)


class _TreeBuilder:
    """Tar members in, snapshot trees out (saved bottom-up once the stream ends).

    The reading thread cuts each file into chunks; ``pool``'s workers store them, and
    each file's content (its blob ids, in order) is filled in when the stream has ended.
    """

    def __init__(self, repo: Repository, pool: BlobPool) -> None:
        self.repo = repo
        self.pool = pool
        self.root = _Dir(None)
        self.summary = Summary()
        self.kept: dict[str, bytes] = {}  # backup_label and backup_manifest, read as they pass
        self.files: dict[str, int] = {}  # every regular file received, with its size
        self._contents: list[tuple[Node, list[Future[bytes]]]] = []

    def _parent(self, parts: list[bytes]) -> _Dir:
        here = self.root
        for part in parts:
            child = here.children.get(part)
            if not isinstance(child, _Dir):  # a directory the tar did not list first
                child = here.children[part] = _Dir(
                    Node(
                        name=part,
                        type="dir",
                        mode=0o700,
                        uid=os.getuid(),
                        gid=os.getgid(),
                        mtime_ns=0,
                    )
                )
            here = child
        return here

    def add(
        self,
        member: tarfile.TarInfo,
        data: tarstream.MemberData,
        place: str = "",
        prefix: str = "",
    ) -> None:
        """Store one member, at ``place`` + its name in the snapshot (a tablespace's archive
        goes apart from the main one); the manifest calls it ``prefix`` + its name."""
        try:
            path = tarstream.member_path(member)
        except tarstream.TarStreamError:
            raise BaseBackupError(f"the server sent an unsafe path {member.name!r}") from None
        if not path:
            return
        manifest_path, path = prefix + path, place + path
        parts = [os.fsencode(p) for p in path.split("/")]
        node = Node(
            name=parts[-1],
            type="file",
            mode=member.mode & 0o7777,
            uid=member.uid,
            gid=member.gid,
            mtime_ns=int(member.mtime) * 1_000_000_000,
            user=member.uname or None,
            group=member.gname or None,
        )
        parent = self._parent(parts[:-1])
        if member.isdir():
            node.type = "dir"
            existing = parent.children.get(parts[-1])
            if isinstance(existing, _Dir):
                existing.node = node
            else:
                parent.children[parts[-1]] = _Dir(node)
            self.summary.dirs += 1
            return
        if member.issym():
            node.type, node.target = "symlink", os.fsencode(member.linkname)
        elif member.isfile():
            content, node.size = self._store(data, path)
            self._contents.append((node, content))
            self.files[manifest_path] = node.size
            self.summary.files_new += 1
            self.summary.bytes_read += node.size
            self.summary.bytes_total += node.size
        else:
            return  # pg_basebackup sends files, directories and symlinks only
        parent.children[parts[-1]] = node

    def add_file(self, name: str, data: bytes) -> None:
        """A file at the root that arrived outside the tar (the manifest, over the protocol)."""
        self.kept[name] = data
        node = Node(
            name=os.fsencode(name),
            type="file",
            mode=0o600,
            uid=os.getuid(),
            gid=os.getgid(),
            mtime_ns=time.time_ns(),
            size=len(data),
        )
        self.root.children[node.name] = node
        self._contents.append((node, [self.pool.save(data)] if data else []))
        self.files[name] = len(data)

    def _store(self, stream: tarstream.MemberData, path: str) -> tuple[list[Future[bytes]], int]:
        """A file cut at fixed offsets: PostgreSQL rewrites pages in place and only ever
        appends or truncates, so content never shifts and fixed chunks deduplicate as well
        as content-defined ones would, without the cost of finding cut points."""
        if path in (LABEL_FILE, MANIFEST):
            self.kept[path] = bytes(stream.read())
            data = self.kept[path]
            return ([self.pool.save(data)] if data else []), len(data)
        content, total, size = [], 0, self.repo.config.chunker.avg_size
        while stream.left:
            chunk = stream.read(size)
            content.append(self.pool.save(chunk))
            total += len(chunk)
        return content, total

    def save(self) -> bytes:
        """Wait for every chunk to be stored, then save the trees."""
        for node, content in self._contents:
            node.content = [future.result() for future in content]
        self.pool.close()
        return self._save(self.root)

    def _save(self, here: _Dir) -> bytes:
        nodes = []
        for child in here.children.values():
            if isinstance(child, _Dir):
                assert child.node is not None
                child.node.subtree = self._save(child)
                nodes.append(child.node)
            else:
                nodes.append(child)
        return self.repo.save_tree(nodes)


@dataclass(frozen=True)
class BackupIdentity:
    start_lsn: str
    stop_lsn: str
    timeline: int
    label: str
    system_identifier: str | None  # manifests of PostgreSQL 17+ say which cluster
    files: dict[str, int]  # what the manifest lists (path -> size)


def identity(kept: dict[str, bytes]) -> BackupIdentity:
    """Start and end of the backup from backup_label and the manifest's WAL range."""
    if LABEL_FILE not in kept or MANIFEST not in kept:
        raise BaseBackupError("pg_basebackup's output has no backup_label or backup_manifest")
    fields: dict[str, str] = {}
    for line in kept[LABEL_FILE].decode("utf-8", "replace").splitlines():
        match = _LABEL_LINE.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
    start = _LSN_IN.match(fields.get("START WAL LOCATION", ""))
    try:
        manifest = json.loads(kept[MANIFEST])
        ranges = manifest["WAL-Ranges"]
        stop, timeline = ranges[-1]["End-LSN"], int(ranges[-1]["Timeline"])
        files = {
            f.get("Path")
            or bytes.fromhex(f["Encoded-Path"]).decode("utf-8", "surrogateescape"): int(f["Size"])
            for f in manifest["Files"]
        }
        sysid = manifest.get("System-Identifier")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BaseBackupError(f"unreadable backup_manifest ({exc})") from None
    if start is None:
        raise BaseBackupError("backup_label has no START WAL LOCATION")
    return BackupIdentity(
        start.group(1),
        stop,
        timeline,
        fields.get("LABEL", ""),
        str(sysid) if sysid is not None else None,
        files,
    )


def check_received(ident: BackupIdentity, received: dict[str, int], expected_system: str) -> None:
    """The stream held every file its manifest lists, at the listed size, and comes from the
    cluster the preflight checked: nothing is saved as a backup otherwise."""
    if ident.system_identifier is not None and ident.system_identifier != expected_system:
        raise BaseBackupError(
            f"the backup comes from cluster {ident.system_identifier}, the preflight checked"
            f" {expected_system} (a failover in between, or a connection to several hosts?)",
            hint="run the backup again",
        )
    wrong = [p for p, size in ident.files.items() if received.get(p) != size]
    if wrong:
        raise BaseBackupError(
            f"pg_basebackup's stream does not match its manifest: {len(wrong)} file(s) missing"
            f" or of another size (e.g. {wrong[0]})",
            hint="run the backup again; nothing was saved",
        )


def _server_time(dsn: str, password: str | None, system: str) -> datetime:
    """The server's clock, just after the backup ended: recovery targets are compared with
    the server's commit times, so a skewed clock here must not decide which backup serves."""
    from drplan.sources.postgres.cluster import ClusterError, connect  # noqa: PLC0415

    try:
        with connect(dsn, password, system) as conn:
            row = conn.execute("select clock_timestamp()").fetchone()
    except ClusterError:
        row = None
    if row is None or not isinstance(row[0], datetime):
        return clock.now().astimezone(UTC)  # the backup stands; the bound is ours then
    return row[0].astimezone(UTC)


def latest_base(repo: Repository, system: str, server: ServerInfo) -> Snapshot | None:
    """The newest base backup an incremental of this server can build on, or None (take a
    full). It must be of this cluster, on the server's current timeline and behind its
    current position, with its whole chain readable in this repository: a backup from a
    history the server left (it was restored to an earlier point, or failed over) would
    combine into a cluster holding the wrong data."""
    snapshots, _ = repo.readable_snapshots()
    readable = {s.id for s in snapshots}
    now = lsn_value(server.current_lsn)
    for snapshot in reversed(snapshots):
        source = snapshot.source
        if (
            snapshot.system == system
            and source.get("kind") == "postgres"
            and source.get("system_identifier") == server.system_identifier
            and source.get("timeline") == server.timeline
            and lsn_value(str(source.get("stop_lsn", "FFFFFFFF/FFFFFFFF"))) <= now
            and all(link in readable for link in source.get("chain", []))
        ):
            return snapshot
    return None


def read_manifest(repo: Repository, snapshot: Snapshot) -> bytes:
    """The backup_manifest stored with a base backup."""
    for node in repo.load_tree(snapshot.tree):
        if node.name == MANIFEST.encode() and node.type == "file":
            return b"".join(repo.read_blob(blob) for blob in node.content)
    raise BaseBackupError(f"snapshot {snapshot.short_id} holds no backup_manifest")


Method = Literal["protocol", "pg_basebackup"]


def default_method(info: ServerInfo) -> Method:
    """Over the replication protocol from PostgreSQL 15 on, through pg_basebackup before.

    The protocol is what pg_basebackup speaks; reading it here spares its process and
    two copies of every byte through a pipe: at pgbench scale 100 the full backup took
    5.7-6.0 s instead of 7.3 s, and 7.1 s of CPU instead of 10 (docs/benchmarks.md).
    Servers before 15 speak an older form of BASE_BACKUP that pg_basebackup handles.
    """
    return "protocol" if info.major >= protocol.PROTOCOL_SINCE else "pg_basebackup"


def base_backup(
    repo: Repository,
    ready: Preflight,
    *,
    dsn: str,
    password: str | None,
    system: str,
    job: str | None,
    tags: list[str],
    host: str | None = None,
    parent: Snapshot | None = None,
    method: Method | None = None,
) -> Snapshot:
    """Take a base backup of the cluster behind ``dsn`` into ``repo`` (locked by the
    caller): full, or with ``parent`` incremental on top of it (PostgreSQL 17+, with
    ``summarize_wal``); the snapshot is visible only once everything it needs is stored.
    ``method`` is chosen from the server's version unless given."""
    method = method or default_method(ready.info)
    if method == "pg_basebackup" and ready.info.tablespaces:
        raise BaseBackupError(
            f"system {system}: pg_basebackup cannot stream a cluster with tablespaces",
            hint=f"back it up over the protocol (PostgreSQL {protocol.PROTOCOL_SINCE} or later)",
        )
    started, start_time = time.monotonic(), clock.now()
    added_before, stored_before = repo.stats.bytes_added, repo.stats.bytes_stored
    label = f"drplan {system} {clock.rfc3339(start_time)}"
    parent_manifest = read_manifest(repo, parent) if parent is not None else None
    tablespaces: list[dict[str, str]] = []
    with BlobPool(repo, DATA) as pool:
        builder = _TreeBuilder(repo, pool)
        if method == "protocol":
            tablespaces = _receive_archives(builder, dsn, password, label, parent_manifest, system)
        else:
            _run_pg_basebackup(builder, ready, dsn, password, label, parent_manifest, system)
        ident = identity(builder.kept)
        check_received(ident, builder.files, ready.info.system_identifier)
        root = builder.save()
    builder.summary.duration_seconds = round(time.monotonic() - started, 3)
    stats = repo.stats  # the repository counts across backups: this one's share
    builder.summary.bytes_added = stats.bytes_added - added_before
    builder.summary.bytes_stored = stats.bytes_stored - stored_before
    snapshot = Snapshot(
        time=start_time,
        tree=root,
        paths=[f"postgres:{system}"],
        host=host or socket.gethostname(),
        user=getpass.getuser(),
        tags=sorted(set(tags)),
        job=job,
        system=system,
        parent=parent.id if parent else None,
        source={
            "kind": "postgres",
            "type": "incremental" if parent else "full",
            # The chain a restore combines, oldest first: the full, then each incremental.
            "chain": [*parent.source.get("chain", []), parent.id] if parent else [],
            "start_lsn": ident.start_lsn,
            "stop_lsn": ident.stop_lsn,
            "timeline": ident.timeline,
            "label": ident.label,
            "system_identifier": ready.info.system_identifier,
            "server_version": ready.info.version_num,
            # Consistent at stop_lsn no later than this: the earliest time a recovery from
            # this backup can stop at.
            "stop_time": _server_time(dsn, password, system).isoformat(),
            "wal_segment_size": int(ready.info.setting("wal_segment_size") or 16 * 1024 * 1024),
            "wal": "included",
            "tablespaces": tablespaces,
        },
        summary=builder.summary,
        program=f"drplan {__version__}",
    )
    repo.save_snapshot(snapshot)
    return snapshot


def _run_pg_basebackup(
    builder: _TreeBuilder,
    ready: Preflight,
    dsn: str,
    password: str | None,
    label: str,
    parent_manifest: bytes | None,
    system: str,
) -> None:
    """pg_basebackup's tar stream, member by member, into ``builder``."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password  # the environment, never the command line
    argv = [
        ready.binaries.tool("pg_basebackup"),
        "--dbname",
        dsn,
        "--pgdata",
        "-",
        "--format",
        "tar",
        "--wal-method",
        "fetch",
        "--checkpoint",
        "fast",
        "--label",
        label,
    ]
    with tempfile.NamedTemporaryFile(prefix="drplan-manifest-", suffix=".json") as manifest:
        if parent_manifest is not None:  # pg_basebackup reads the parent's manifest from a file
            manifest.write(parent_manifest)
            manifest.flush()
            argv += ["--incremental", manifest.name]
        _stream_tar(argv, env, builder, system)


def _stream_tar(argv: list[str], env: dict[str, str], builder: _TreeBuilder, system: str) -> None:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=PIPE_SIZE
    )
    assert isinstance(proc.stdout, io.BufferedReader)  # bufsize > 0
    _widen_pipe(proc.stdout.fileno())
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True)
    drain.start()
    broken: tarstream.TarStreamError | None = None
    try:
        for member, data in tarstream.members(proc.stdout):
            builder.add(member, data)
        tarstream.drain(proc.stdout)
    except tarstream.TarStreamError as exc:
        broken = exc  # pg_basebackup's own error, if it failed, says more than this
    except BaseException:
        proc.kill()  # it would block for ever on a full pipe nobody reads any more
        proc.wait()
        drain.join()
        raise
    finally:
        if proc.poll() is None and broken is not None:
            proc.kill()
        code = proc.wait()
        drain.join()
    if code == 0 and broken is not None:
        raise BaseBackupError(f"system {system}: the base backup stream broke off ({broken})")
    if code != 0:
        lines = [e.decode("utf-8", "replace").strip() for e in errors if e.strip()]
        reason = next((ln for ln in reversed(lines) if "error" in ln), lines[-1] if lines else "")
        raise BaseBackupError(
            f"system {system}: pg_basebackup failed (exit {code}): {reason}",
            hint="the cluster's log may say more; nothing was saved as a backup",
        )


PIPE_SIZE = 1 << 20  # Linux's default limit for an unprivileged process


def _widen_pipe(fd: int) -> None:
    """Let pg_basebackup run up to 1 MiB ahead while a chunk is compressed: with the default
    64 KiB pipe, each side waits for the other (11% faster at pgbench scale 30)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: as is
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def _receive_archives(
    builder: _TreeBuilder,
    dsn: str,
    password: str | None,
    label: str,
    parent_manifest: bytes | None,
    system: str,
) -> list[dict[str, str]]:
    """The archives of BASE_BACKUP, over the replication protocol (see ``protocol``); the
    tablespaces stored, by oid and location."""
    try:
        received = protocol.receive(dsn, password, label, parent_manifest, builder.add)
    except protocol.ProtocolError as exc:
        raise BaseBackupError(
            f"system {system}: {exc.message}",
            hint="the cluster's log may say more; nothing was saved as a backup",
        ) from None
    builder.add_file(MANIFEST, received.manifest)
    return received.tablespaces

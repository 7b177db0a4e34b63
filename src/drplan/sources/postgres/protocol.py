"""Base backups over the replication protocol, for clusters with tablespaces.

``pg_basebackup`` writes one tar per tablespace and will put only one of them on
standard output; its directory mode would stage the whole cluster on local disk. So
for a cluster with tablespaces drplan runs the protocol's ``BASE_BACKUP`` itself
(through libpq, as pg_basebackup does) and stores each archive as it arrives: the
main one at the root of the snapshot, each tablespace's under
``.drplan-tablespaces/<oid>/`` (moved to its place, and ``pg_tblspc/<oid>`` relinked,
on restore). The archive protocol of PostgreSQL 15 and later is spoken: a ``n`` message
opens an archive, ``d`` carries its bytes, ``m`` starts the manifest.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.pq.abc import PGconn, PGresult

from drplan.errors import SourceError
from drplan.sources.postgres import tarstream
from drplan.sources.postgres.backup_record import is_oid

TABLESPACES_DIR = ".drplan-tablespaces"
PROTOCOL_SINCE = 15  # the archive-stream form of BASE_BACKUP
MANIFEST_CHUNK = 128 * 1024  # bytes of the parent manifest per CopyData message


class ProtocolError(SourceError):
    """The server refused or broke off the base backup."""


@dataclass
class Received:
    tablespaces: list[dict[str, str]] = field(default_factory=list)  # oid, location
    manifest: bytes = b""
    start_lsn: str = ""
    stop_lsn: str = ""


class _Messages:
    """The COPY stream's messages, with one of lookahead."""

    def __init__(self, conn: PGconn) -> None:
        self.conn = conn
        self.held: memoryview | None = None
        self.done = False

    def next(self) -> memoryview | None:
        """The next message (its type, then its body); a view psycopg frees with it."""
        if self.held is not None:
            message, self.held = self.held, None
            return message
        if self.done:
            return None
        try:
            size, data = self.conn.get_copy_data(0)
        except psycopg.Error as exc:
            raise ProtocolError(f"the base backup stream broke off: {exc}") from None
        if size == -1:
            self.done = True
            return None
        if size == -2:
            raise ProtocolError(f"the base backup stream broke off: {_error(self.conn)}")
        return memoryview(data)

    def push_back(self, message: memoryview) -> None:
        self.held = message


_DATA, _PROGRESS = ord("d"), ord("p")


class _Archive:
    """One archive's bytes, over its ``d`` messages, for ``tarstream`` to read."""

    def __init__(self, messages: _Messages) -> None:
        self.messages = messages
        self.view = memoryview(b"")
        self.ended = False

    def readinto(self, buffer: memoryview) -> int:
        while not self.view:
            if self.ended:
                return 0
            message = self.messages.next()
            if message is not None and message[0] == _PROGRESS:
                continue  # progress, sent between data messages of an archive
            if message is None or message[0] != _DATA:
                if message is not None:
                    self.messages.push_back(message)
                self.ended = True
                return 0
            self.view = message[1:]
        n = min(len(buffer), len(self.view))
        buffer[:n] = self.view[:n]
        self.view = self.view[n:]
        return n


def _error(conn: PGconn) -> str:
    return " ".join(conn.error_message.decode("utf-8", "replace").split())


def _result(conn: PGconn, wanted: pq.ExecStatus) -> PGresult:
    result = conn.get_result()
    if result is None or result.status != wanted:
        message = result.error_message.decode("utf-8", "replace") if result else _error(conn)
        raise ProtocolError(f"the server refused the base backup: {' '.join(message.split())}")
    return result


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def receive(
    dsn: str,
    password: str | None,
    label: str,
    parent_manifest: bytes | None,
    store: Callable[[tarfile.TarInfo, tarstream.MemberData, str, str], None],
) -> Received:
    """Run BASE_BACKUP (fast checkpoint, WAL included, with a manifest; incremental on
    ``parent_manifest``) and hand every member of every archive to ``store(member, data,
    place, manifest_prefix)``: ``place`` is where in the snapshot the archive goes,
    ``manifest_prefix`` how the manifest names its files."""
    extra = {"password": password} if password else {}
    conninfo = make_conninfo(
        dsn,
        replication="true",
        connect_timeout="10",
        # A host that dies mid-backup must not hold the repository's lock for ever.
        keepalives="1",
        keepalives_idle="30",
        keepalives_interval="10",
        keepalives_count="3",
        **extra,
    )
    conn = pq.PGconn.connect(conninfo.encode())
    try:
        if conn.status != pq.ConnStatus.OK:
            raise ProtocolError(f"cannot open a replication connection: {_error(conn)}")
        return _run(conn, label, parent_manifest, store)
    except psycopg.Error as exc:
        raise ProtocolError(f"the base backup connection failed: {_error(conn) or exc}") from None
    except tarstream.TarStreamError as exc:
        # The server's own error, when it sent one, says more than the broken tar does.
        reason = _error(conn)
        raise ProtocolError(f"the base backup stream broke off: {reason or exc}") from None
    finally:
        conn.finish()


def _run(
    conn: PGconn,
    label: str,
    parent_manifest: bytes | None,
    store: Callable[[tarfile.TarInfo, tarstream.MemberData, str, str], None],
) -> Received:
    options = [f"LABEL {_quote(label)}", "CHECKPOINT 'fast'", "WAL true", "MANIFEST 'yes'"]
    options.append("WAIT false")  # the WAL is in the backup: no need to wait for archiving
    if parent_manifest is not None:
        conn.send_query(b"UPLOAD_MANIFEST")
        _result(conn, pq.ExecStatus.COPY_IN)
        for at in range(0, len(parent_manifest), MANIFEST_CHUNK):  # as pg_basebackup sends it
            conn.put_copy_data(parent_manifest[at : at + MANIFEST_CHUNK])
        conn.put_copy_end()
        _result(conn, pq.ExecStatus.COMMAND_OK)
        if conn.get_result() is not None:
            raise ProtocolError("unexpected reply to UPLOAD_MANIFEST")
        options.append("INCREMENTAL")
    conn.send_query(f"BASE_BACKUP ({', '.join(options)})".encode())
    received = Received()
    start = _result(conn, pq.ExecStatus.TUPLES_OK)
    received.start_lsn = (start.get_value(0, 0) or b"").decode()
    spaces = _result(conn, pq.ExecStatus.TUPLES_OK)
    for row in range(spaces.ntuples):
        oid, location = spaces.get_value(row, 0), spaces.get_value(row, 1)
        if oid is not None and location:
            _check_oid(oid.decode(errors="replace"))
            received.tablespaces.append({"oid": oid.decode(), "location": location.decode()})
    _result(conn, pq.ExecStatus.COPY_OUT)
    messages = _Messages(conn)
    for kind, payload in _archives(messages):
        if kind == "manifest":
            received.manifest = payload
            continue
        space = _check_oid(payload.decode(errors="replace")) if payload else ""
        place = f"{TABLESPACES_DIR}/{space}/" if space else ""
        prefix = f"pg_tblspc/{space}/" if space else ""
        archive = _Archive(messages)
        for member, data in tarstream.members(archive):
            store(member, data, place, prefix)
        tarstream.drain(archive)
    end = _result(conn, pq.ExecStatus.TUPLES_OK)
    received.stop_lsn = (end.get_value(0, 0) or b"").decode()
    _result(conn, pq.ExecStatus.COMMAND_OK)
    return received


def _check_oid(oid: str) -> str:
    """A tablespace's oid becomes part of paths, in the snapshot and on restore: digits only."""
    if not is_oid(oid):
        raise ProtocolError(f"the server named a tablespace {oid!r}, which is not an oid")
    return oid


def _archives(messages: _Messages) -> Iterator[tuple[str, bytes]]:
    """("archive", tablespace oid or b"") for each archive, ("manifest", bytes) at the end."""
    while True:
        message = messages.next()
        if message is None:
            return
        kind = message[:1].tobytes()
        if kind == b"n":  # archive name, NUL, tablespace location, NUL
            name = message[1:].tobytes().split(b"\0", 1)[0].decode()
            yield "archive", b"" if name == "base.tar" else name.removesuffix(".tar").encode()
        elif kind == b"m":
            chunks = []
            while (more := messages.next()) is not None and more[0] == _DATA:
                chunks.append(more[1:])
            if more is not None:
                messages.push_back(more)
            yield "manifest", b"".join(chunks)
        # "p" (progress) and anything else carry nothing to store

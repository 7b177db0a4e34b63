"""The SQLite catalog as a file: checked when opened, told apart from a replacement, and
moved aside (never deleted) when it is damaged.

SQLite keeps no checksums: a truncated file, bytes written over its header or a page
gone bad may answer some queries and not others, or answer them wrongly. ``quick_check``
walks every page of every table and index (0.17 s for 500,000 runs, 120 MB): a damaged
catalog is told when it is opened, with the fix, not found later half-way through a run.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime
from typing import Any

from drplan.errors import CatalogError

# sqlite3.Error.sqlite_errorcode values (the primary code, in the low byte)
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26
DAMAGE_CODES = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})
# A full file system is SQLITE_FULL when a write fails, but "disk I/O error" or "unable to
# open database file" when the shared memory or the log cannot be made: told by the room left.
MAYBE_FULL_CODES = frozenset({SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN})
ROOM = 64 * 1024  # less free than this, and a failed write is taken for a full disk
COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite keeps beside the database
ASIDE = ".damaged-"  # catalog.db.damaged-20261126T101500Z


def error_code(exc: BaseException | None) -> int | None:
    """SQLite's primary result code of a driver error, when it is one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def quick_check(dbapi_conn: Any) -> str | None:
    """What SQLite's ``quick_check`` finds wrong first; None when the file is sound."""
    try:
        rows = dbapi_conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if error_code(exc) in DAMAGE_CODES:
            return str(exc)
        raise
    lines = [line for row in rows for line in str(row[0]).splitlines()]
    found = [line for line in lines if line != "ok" and not line.startswith("*** in database")]
    return found[0] if found else None


def damaged(path: str, reason: str) -> CatalogError:
    return CatalogError(
        f"catalog {path} is damaged ({reason})",
        hint=f"run `drplan catalog rebuild --catalog sqlite:///{path}`: it moves the file aside"
        " and rebuilds the history from the plan's repositories",
    )


def is_full(path: str, code: int | None) -> bool:
    """Whether a failure (of SQLite result ``code``) at the catalog ``path`` is its file
    system having no room."""
    if code == SQLITE_FULL:
        return True
    if code not in MAYBE_FULL_CODES:
        return False
    try:
        st = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < ROOM


def full(path: str, reason: str) -> CatalogError:
    return CatalogError(
        f"catalog {path} cannot be written: its file system is full ({reason})",
        hint=f"free space in {os.path.dirname(path)}; nothing was recorded (the daemon"
        " keeps what it has to record, and retries on its own)",
    )


def identity(path: str) -> tuple[int, int] | None:
    """Which file ``path`` is now (device, inode); None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def move_aside(path: str, now: datetime) -> str | None:
    """Rename the catalog file (and its write-ahead log and shared memory) to
    ``PATH.damaged-TIME``; where it went, or None when there was no file."""
    if not os.path.exists(path):
        return None
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    aside = f"{path}{ASIDE}{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}{ASIDE}{stamp}.{n}"
    for suffix in COMPANIONS:  # the log first: a reader must not pair it with a new file
        with contextlib.suppress(FileNotFoundError):
            os.rename(path + suffix, aside + suffix)
    os.rename(path, aside)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames survive a crash: no rebuild over a file still in place
    finally:
        os.close(fd)
    return aside

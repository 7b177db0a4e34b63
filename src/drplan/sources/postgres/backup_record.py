"""The record a base backup's snapshot carries (its ``source``), checked before it is trusted.

A restore builds paths from it (``.drplan-tablespaces/<oid>``, ``pg_tblspc/<oid>``,
``DIR.tablespaces/<oid>``) and positions in the WAL (start and stop LSN, timeline,
segment size). A snapshot is authenticated by the repository key, but whoever holds
the key, or a bug, could record anything: a tablespace oid of ``../../srv`` would have
a restore move, link and, when it fails, delete outside its target. So each field a
restore relies on must have the form PostgreSQL gives it; a base backup whose record
does not is damage (exit 13), refused before anything is written.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from drplan.errors import IntegrityError
from drplan.repo.snapshot import Snapshot

OID = re.compile(r"^[0-9]{1,10}$")  # an Oid: an unsigned 32-bit number
LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{64}$")
MIN_SEGMENT, MAX_SEGMENT = 1 << 20, 1 << 30  # PostgreSQL's bounds for wal_segment_size


def is_oid(text: str) -> bool:
    """Digits only (ASCII), as PostgreSQL names a tablespace in ``pg_tblspc``."""
    return bool(OID.match(text)) and int(text) < 1 << 32


def _tablespace_problem(spaces: Any) -> tuple[str, object] | None:
    if not isinstance(spaces, list):
        return "tablespaces", spaces
    seen: set[str] = set()
    for space in spaces:
        oid = space.get("oid") if isinstance(space, dict) else space
        if not isinstance(oid, str) or not is_oid(oid) or oid in seen:
            return "tablespace oid", oid
        seen.add(oid)
        location = space.get("location")
        if not isinstance(location, str) or not location or "\0" in location:
            return f"tablespace {oid}'s location", location
    return None


def _time_problem(value: object) -> bool:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return True
    return False


def problem(source: dict[str, Any]) -> tuple[str, object] | None:
    """The first field of a base backup's record a restore cannot safely use, and its value."""
    found = _tablespace_problem(source.get("tablespaces") or [])
    if found:
        return found
    for key in ("start_lsn", "stop_lsn"):
        value = source.get(key)
        if value is not None and not (isinstance(value, str) and LSN.match(value)):
            return key, value
    timeline = source.get("timeline")
    if timeline is not None and (type(timeline) is not int or not 0 < timeline < 1 << 32):
        return "timeline", timeline
    size = source.get("wal_segment_size")
    if size is not None and (
        type(size) is not int or not MIN_SEGMENT <= size <= MAX_SEGMENT or size & (size - 1)
    ):
        return "wal_segment_size", size
    chain = source.get("chain") or []
    if not isinstance(chain, list) or not all(
        isinstance(i, str) and SNAPSHOT_ID.match(i) for i in chain
    ):
        return "chain", chain
    stop = source.get("stop_time")
    if stop is not None and _time_problem(stop):
        return "stop_time", stop
    return None


def damage(snapshot: Snapshot, where: str) -> str | None:
    """What is wrong with a base backup's record, as a user reads it; None when nothing."""
    found = problem(snapshot.source)
    if found is None:
        return None
    field, value = found
    return f"base backup {snapshot.short_id} in {where} is damaged: its {field} is {value!r}"


def check_base_backup(snapshot: Snapshot, where: str) -> Snapshot:
    """``snapshot`` when its record is usable; IntegrityError naming it and the bad value."""
    found = damage(snapshot, where)
    if found is not None:
        raise IntegrityError(
            f"{found}, not what PostgreSQL records: refusing to restore it (nothing was written)",
            hint="restore another base backup (--to SNAPSHOT; see `drplan snapshots`) or from"
            " another location (--repo)",
        )
    return snapshot

"""Point-in-time recovery: what ``--to`` means, which base backup serves it, and what was reached.

A target is ``latest`` (all archived WAL), a time with its zone, an LSN (``X/Y``), a
restore point (``name:NAME``), or a base backup's snapshot id (its own end, no WAL
replayed). Anything else is refused before anything is written, the forms listed:
taken for a restore point, a mistyped target would be found missing only after the
restore, when the started cluster ends recovery without reaching it. The base backup
is the newest consistent before the target; the target must lie in the recoverable
window of the location, and the WAL from that backup to the target must have no gap:
otherwise the restore stops before anything is written, naming the window or the
missing segments. PostgreSQL would otherwise end recovery at a gap and start up,
silently short of the target.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drplan.errors import RecoveryTargetError, UsageError
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_archive import lsn_segment, lsn_value, segment_number
from drplan.sources.postgres.wal_status import Reach, Window, fmt_time, stop_time

LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass(frozen=True)
class Target:
    kind: str  # latest, time, lsn, name, snapshot
    value: str = ""
    time: datetime | None = None
    inclusive: bool = True  # False: only what committed strictly before ``time``

    def describe(self) -> str:
        if self.kind == "time" and self.time is not None:
            return ("just before " if not self.inclusive else "") + fmt_time(self.time)
        return self.value or self.kind


FORMS = (
    "latest; a time with its zone ('2026-11-25 10:15:00+00'); an LSN (0/3000148);"
    " a restore point (name:NAME); a base backup's snapshot id (4 or more hex digits);"
    " last-good; last-clean; or, in an incident, before-incident"
)


def parse_target(text: str) -> Target:
    if text == "latest":
        return Target("latest")
    if text.startswith("name:"):
        if not text[5:]:
            raise UsageError(
                "--to name: needs the restore point's name", hint=f"--to takes {FORMS}"
            )
        return Target("name", text[5:])
    if text.startswith("lsn:") or LSN.match(text):
        value = text.removeprefix("lsn:")
        if not LSN.match(value):
            raise UsageError(f"--to {text!r} is not an LSN", hint="an LSN looks like 0/3000148")
        return Target("lsn", value.upper())
    if SNAPSHOT_ID.match(text):
        return Target("snapshot", text)
    if text[:1].isdigit():
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"--to {text!r} is not a time drplan can read",
                hint="write it as '2026-11-25 10:15:00+00' (a time zone is required);"
                f" --to takes {FORMS}",
            ) from None
        if when.tzinfo is None:
            raise UsageError(
                f"--to {text!r} has no time zone",
                hint="add one, e.g. '2026-11-25 10:15:00+00' for UTC",
            )
        return Target("time", text, when)
    raise UsageError(
        f"--to {text!r} is not a recovery target",
        hint=f"--to takes {FORMS}; for a restore point named {text!r}, --to name:{text}",
    )


def choose_base(window: Window, target: Target, where: str) -> Reach:
    """The base backup to start from, checked against the window and the WAL's gaps."""
    reaches = sorted(window.reaches, key=lambda r: stop_time(r.base))
    if not reaches:
        raise RecoveryTargetError(f"{where} holds no base backup of {window.system}")
    if target.kind == "latest":
        chosen = reaches[-1]
        if chosen.gap is not None:
            raise RecoveryTargetError(
                f"WAL {chosen.gap[0]} to {chosen.gap[1]} is missing from {where}: the newest"
                f" point reachable is {fmt_time(chosen.last_time)}, not the latest",
                hint="restore --to a time before the gap, or from another location (--repo)",
            )
        return chosen
    if target.kind == "time":
        assert target.time is not None
        before = [r for r in reaches if stop_time(r.base) <= target.time]
        if not before:
            raise RecoveryTargetError(
                f"{target.describe()} is before the oldest point {where} can recover to"
                f" (the window is {window.describe()})",
                hint="choose a time inside the window",
            )
        chosen = before[-1]
        if chosen.last_time < target.time:
            missing = (
                f"WAL {chosen.gap[0]} to {chosen.gap[1]} is missing"
                if chosen.gap
                else "no WAL that recent is archived"
            )
            raise RecoveryTargetError(
                f"{target.describe()} cannot be reached from {where}: {missing}; the newest"
                f" point reachable is {fmt_time(chosen.last_time)} (the window is {window.describe()})",
                hint="choose an earlier time, or restore from another location (--repo)",
            )
        return chosen
    if target.kind == "lsn":
        size = window.segment_size
        wanted = lsn_segment(target.value, size)
        before = [
            r
            for r in reaches
            if lsn_value(str(r.base.source.get("stop_lsn"))) <= lsn_value(target.value)
        ]
        if not before:
            raise RecoveryTargetError(
                f"LSN {target.value} is before the end of the oldest base backup in {where}",
                hint="choose a later LSN",
            )
        chosen = before[-1]
        reached = segment_number(chosen.last_segment, size) if chosen.last_segment else -1
        if reached < wanted:
            raise RecoveryTargetError(
                f"LSN {target.value} cannot be reached from {where}: the archived WAL ends at"
                f" {chosen.last_segment or 'the base backup'}"
                + (f" (then {chosen.gap[0]} is missing)" if chosen.gap else ""),
                hint="choose an earlier LSN, or restore from another location (--repo)",
            )
        return chosen
    # A restore point's position is known only to the WAL: start from the oldest base
    # backup with no gap after it, which precedes every point the window holds.
    usable = [r for r in reaches if r.gap is None] or reaches
    return usable[0]


def recovery_settings(target: Target, restore_command: str) -> str:
    """postgresql.auto.conf lines for the target (the caller writes recovery.signal)."""
    lines = [
        "# Added by drplan restore: replay archived WAL to the target, then start a new",
        "# timeline (a restored cluster must not continue the history it left behind).",
        f"restore_command = '{_quote(restore_command)}'",
        "recovery_target_action = 'promote'",
        "recovery_target_timeline = 'latest'",
    ]
    if target.kind == "time":
        assert target.time is not None
        lines.append(f"recovery_target_time = '{fmt_time(target.time)}'")
        if not target.inclusive:  # a commit at that very moment is the disaster's, not ours
            lines.append("recovery_target_inclusive = 'off'")
    elif target.kind == "lsn":
        lines.append(f"recovery_target_lsn = '{target.value}'")
    elif target.kind == "name":
        lines.append(f"recovery_target_name = '{_quote(target.value)}'")
    return "\n" + "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """A value inside '...' of a PostgreSQL configuration file (which reads backslash escapes)."""
    return value.replace("\\", "\\\\").replace("'", "''")


@dataclass
class Reached:
    """Where recovery stopped, from the server's log."""

    lsn: str | None = None
    last_transaction: datetime | None = None
    timeline: int | None = None


_LAST_XACT = re.compile(
    r"last completed transaction was at log time (\d{4}-\d\d-\d\d [\d:.]+[+-]\d\d)"
)
_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")
_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")


def wait_for_recovery(
    pg_controldata: str, data_dir: Path, log: Path, is_running: Callable[[], bool]
) -> Reached:
    """Wait until the started server has finished recovery ("in production"); raise with the
    server's own reason when it stops instead."""
    while True:
        state = _cluster_state(pg_controldata, data_dir)
        if state == "in production":
            return read_reached(log)
        if not is_running():
            from drplan.recovery.postgres import failure_reason  # noqa: PLC0415

            raise RecoveryTargetError(
                f"recovery failed: {failure_reason(log) or 'the server stopped during recovery'}",
                hint=f"see {log}",
            )
        time.sleep(0.2)


def _cluster_state(pg_controldata: str, data_dir: Path) -> str:
    out = subprocess.run(
        [pg_controldata, str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    ).stdout
    for line in out.splitlines():
        if line.startswith("Database cluster state:"):
            return line.split(":", 1)[1].strip()
    return ""


def read_reached(log: Path) -> Reached:
    text = log.read_text(errors="replace") if log.exists() else ""
    reached = Reached()
    stamp = _LAST_XACT.findall(text)  # "recovery stopping before" names the next one
    if stamp:
        reached.last_transaction = datetime.fromisoformat(stamp[-1])
    redo = _REDO_DONE.findall(text)
    if redo:
        reached.lsn = redo[-1]
    timeline = _TIMELINE.findall(text)
    if timeline:
        reached.timeline = int(timeline[-1])
    return reached


def chain_for(reach: Reach, bases: list[Snapshot]) -> list[Snapshot]:
    """The chain of ``reach``'s base backup, oldest first (its source records it)."""
    by_id = {s.id: s for s in bases}
    ids = [*reach.base.source.get("chain", []), reach.base.id]
    missing = [i[:8] for i in ids if i not in by_id]
    if missing:
        raise RecoveryTargetError(
            f"base backup {reach.base.short_id} builds on {', '.join(missing)}, which are gone",
            hint="restore from another location (--repo)",
        )
    return [by_id[i] for i in ids]

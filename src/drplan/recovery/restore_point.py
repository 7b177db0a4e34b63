"""Whether a restore point (``--to name:NAME``) is in the archived WAL, asked before restoring.

A restore point made with ``pg_create_restore_point`` is a WAL record
(``XLOG_RESTORE_POINT``) holding its name; nothing else records it. Recovery to a name
that is not there replays to the end of the archive and then fails, after the whole
restore. So the WAL recovery could replay, from the chosen base backup's start to the
end of the archive, is fetched a few segments at a time into a temporary directory and
read with ``pg_waldump`` of the server's major version, until a ``RESTORE_POINT``
record with the name turns up.

``pg_waldump`` ends each run with an error where the WAL it was given ends (a record
it cannot finish); only a run that cannot read the WAL at all (another major version's
tool, damaged files) leaves the question open, as does a missing ``pg_waldump``: the
caller then says so and restores anyway.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from drplan.errors import DrplanError
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.wal_archive import (
    SEGMENT,
    ArchivedWal,
    WalArchive,
    lsn_segment,
    segment_number,
)
from drplan.storage import StorageError

BATCH = 8  # segments per pg_waldump run (16 MiB each by default): bounded temporary space
WALDUMP_TIMEOUT = 600  # seconds for one run
FETCH_WORKERS = 4  # segments fetched at once (each a read and a decryption)
_MARK = "desc: RESTORE_POINT "
# How pg_waldump says the WAL it was given ended: what it read before that is all there is.
_ENDED = ("error in WAL record at", "could not find file")


@dataclass
class Search:
    found: bool | None  # None: the archive could not tell
    searched: str  # what was read, for the user: "N segment(s), FIRST to LAST"
    reason: str = ""  # why it could not tell


def segments_after(
    files: list[ArchivedWal], start: int, timeline: int, size: int
) -> list[list[str]]:
    """Segment names from position ``start`` on, of ``timeline`` and later ones, as recovery
    would fetch them (a ``.partial`` where the complete segment is missing), in runs
    pg_waldump can read in one go: one timeline, consecutive positions."""
    complete = {w.file for w in files if SEGMENT.match(w.file)}
    names = set()
    for wal in files:
        name = wal.file.removesuffix(".partial")
        usable = wal.file == name or name not in complete
        if not (usable and SEGMENT.match(name)):
            continue
        if segment_number(name, size) >= start and int(name[:8], 16) >= timeline:
            names.add(name)
    runs: list[list[str]] = []
    for name in sorted(names, key=lambda n: (n[:8], segment_number(n, size))):
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and last[:8] == name[:8]
            and segment_number(name, size) == segment_number(last, size) + 1
        ):
            runs[-1].append(name)
        else:
            runs.append([name])
    return runs


def _batches(runs: list[list[str]]) -> Iterator[list[str]]:
    """Up to BATCH segments at a time; each batch of a run starts with the last segment of
    the one before, so a record that begins there and ends in the next is read whole."""
    for run in runs:
        at = 0
        while True:
            yield run[at : at + BATCH]
            if at + BATCH >= len(run):
                break
            at += BATCH - 1


def find_restore_point(
    archive: WalArchive, base: Snapshot, name: str, pg_waldump: str, size: int
) -> Search:
    """Look for restore point ``name`` in the archived WAL from ``base``'s start on."""
    start = lsn_segment(str(base.source.get("start_lsn", "0/0")), size)
    timeline = int(base.source.get("timeline", 1))
    runs = segments_after(archive.files(), start, timeline, size)
    every = [n for run in runs for n in run]
    if not every:
        return Search(False, "0 segments (none is archived)")
    searched = f"{len(every)} segment(s), {every[0]} to {every[-1]}"
    with tempfile.TemporaryDirectory(prefix="drplan-restore-point-") as temp:
        for batch in _batches(runs):
            outcome = _search_batch(archive, batch, Path(temp), name, pg_waldump)
            if outcome is True:
                return Search(True, searched)
            if isinstance(outcome, str):
                return Search(None, searched, outcome)
    return Search(False, searched)


def _search_batch(
    archive: WalArchive, batch: list[str], temp: Path, name: str, pg_waldump: str
) -> bool | str:
    """True when the batch holds the restore point, False when it does not, or why it
    cannot be read."""
    for old in temp.iterdir():
        old.unlink()

    def fetch(segment: str) -> None:
        data = archive.fetch(segment)
        if data is not None:  # else forgotten meanwhile: pg_waldump ends before it
            (temp / segment).write_bytes(data)

    try:
        with ThreadPoolExecutor(FETCH_WORKERS) as pool:
            list(pool.map(fetch, batch))
    except (DrplanError, StorageError, OSError) as exc:
        return f"WAL could not be read ({exc})"
    try:
        proc = subprocess.run(
            [pg_waldump, "--path", str(temp), "--rmgr=XLOG", batch[0], batch[-1]],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            timeout=WALDUMP_TIMEOUT,
            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},  # its messages, in English
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"pg_waldump did not run ({exc})"
    for line in proc.stdout.splitlines():
        if _MARK in line and line.split(_MARK, 1)[1] == name:
            return True
    if proc.returncode == 0 or any(ended in proc.stderr for ended in _ENDED):
        return False
    lines = proc.stderr.strip().splitlines()
    return f"pg_waldump cannot read it ({lines[-1] if lines else f'exit {proc.returncode}'})"

"""The commits archived WAL holds between two positions, read with ``pg_waldump``: what
``--to last-clean`` bisects once its search is down to one second (``last_clean``).

Only the segments from the first position's to the last's are fetched (one or two for a
second of ordinary traffic), authenticated as ``drplan wal fetch`` does, into a
temporary directory, and read with ``pg_waldump --rmgr=Transaction`` of the server's
major version. A commit's time is what recovery holds against ``recovery_target_time``,
to the microsecond: recovering to a commit's time replays up to that commit.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drplan.errors import DrplanError
from drplan.recovery.restore_point import segments_after
from drplan.sources.postgres.wal_archive import (
    ArchivedWal,
    WalArchive,
    lsn_segment,
    segment_number,
)
from drplan.storage import StorageError

# More WAL than this in the one second left: the search stays to the second (256 MiB of
# the default segments fetched and read would cost more than the scratch recoveries).
MAX_SEGMENTS = 16
WALDUMP_TIMEOUT = 600  # seconds
_COMMIT = re.compile(
    r"tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: COMMIT(?:_PREPARED \d+:)?"
    r" (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)
# How pg_waldump says the WAL it was given ended: what it read before that is all there is.
_ENDED = ("error in WAL record at", "could not find file")


class CommitsUnknown(Exception):
    """The commits could not be listed; the message says why."""


@dataclass(frozen=True)
class Commit:
    xid: int
    lsn: str
    time: datetime

    def as_dict(self) -> dict[str, object]:
        return {"xid": self.xid, "lsn": self.lsn, "time": self.time.isoformat()}


def parse_commits(text: str) -> list[Commit]:
    """The commit records in ``pg_waldump``'s output (run with ``TZ=UTC``), in WAL order."""
    found = []
    for match in _COMMIT.finditer(text):
        xid, lsn, stamp = match.groups()
        when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        found.append(Commit(int(xid), lsn, when))
    return found


def segments_for(files: list[ArchivedWal], first: int, last: int, size: int) -> list[str] | None:
    """The archived segments at positions ``first`` to ``last``, all on the newest timeline
    that has every one of them (None: no timeline does)."""
    runs = segments_after(files, first, 1, size)  # by timeline, then position
    for run in reversed(runs):
        start = segment_number(run[0], size)
        if start <= first and start + len(run) - 1 >= last:
            return run[first - start : last - start + 1]
    return None


def commits_between(
    archive: WalArchive, first_lsn: str, last_lsn: str, size: int, pg_waldump: str
) -> list[Commit]:
    """Every commit in the archived segments holding ``first_lsn`` to ``last_lsn``."""
    first, last = lsn_segment(first_lsn, size), lsn_segment(last_lsn, size)
    if last - first + 1 > MAX_SEGMENTS:
        raise CommitsUnknown(
            f"{last - first + 1} segments of WAL in that second, over {MAX_SEGMENTS}"
        )
    names = segments_for(archive.files(), first, last, size)
    if names is None:
        raise CommitsUnknown(f"the WAL from {first_lsn} to {last_lsn} is not archived whole")
    with tempfile.TemporaryDirectory(prefix="drplan-commits-") as temp:
        try:
            for name in names:
                data = archive.fetch(name)
                if data is None:
                    raise CommitsUnknown(f"{name} is no longer archived")
                (Path(temp) / name).write_bytes(data)
        except (DrplanError, StorageError, OSError) as exc:
            raise CommitsUnknown(f"the WAL could not be read ({exc})") from None
        try:
            proc = subprocess.run(
                [pg_waldump, "--path", temp, "--rmgr=Transaction", names[0], names[-1]],
                capture_output=True, text=True, errors="replace", check=False,
                timeout=WALDUMP_TIMEOUT,
                # its messages in English, its times in UTC
                env={"LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise CommitsUnknown(f"pg_waldump did not run ({exc})") from None
    if proc.returncode != 0 and not any(ended in proc.stderr for ended in _ENDED):
        lines = proc.stderr.strip().splitlines()
        raise CommitsUnknown(
            f"pg_waldump cannot read it ({lines[-1] if lines else proc.returncode})"
        )
    return parse_commits(proc.stdout)

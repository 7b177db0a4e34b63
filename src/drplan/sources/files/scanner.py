"""The scan ahead of a file backup: how many files and bytes there are to back up, counted
while the backup runs (as restic's scanner does), so that its progress has a total that
grows until the scan completes, and then an ETA.

It reads metadata only (directory listings and ``lstat``), applies the backup's excludes
and ``--one-file-system`` as the walk does, and counts what the backup counts: regular
files, every name of a hard link, by their size. It stores nothing and changes nothing;
a directory it cannot list is passed over (the backup reports it).

It runs in a child process at a lower priority, not in a thread: in CPython a scanning
thread holds the interpreter lock for every entry, and slowed an incremental backup of
60,000 unchanged files by a quarter; a process costs the backup nothing it needs. So
this module imports nothing from drplan but ``excludes.py`` beside it (which imports
nothing either): it runs as a script (``python -I -S scanner.py``) and reads its orders
on standard input. It stops when the backup ends or fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drplan.progress import Progress
    from drplan.sources.files.excludes import Excludes

NICENESS = 10  # below the backup: the scan only informs, the backup is the work
REPORT_EVERY = 0.05  # seconds between the counts a child sends
DONE = b"done"


def count(
    paths: list[bytes],
    excludes: Excludes,
    one_file_system: bool,
    found: Callable[[int, int], None],
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Call ``found(files, bytes)`` for what backing up ``paths`` reads, a directory at a
    time, until the tree is counted or ``stop()``."""
    for top in _outermost(paths):
        try:
            st = os.lstat(top)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found(1, st.st_size)
            continue
        root_dev = st.st_dev
        stack = [top] if stat.S_ISDIR(st.st_mode) else []
        while stack and not stop():
            path = stack.pop()
            files = size = 0
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        child = path + b"/" + entry.name if path != b"/" else b"/" + entry.name
                        if excludes.excluded(child, entry.name):
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue  # vanished since the listing
                        if stat.S_ISREG(st.st_mode):
                            files, size = files + 1, size + st.st_size
                        elif stat.S_ISDIR(st.st_mode) and not (
                            one_file_system and st.st_dev != root_dev
                        ):
                            stack.append(child)
            except OSError:
                pass  # cannot be listed: the backup says so, the total goes without it
            found(files, size)


def _outermost(paths: list[bytes]) -> list[bytes]:
    """The paths a backup walks: one inside another is walked as part of it."""
    unique = sorted({os.path.abspath(p) for p in paths})
    return [
        p for p in unique if not any(p.startswith(q.rstrip(b"/") + b"/") for q in unique if q != p)
    ]


@contextmanager
def scanning_ahead(
    paths: list[str], excludes: Excludes, one_file_system: bool, progress: Progress
) -> Iterator[None]:
    """The scan in a child process while the block (the backup) runs, its counts added to
    ``progress`` as they come; stopped when the block ends. Without a child (it could not
    start), the progress has no total: the backup goes on the same."""
    orders = json.dumps(
        {
            "paths": [os.fsencode(p).hex() for p in paths],
            "excludes": excludes.path_patterns + excludes.name_patterns,
            "one_file_system": one_file_system,
        }
    ).encode()
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        yield
        return
    reader = threading.Thread(
        target=_read_counts, args=(child, orders, progress), name="drplan-scan", daemon=True
    )
    reader.start()
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()  # it only reads metadata: nothing to clean up
        child.wait()
        reader.join()


def _read_counts(child: subprocess.Popen[bytes], orders: bytes, progress: Progress) -> None:
    assert child.stdin is not None
    assert child.stdout is not None
    with contextlib.suppress(OSError):  # it was stopped before it read its orders
        child.stdin.write(orders)
        child.stdin.close()
    with child.stdout:
        for line in child.stdout:
            if line.strip() == DONE:
                progress.totals_complete()
                return
            with contextlib.suppress(ValueError):
                files, size = (int(x) for x in line.split())
                progress.found(files, size)


def _child() -> None:
    """Count as ``count`` does, and write ``FILES BYTES`` lines (what was found since the
    last), then ``done``, on standard output."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    orders = json.loads(sys.stdin.buffer.read())
    pending = [0, 0]
    sent = time.monotonic()

    def found(files: int, size: int) -> None:
        nonlocal sent
        pending[0] += files
        pending[1] += size
        if time.monotonic() - sent >= REPORT_EVERY:
            send()
            sent = time.monotonic()

    def send() -> None:
        sys.stdout.buffer.write(b"%d %d\n" % (pending[0], pending[1]))
        sys.stdout.buffer.flush()
        pending[0] = pending[1] = 0

    # The backup's own matching, from the module beside this one (it imports nothing).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from excludes import Excludes  # type: ignore[import-not-found,unused-ignore] # noqa: PLC0415

    count(
        [bytes.fromhex(p) for p in orders["paths"]],
        Excludes(orders["excludes"]),
        orders["one_file_system"],
        found,
    )
    send()
    sys.stdout.buffer.write(DONE + b"\n")
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):  # the backup ended first
        _child()

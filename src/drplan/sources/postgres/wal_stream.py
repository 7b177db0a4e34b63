"""``drplan wal stream``: WAL as it is written, through a supervised ``pg_receivewal``.

archive_command hands over a segment when it is full (or at ``archive_timeout``):
on a quiet server that can be many minutes of commits. ``pg_receivewal`` receives
WAL over replication as it is written, into a local directory, holding its place
with a replication slot so the server keeps what it has not received. drplan ships
each completed segment (and history file) to every WAL location, then removes it
locally, and every ``partial_every`` seconds ships the segment being written as
``<segment>.partial``, replacing the previous one: the recovery point is then that
old at most. A restore uses a ``.partial`` where the complete segment is not archived.

pg_receivewal is restarted when it exits (server restart, network), with backoff; what
it received is shipped as soon as it exits (a crashed server may be gone for hours), and
on stop it is asked to finish (SIGINT), and what it received is shipped.

A full disk stops pg_receivewal as it opens a segment: it writes the segment's whole
size first, and leaves what it could write. Nothing is lost (no WAL is written into an
unfinished segment, and the slot keeps the server's), but pg_receivewal refuses to
start again beside that file. Before each start, what was received is shipped (which
frees room) and such a file removed: streaming goes on once there is room.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from drplan.errors import DrplanError
from drplan.sources.postgres.binaries import Binaries
from drplan.sources.postgres.wal_agent import NamedArchive, push_file
from drplan.sources.postgres.wal_archive import DEFAULT_SEGMENT_SIZE, SEGMENT, WAL_FILE
from drplan.storage import StorageError

PARTIAL = ".partial"
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
POLL = 0.2


def slot_name(system: str) -> str:
    """A replication slot name for the system (lower-case letters, digits, underscores)."""
    return "drplan_" + re.sub(r"[^a-z0-9_]", "_", system.lower())[:50]


class WalStreamer:
    def __init__(
        self,
        binaries: Binaries,
        dsn: str,
        password: str | None,
        archives: list[NamedArchive],
        directory: Path,
        *,
        slot: str,
        partial_every: float,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self.binaries = binaries
        self.dsn = dsn
        self.env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
        self.archives = archives
        self.directory = directory
        self.slot = slot
        self.partial_every = partial_every
        self.segment_size = segment_size  # the server's wal_segment_size
        self.shipped = 0
        self._partial_shipped: tuple[str, int] | None = None  # (name, mtime_ns) last shipped
        self._failing: str | None = None  # the shipping error last logged

    def log(self, message: str) -> None:
        print(
            f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}",
            file=sys.stderr,
            flush=True,
        )

    def create_slot(self) -> None:
        proc = subprocess.run(
            [self.binaries.tool("pg_receivewal"), "--create-slot", "--if-not-exists",
             "--slot", self.slot, "--dbname", self.dsn, "--no-password"],
            capture_output=True, text=True, env=self.env, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DrplanError(
                f"cannot create replication slot {self.slot}: {_last_line(proc.stderr)}",
                hint="the role needs REPLICATION, and max_replication_slots a free slot",
            )

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop`` is set, restarting pg_receivewal when it exits."""
        self.directory.mkdir(parents=True, exist_ok=True)
        failures = 0
        streamed = False
        while not stop.is_set():
            started = time.monotonic()
            try:  # again before each start: after a failover the new primary has none
                self.create_slot()
            except DrplanError as exc:
                if not streamed:
                    raise  # never streamed: a setup problem to report, not to wait out
                failures += 1
                delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
                self.log(f"{exc.message}; trying again in {delay:.0f}s")
                stop.wait(delay)
                continue
            self._before_start()
            proc = self._start()
            streamed = True
            self.log(f"pg_receivewal started (slot {self.slot})")
            self._supervise(proc, stop)
            if stop.is_set():
                break
            # The server went (a crash, a failover): what was received since the last
            # partial is shipped now, not once a server is back, which may be hours away.
            self._ship_received()
            error = _last_line(proc.stderr.read() if proc.stderr else "")
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            self.log(
                f"pg_receivewal exited ({error or proc.returncode}); restarting in {delay:.0f}s"
            )
            stop.wait(delay)
        self.ship(final=True)

    def _ship_received(self, partial: bool = True) -> None:
        """Ship every file received, the segment being written too; a failure is logged
        (what is here stays, and is shipped at the next chance)."""
        try:
            self.ship(final=partial)
        except (DrplanError, StorageError, OSError) as exc:
            message = exc.message if isinstance(exc, DrplanError) else str(exc)
            self.log(f"shipping failed, will retry: {message}")

    def _before_start(self) -> None:
        """Ship what was received (a stop may have left it), and remove a segment file
        pg_receivewal could not write whole (see the module's docstring)."""
        self._ship_received(partial=False)
        for path in self.directory.glob(f"*{PARTIAL}"):
            size = path.stat().st_size
            if size not in (0, self.segment_size):
                self.log(f"{path.name} holds {size} of a segment's {self.segment_size} bytes"
                         " (pg_receivewal could not write it whole: a full disk?); removed,"
                         " to be received again")  # fmt: skip
                path.unlink()

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binaries.tool("pg_receivewal"), "--directory", str(self.directory),
             "--slot", self.slot, "--dbname", self.dsn, "--no-loop", "--no-password",
             "--synchronous", "--status-interval", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env,
        )  # fmt: skip

    def _supervise(self, proc: subprocess.Popen[str], stop: threading.Event) -> None:
        last_partial = time.monotonic()
        while proc.poll() is None:
            if stop.wait(POLL):
                proc.send_signal(signal.SIGINT)  # pg_receivewal flushes and exits
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                return
            try:
                self.ship(final=False)
                if time.monotonic() - last_partial >= self.partial_every:
                    self.ship_partial()
                    last_partial = time.monotonic()
                self._failing = None
            except (DrplanError, StorageError, OSError) as exc:
                # Kept here and shipped when the location is back: nothing is lost meanwhile.
                message = exc.message if isinstance(exc, DrplanError) else str(exc)
                if message != self._failing:
                    self.log(f"shipping failed, will retry: {message}")
                self._failing = message

    def ship(self, *, final: bool) -> None:
        """Push every completed file received, oldest first, and remove it locally."""
        done = sorted(
            p
            for p in self.directory.iterdir()
            if WAL_FILE.match(p.name) and not p.name.endswith(PARTIAL)
        )
        for path in done:
            push_file(self.archives, path.name, path.read_bytes())
            path.unlink()
            self.shipped += 1
        if final:
            self.ship_partial()

    def ship_partial(self) -> None:
        partials = sorted(
            p for p in self.directory.glob(f"*{PARTIAL}") if SEGMENT.match(p.name[:24])
        )
        if not partials:
            return
        current = partials[-1]
        stamp = (current.name, current.stat().st_mtime_ns)
        if stamp == self._partial_shipped:
            return
        data = current.read_bytes()
        for where in self.archives:
            try:
                where.archive.push_partial(current.name[:24], data)
            except DrplanError as exc:
                raise DrplanError(f"location {where.location}: {exc.message}") from exc
        self._partial_shipped = stamp


def _last_line(text: str) -> str:
    """pg_receivewal's last word, without its "disconnected" that follows any error."""
    lines = [line.strip().removeprefix("pg_receivewal: ") for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[-1] == "error: disconnected":
        lines.pop()
    return lines[-1] if lines else ""

"""One run of a task, as a child process: ``drplan backup JOB --json``, ``drplan forget``,
``drplan check`` (see ``tasks``).

A child, not a thread: a run that hangs past its timeout can be killed (with
everything it started, pg_basebackup included: it leads its own process group),
and a run that crashes cannot take the daemon with it. The child writes its report
as JSON on standard output and, on failure, its one-line error on standard error;
the exit code says how it ended (docs/cli.md). A continuous task (the WAL stream)
runs for days: its standard error is passed on to the daemon's log line by line as it
comes, and only the last lines are kept, for the error when it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from drplan.catalog.store import FAILED, PARTIAL, SUCCEEDED, TIMED_OUT

log = logging.getLogger("drplan.serve")

KILL_GRACE = timedelta(seconds=10)  # after SIGTERM, before SIGKILL
# Exit codes that mean the snapshot was saved, though not everything went well.
SAVED_CODES = {14: "some files could not be read", 16: "some locations did not get it"}


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded, partial, failed, timed_out
    report: dict[str, Any]
    error: str | None
    exit_code: int | None


class JobProcess:
    """A running ``drplan backup JOB``; ``poll`` until it returns an Outcome."""

    def __init__(
        self,
        plan_path: str,
        job: str,
        argv: tuple[str, ...],
        timeout: timedelta | None,
        env: dict[str, str] | None = None,
        *,
        follow: bool = False,
    ) -> None:
        self.job = job
        self.timeout = timeout
        self.started = time.monotonic()
        # Timeouts on the monotonic clock: the wall clock set forward (NTP, a suspended
        # VM) must not kill a run that has not taken its time.
        self.deadline = time.monotonic() + timeout.total_seconds() if timeout else None
        self._killed_at: float | None = None
        # Files, not pipes: a child writing a large report never blocks on a full pipe
        # while the daemon is busy elsewhere.
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _outcome
        self._err: IO[bytes] | None = None if follow else tempfile.TemporaryFile()  # noqa: SIM115
        self._tail: deque[str] = deque(maxlen=20)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drplan", "--plan", plan_path, *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.PIPE if follow else self._err,
            env=env,
            start_new_session=True,
        )
        self._follower: threading.Thread | None = None
        if follow:
            self._follower = threading.Thread(
                target=self._follow, name=f"drplan-{job}-log", daemon=True
            )
            self._follower.start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._tail.append(line)
                    log.info("%s: %s", self.job, line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def elapsed(self) -> timedelta:
        """How long it has run, on the monotonic clock (a wall clock jump changes nothing)."""
        return timedelta(seconds=time.monotonic() - self.started)

    def poll(self) -> Outcome | None:
        """The outcome once the run has ended; past its deadline it is stopped first."""
        code = self.proc.poll()
        if code is None:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._stop()
            return None
        return self._outcome(code)

    def wait(self) -> Outcome:
        """Block until the run ends (stopped past its timeout, as ``poll`` does)."""
        while (outcome := self.poll()) is None:
            time.sleep(0.1)
        return outcome

    def _stop(self) -> None:
        if self._killed_at is None:
            self._killed_at = time.monotonic()
            self._signal(signal.SIGTERM)
        elif time.monotonic() - self._killed_at >= KILL_GRACE.total_seconds():
            self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """Ask the run to stop (the daemon is shutting down)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def _outcome(self, code: int) -> Outcome:
        self._out.seek(0)
        out = self._out.read()
        self._out.close()
        if self._err is not None:
            self._err.seek(0)
            err = self._err.read().decode("utf-8", "replace")
            self._err.close()
        else:
            assert self._follower is not None
            self._follower.join(timeout=5)  # the child is gone: its pipe ends soon
            err = "\n".join(self._tail)
        try:
            report = json.loads(out) if out.strip() else {}
        except ValueError:
            report = {}
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        message = next((ln for ln in reversed(lines) if ln.startswith("drplan:")), None)
        error = (
            message.removeprefix("drplan:").strip() if message else (lines[-1] if lines else None)
        )
        if self._killed_at is not None:
            return Outcome(
                TIMED_OUT, report, f"stopped: it ran past its timeout ({self.timeout})", code
            )
        if code == 0:
            return Outcome(SUCCEEDED, report, None, code)
        if code in SAVED_CODES and report.get("snapshot"):
            # What was left out, by name, rather than "see the warnings above".
            missed = (report.get("summary") or {}).get("errors") or []
            shown = "; ".join(missed[:3]) + (
                f" (and {len(missed) - 3} more)" if len(missed) > 3 else ""
            )
            return Outcome(PARTIAL, report, shown or error or SAVED_CODES[code], code)
        return Outcome(FAILED, report, error or f"exit code {code}", code)


def child_env(plan_path: str, password_file_env: tuple[str, str] | None) -> dict[str, str]:
    """The environment of each run: this one's, naming the plan (and the password file),
    without a pinned clock: runs record when they really happen; without progress: the
    daemon reads a run's report and its error, never its status lines (docs/cli.md)."""
    env = {**os.environ, "DRPLAN_PLAN": plan_path, "DRPLAN_PROGRESS_INTERVAL": "off"}
    if password_file_env:
        env[password_file_env[0]] = password_file_env[1]
    env.pop("DRPLAN_NOW", None)
    return env

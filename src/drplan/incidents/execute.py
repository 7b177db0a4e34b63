"""Running the automated part of a step: a drplan command (``action``) or a shell
command (``run``), in a process group of its own, against a timeout, its output kept.

A step that hangs is stopped with everything it started (SIGTERM to its group, SIGKILL
after a grace). Its output goes to a file, not a pipe (a chatty command never blocks),
and only its end is kept: bounded, with every secret the plan references replaced by
its reference, so the timeline and the catalog never hold a secret.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from drplan.storage.registry import redact

OUTPUT_KEPT = 16 * 1024  # bytes of a step's output that the timeline keeps (its end)
KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 0.05


class Abandoned(Exception):
    """The driver stopped waiting for a step (``drplan serve`` stops): the step goes on,
    and the next driver finds it ended without an outcome."""


@dataclass(frozen=True)
class Finished:
    exit_code: int | None  # None: stopped at its timeout
    seconds: float
    output: str  # the end of its output, secrets redacted

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def argv_of(action: str | None, run: str | None, plan_path: str) -> list[str]:
    """What a step runs: ``drplan --plan PLAN ACTION...``, or ``/bin/sh -c RUN``."""
    if action is not None:
        return [sys.executable, "-m", "drplan", "--plan", plan_path, *shlex.split(action)]
    assert run is not None
    return ["/bin/sh", "-c", run]


def execute(
    argv: list[str], env: dict[str, str], timeout: float,
    secrets: Callable[[], Iterable[tuple[str, str]]],
    on_start: Callable[[int], None] | None = None, meanwhile: Callable[[], None] | None = None,
    abandon: threading.Event | None = None,
) -> Finished:  # fmt: skip
    """Run ``argv`` until it ends or ``timeout`` seconds pass. ``on_start(pid)`` is called
    once it runs (the caller records it, so a successor can tell it was interrupted);
    ``meanwhile()`` between looks at it (the caller's own work goes on while it runs);
    ``secrets()``, once it ended, says what to redact from its output. Once ``abandon``
    is set, Abandoned is raised and the step left running."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        try:
            if on_start is not None:
                on_start(proc.pid)
            code = _wait(proc, started + timeout, meanwhile, abandon)
        except Abandoned:
            raise
        except BaseException:  # Ctrl-C, or the record failed: nothing is left running
            _stop(proc)
            raise
        seconds = time.monotonic() - started
        out.seek(max(0, out.seek(0, os.SEEK_END) - OUTPUT_KEPT))
        text = out.read().decode("utf-8", "replace")
    return Finished(code, seconds, scrub(text, secrets()))


def scrub(text: str, secrets: Iterable[tuple[str, str]]) -> str:
    """``text`` with each secret value replaced by its reference, and credentials in URLs
    hidden; the longest values first, so one that holds another is replaced whole."""
    for value, reference in sorted(secrets, key=lambda s: -len(s[0])):
        if value:
            text = text.replace(value, reference)
    return "\n".join(redact(line) if "://" in line else line for line in text.split("\n"))


def _wait(
    proc: subprocess.Popen[bytes], deadline: float, meanwhile: Callable[[], None] | None,
    abandon: threading.Event | None,
) -> int | None:  # fmt: skip
    with _exit_signal(proc.pid) as ended:
        while True:
            code = proc.poll()
            if code is not None:
                return code
            if abandon is not None and abandon.is_set():
                raise Abandoned
            if time.monotonic() >= deadline:
                _stop(proc)
                return None
            if meanwhile is not None:
                meanwhile()
            ended(POLL)


@contextlib.contextmanager
def _exit_signal(pid: int) -> Iterator[Callable[[float], None]]:
    """A wait of at most so many seconds that ends the moment ``pid`` exits (a pidfd,
    Linux 5.3 and later; elsewhere a plain sleep): the step's end is seen at once, and
    the clock it stops is not read up to a poll late."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        yield time.sleep
        return

    def wait(seconds: float) -> None:
        select.select([fd], [], [], seconds)  # readable once the process has exited

    try:
        yield wait
    finally:
        os.close(fd)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the step's whole process group: SIGTERM, then SIGKILL after a grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # what it left behind in its group
        os.killpg(proc.pid, signal.SIGKILL)

"""Whether a process of this host still runs: the test behind stale locks, leases and
scratch targets left by a process that was killed (kill -9 releases nothing); and
stopping a child server for good."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs here. Someone else's process counts (we may not signal it);
    a pid in use again counts too: what it held then waits for its expiry, the safe side.
    A zombie does not: it has ended, and only waits for a parent (an orphan's may be an
    init that never reaps) to collect its exit status."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 1 :].split()[:1] == ["Z"]  # the name may hold spaces


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Ask a child server to stop (SIGTERM), and kill it when it has not within ``timeout``
    seconds; it is reaped either way."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""Whether a process of this host still runs: the test behind stale locks, leases and
scratch targets left by a process that was killed (kill -9 releases nothing)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether ``pid`` runs here. Someone else's process counts (we may not signal it);
    a pid in use again counts too: what it held then waits for its expiry, the safe side."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True

"""Whether a process still runs: the test behind stale locks, leases, scratch targets
and interrupted incident steps. A zombie has ended, however long nobody reaps it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from drplan.liveness import alive


def test_a_running_process_is_alive_and_an_ended_one_is_not() -> None:
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
    # Killed but not yet reaped: a zombie, which still answers kill(pid, 0).
    deadline = time.monotonic() + 30
    while alive(child.pid):
        assert time.monotonic() < deadline, "a killed child still counts as alive"
        time.sleep(0.02)
    os.kill(child.pid, 0)  # the zombie is still there to be reaped ...
    child.wait()
    assert not alive(child.pid)  # ... and once reaped, gone

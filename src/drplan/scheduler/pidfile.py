"""``serve.pid`` in the state directory: which process ``drplan serve --reload`` signals."""

from __future__ import annotations

import contextlib
import os
import signal

from drplan.errors import DrplanError

PIDFILE = "serve.pid"


def write_pidfile(state_dir: str) -> str:
    path = os.path.join(state_dir, PIDFILE)
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(temp, path)
    return path


def remove_pidfile(path: str) -> None:
    """Remove it if it is still this process's (another daemon may have started since)."""
    with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as f:
        if int(f.read().strip()) != os.getpid():
            return
    with contextlib.suppress(OSError):
        os.unlink(path)


def signal_reload(state_dir: str) -> int:
    """Send SIGHUP to the daemon of ``state_dir``; its pid. DrplanError when none runs."""
    path = os.path.join(state_dir, PIDFILE)
    try:
        with open(path, encoding="ascii") as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        raise DrplanError(
            f"no drplan serve is running with state directory {state_dir} ({PIDFILE} is"
            " missing or names no live process)",
            hint="start it with `drplan serve`, or set $DRPLAN_STATE_DIR to the daemon's",
        ) from None
    return pid

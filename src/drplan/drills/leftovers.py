"""Scratch targets a drill left behind when it was killed (kill -9, a crash, a reboot).

A drill tears its scratch target down however it ends, except when it cannot run at
all. So each scratch directory names its owner (``drplan-drill.owner``: the process
id and this boot's id); the next drill that makes a scratch target under the same
base stops the server of every directory whose owner is gone, and removes it.

A drill can be killed between making its directory and writing that file, so the
directory's own name carries the process id too (``NAME-PID-XXXXXXXX``, made in one
step): a directory without a readable owner file is judged by that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from drplan.liveness import alive
from drplan.nesting import remove_tree

OWNER = "drplan-drill.owner"
STOP_WAIT = 10.0  # seconds for a server to go after SIGQUIT, before SIGKILL


def prefix(name: str) -> str:
    """The start of a scratch directory's name for drill ``name``: the owner is in it
    from the moment the directory exists."""
    return f"{name}-{os.getpid()}-"


def claim(root: Path) -> None:
    """Mark ``root`` as this process's, for as long as it lives (and on this boot)."""
    (root / OWNER).write_text(f"{os.getpid()} {_boot_id()}\n")


def clear_abandoned(base: Path) -> list[Path]:
    """Tear down every scratch directory under ``base`` whose drill is gone; those
    cleared. A directory whose owner cannot be told (not a drill's) stays."""
    cleared: list[Path] = []
    try:
        roots = [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return cleared
    for root in roots:
        if _owned(root):
            continue
        stop_server(root / "data")
        remove_tree(root, ignore_errors=True)
        cleared.append(root)
    return cleared


def _owned(root: Path) -> bool:
    """Whether the drill that made ``root`` may still run (or ``root`` is not a drill's)."""
    try:
        pid, boot = (root / OWNER).read_text().split()
        return boot == _boot_id() and alive(int(pid))
    except (OSError, ValueError):
        pass
    # Killed before its owner file was whole: the process id in the name decides.
    parts = root.name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not a drill's directory: never touched
    return alive(int(parts[1]))


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def stop_server(data_dir: Path) -> None:
    """Stop the scratch server running on ``data_dir``, if one does: an immediate
    shutdown (it is thrown away), then a kill. Only a postgres process of that very
    data directory is signalled."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"postgres" not in command or os.fsencode(data_dir) not in command.replace(b"\0", b" "):
        return  # not that server (the pid was reused)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + STOP_WAIT
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

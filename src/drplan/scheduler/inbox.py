"""How ``drplan trigger`` hands an event to the daemon of its state directory: one JSON file
per event in ``STATE/triggers-inbox/``, written whole (a temporary name, then a rename,
so the daemon never reads half of one), read and removed by the daemon at its next tick
(within a second). The command waits for the file to go, so it can say the event was
taken, and returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from drplan.clock import parse_rfc3339, rfc3339
from drplan.liveness import alive
from drplan.scheduler.pidfile import PIDFILE

log = logging.getLogger("drplan.serve")

INBOX = "triggers-inbox"
SUFFIX = ".json"


@dataclass(frozen=True)
class Handed:
    event: str
    job: str | None
    at: datetime


def daemon_pid(state_dir: str) -> int | None:
    """The pid of the daemon running with ``state_dir``, if one runs."""
    try:
        with open(os.path.join(state_dir, PIDFILE), encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and alive(pid) else None


def hand_over(state_dir: str, event: str, job: str | None, at: datetime) -> str:
    """Leave the event for the daemon; the file's path (gone once the daemon took it)."""
    inbox = os.path.join(state_dir, INBOX)
    os.makedirs(inbox, mode=0o700, exist_ok=True)
    name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
    temp = os.path.join(inbox, f".{name}.tmp")
    with open(temp, "w", encoding="utf-8") as f:
        json.dump({"event": event, "job": job, "at": rfc3339(at)}, f)
    path = os.path.join(inbox, name + SUFFIX)
    os.replace(temp, path)
    return path


def wait_taken(path: str, timeout: float) -> bool:
    """Whether the daemon took the event within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def collect(state_dir: str) -> list[Handed]:
    """The events left since the last look, oldest first; each file is removed. One that
    cannot be read is removed and logged: left there, it would be read every second."""
    inbox = os.path.join(state_dir, INBOX)
    try:
        names = sorted(n for n in os.listdir(inbox) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = os.path.join(inbox, name)
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            found.append(Handed(str(raw["event"]), raw.get("job"), parse_rfc3339(raw["at"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("event file %s cannot be read (%s): removed", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(path)
    return found

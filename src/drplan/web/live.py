"""Live changes, as Server-Sent Events at ``/api/v1/events``: an incident's timeline grew
(on this host's journal or in the catalog), a job run was recorded, the daemon assessed
the locations again. One thread looks for changes every ``LOOK_EVERY`` for the whole
server, however many pages listen; each stream sends what changed since it last looked,
and a comment every ``KEEPALIVE`` so that proxies keep it open. The dashboard's pages
listen and reload what changed (``static/live.js``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from drplan.catalog.schema import incident_events, runs
from drplan.errors import DrplanError
from drplan.incidents.journal import SUFFIX

LOOK_EVERY = 0.25  # seconds between looks for changes (the target: a change seen in 1 s)
STREAM_EVERY = 0.1  # seconds between a stream's looks at what was found (in memory: cheap)
KEEPALIVE = 15.0  # seconds between comments on a quiet stream
KEPT = 1000  # changes kept for streams that fall behind
IDLE_STOP = 60.0  # seconds without a listener after which the looking stops


@dataclass
class Changes:
    """What changed, numbered; filled by one thread that looks at the sources."""

    look: Callable[[], dict[str, Any]]  # the state now: {"incidents": {...}, ...}
    changes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    number: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _seen: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    listeners: int = 0
    _running: bool = False

    def listen(self) -> None:
        """A stream opens: the looking starts if it was not going on."""
        with self._lock:
            self.listeners += 1
            if self._running:
                return
            self._running = True
        try:  # the state it starts from, before the stream opens: no change is missed
            self._seen = self.look()
        except DrplanError:
            self._seen = None
        threading.Thread(target=self._run, name="drplan-live", daemon=True).start()

    def leave(self) -> None:
        with self._lock:
            self.listeners -= 1

    def since(self, number: int) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            return [c for c in self.changes if c[0] > number]

    def _run(self) -> None:
        idle = 0.0
        while not self.stopping.wait(LOOK_EVERY):
            with self._lock:  # nobody listening for a while: no more looking until someone does
                idle = idle + LOOK_EVERY if self.listeners == 0 else 0.0
                if idle >= IDLE_STOP:
                    self._running = False
                    return
            try:
                now = self.look()
            except DrplanError:
                continue  # the catalog is away: the next look tells what changed meanwhile
            if self._seen is not None:
                self._compare(self._seen, now)
            self._seen = now

    def _compare(self, before: dict[str, Any], now: dict[str, Any]) -> None:
        found: list[tuple[str, dict[str, Any]]] = []
        for incident, seq in now["incidents"].items():
            if before["incidents"].get(incident) != seq:
                found.append(("incident", {"id": incident, "entries": seq}))
        if now["runs"] != before["runs"]:
            found.append(("runs", {"newest": now["runs"][0]}))
        if now["assessed"] != before["assessed"]:
            found.append(("assessment", {"time": now["assessed"]}))
        with self._lock:
            for kind, data in found:
                self.number += 1
                self.changes.append((self.number, kind, data))
            del self.changes[:-KEPT]


def looker(catalog: Any, journal: Path, status: Callable[[], dict[str, Any] | None]
           ) -> Callable[[], dict[str, Any]]:  # fmt: skip
    """What the changes are looked for in: the catalog's timelines and runs, this host's
    journal (its files' sizes: a timeline grows by appending), the daemon's assessment."""

    def look() -> dict[str, Any]:
        with catalog.transaction() as conn:
            known = dict(conn.execute(select(incident_events.c.incident,
                                             func.max(incident_events.c.seq))
                                      .group_by(incident_events.c.incident)).all())  # fmt: skip
            newest = conn.execute(select(func.max(runs.c.id), func.max(runs.c.ended_at),
                                         func.count())).one()  # fmt: skip
        if journal.is_dir():
            for path in journal.glob(f"INC-*{SUFFIX}"):
                name = path.name.removesuffix(SUFFIX)
                known[name] = (known.get(name), path.stat().st_size)
        found = status()
        return {"incidents": known, "runs": [str(v) for v in newest],
                "assessed": found["time"] if found else None}  # fmt: skip

    return look


async def stream(changes: Changes, disconnected: Callable[[], Any]) -> AsyncIterator[str]:
    """A page's stream: from now on, every change, as `event:` and `data:` lines."""
    seen = changes.number
    changes.listen()
    try:
        yield "retry: 2000\n\n"
        async for event in _follow(changes, disconnected, seen):
            yield event
    finally:
        changes.leave()


async def _follow(changes: Changes, disconnected: Callable[[], Any], seen: int
                  ) -> AsyncIterator[str]:  # fmt: skip
    quiet = 0.0
    while not changes.stopping.is_set():
        await asyncio.sleep(STREAM_EVERY)
        if await disconnected():
            return
        fresh = changes.since(seen)
        for number, kind, data in fresh:
            yield f"id: {number}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
            seen = number
        quiet = 0.0 if fresh else quiet + STREAM_EVERY
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": still here\n\n"

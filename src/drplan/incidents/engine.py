"""The resident driver: ``drplan serve`` drives this host's open incidents itself, the
moment something changes, instead of a command run once a minute.

It looks at the journal's files several times a second (their names, sizes and change
times: a few ``stat`` calls), and is told directly by the web server after each change
it makes. When an incident changed, or every ``PASS_EVERY`` seconds for the escalation
checks, each open incident is driven in a thread of its own, so an approved step starts
within a fraction of a second of its approval, in a process that has the plan's model,
the catalog and every module open already, and one incident's hour-long restore holds
up no other incident.

A step runs as it does under ``drplan incident run``, in a process group of its own
(:mod:`drplan.incidents.execute`). When ``serve`` stops while one runs, the step goes on;
the next driver sees it ended without an outcome and its ``rerun`` decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drplan.errors import DrplanError
from drplan.incidents.execute import Abandoned
from drplan.incidents.runner import Driver
from drplan.incidents.service import Incidents
from drplan.incidents.state import CLOSED

log = logging.getLogger("drplan.incidents")
LOOK_EVERY = 0.2  # seconds between looks at the journal's files
PASS_EVERY = 15.0  # seconds between drives of every open incident (escalations, updates)

Signature = frozenset[tuple[str, int, int]]


class Engine:
    """Drives every open incident of ``journal_dir`` through ``service()`` (a new view of
    the incidents for each drive: one whose catalog was down tries it again)."""

    def __init__(
        self, journal_dir: Path, service: Callable[[], Incidents], stopping: threading.Event,
        look_every: float = LOOK_EVERY, pass_every: float = PASS_EVERY,
    ) -> None:  # fmt: skip
        self.journal_dir = journal_dir
        self.service = service
        self.stopping = stopping
        self.look_every = look_every
        self.pass_every = pass_every
        self._poked = threading.Event()
        self._driving: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._halts: dict[str, str] = {}  # per incident, where it last stopped (logged once)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drplan-incidents", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Look now: something changed an incident (the web server's hook)."""
        self._poked.set()

    def stop(self) -> None:
        """Stop looking; steps still running go on, and are said."""
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            drivers = list(self._driving.values())
        for thread in drivers:  # each leaves its step within a poll, or ends its record
            thread.join(timeout=5)

    @property
    def driving(self) -> list[str]:
        with self._lock:
            return sorted(self._driving)

    def _loop(self) -> None:
        seen: Signature | None = None
        passed = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            signature = self._signature()
            if signature != seen or now - passed >= self.pass_every:
                seen, passed = signature, now
                try:
                    self._drive_open()
                except DrplanError as exc:  # the next look tries again
                    log.error("reading the open incidents failed: %s", exc.message)
            self._poked.wait(self.look_every)
            self._poked.clear()

    def _signature(self) -> Signature:
        """What changes when any incident's journal does."""
        try:
            entries = list(self.journal_dir.iterdir())
        except FileNotFoundError:
            return frozenset()
        found = set()
        for path in entries:
            try:
                st = path.stat()
            except FileNotFoundError:  # replaced meanwhile: the next look sees the new one
                continue
            found.add((path.name, st.st_size, st.st_mtime_ns))
        return frozenset(found)

    def _drive_open(self) -> None:
        service = self.service()
        try:
            mine = set(service.journal.ids())  # this host's: the catalog's others are driven there
            # Read all at once: one query for what the catalog holds past the journals.
            for found in service.everything():
                incident = found.id
                if incident not in mine or found.status == CLOSED:
                    continue
                with self._lock:
                    if incident in self._driving:
                        continue
                    thread = threading.Thread(target=self._drive, args=(incident,),
                                              name=f"drplan-{incident}", daemon=True)  # fmt: skip
                    self._driving[incident] = thread
                thread.start()
        finally:
            service.close()

    def _drive(self, incident: str) -> None:
        service = self.service()
        try:
            driver = Driver(service, on_event=lambda line: log.info("%s: %s", incident, line),
                            stopping=self.stopping)  # fmt: skip
            halt = driver.drive(incident)
            if self._halts.get(incident) != halt.message:
                self._halts[incident] = halt.message
                log.info("%s", halt.message)
        except Abandoned:
            log.warning("%s: a step still runs as serve stops: the next driver takes up its"
                        " end (its rerun decides)", incident)  # fmt: skip
        except DrplanError as exc:  # another process drives it, or its journal is unreadable
            if self._halts.get(incident) != exc.message:
                self._halts[incident] = exc.message
                log.warning("%s: %s", incident, exc.message)
        except Exception:  # a thread that dies says why; the next pass drives it again
            log.exception("%s: driving the incident failed", incident)
        finally:
            for warning in service.warnings:
                log.warning("%s: %s", incident, warning)
            service.close()
            with self._lock:
                self._driving.pop(incident, None)
            self._poked.set()  # what it recorded may let another incident go on

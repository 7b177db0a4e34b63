"""The daemon's health checks of the status page's components: each component with a
``probe`` is probed on its own schedule (an HTTP GET answered 2xx or 3xx, or a command
that exits 0, within its timeout), in a thread of its own so a slow one delays no other.

A component whose probe failed ``failures`` times in a row is a major outage; one that
answered slower than ``slow_after``, degraded performance; it is operational again at
the next probe that answers in time. The page takes the worse of that and its open
incidents. Each change of state is logged and appended to ``history`` (a JSON line:
component, state, time), which the 90 days of uptime count beside the incidents.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from drplan import clock
from drplan.incidents.execute import execute
from drplan.plan.model.statuspage import StatusPage, StatusProbe
from drplan.statuspage.state import DEGRADED, MAJOR, OPERATIONAL

log = logging.getLogger("drplan.statuspage")
LOOK_EVERY = 1.0  # seconds between looks for a probe that is due


@dataclass
class Probed:
    state: str
    since: datetime
    detail: str
    failed: int = 0  # failures in a row


class Prober:
    def __init__(self, page: Callable[[], StatusPage | None], stopping: threading.Event,
                 history: Path, now: Callable[[], datetime] = clock.now) -> None:  # fmt: skip
        self.page, self.stopping, self.history, self.now = page, stopping, history, now
        self.results: dict[str, Probed] = {}
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="drplan-probes", daemon=True).start()

    def states(self) -> dict[str, str]:
        """Each probed component's state now (operational ones too)."""
        with self._lock:
            return {name: found.state for name, found in self.results.items()}

    def _loop(self) -> None:
        while not self.stopping.wait(LOOK_EVERY):
            page = self.page()
            if page is None:
                continue
            for name, component in page.components.items():
                probe = component.probe
                with self._lock:
                    if (
                        probe is None
                        or name in self._busy
                        or time.monotonic() < self._due.get(name, 0)
                    ):
                        continue
                    self._busy.add(name)
                    self._due[name] = time.monotonic() + probe.every.total_seconds()
                threading.Thread(target=self._probe, args=(name, probe), daemon=True,
                                 name=f"drplan-probe-{name}").start()  # fmt: skip

    def _probe(self, name: str, probe: StatusProbe) -> None:
        try:
            ok, seconds, detail = probe_once(probe)
            self._record(name, probe, ok, seconds, detail)
        finally:
            with self._lock:
                self._busy.discard(name)

    def _record(self, name: str, probe: StatusProbe, ok: bool, seconds: float,
                detail: str) -> None:  # fmt: skip
        with self._lock:
            before = self.results.get(name)
            failed = 0 if ok else (before.failed if before else 0) + 1
            if ok:
                slow = probe.slow_after is not None and seconds > probe.slow_after.total_seconds()
                state = DEGRADED if slow else OPERATIONAL
            else:
                state = (
                    MAJOR if failed >= probe.failures else (before.state if before else OPERATIONAL)
                )
            now = self.now()
            kept = before if before is not None and before.state == state else None
            changed = kept is None
            self.results[name] = Probed(state, kept.since if kept else now, detail, failed)
        if changed and not (before is None and state == OPERATIONAL):
            log.warning("status page: %s is %s (%s)", name, state.replace("_", " "), detail)
            self.history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.history.open("a") as f:
                f.write(json.dumps({"component": name, "state": state,
                                    "at": clock.rfc3339(now)}) + "\n")  # fmt: skip


def probe_once(probe: StatusProbe) -> tuple[bool, float, str]:
    """Whether the component answered in time, how long it took, and what it said."""
    timeout = probe.timeout.total_seconds()
    started = time.monotonic()
    if probe.url is not None:
        try:
            with urllib.request.urlopen(probe.url, timeout=timeout) as answer:
                return answer.status < 400, time.monotonic() - started, f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return False, time.monotonic() - started, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, time.monotonic() - started, f"no answer: {reason}"
    assert probe.command is not None
    done = execute(["/bin/sh", "-c", probe.command], dict(os.environ), timeout, lambda: [])
    if done.timed_out:
        return False, done.seconds, f"no answer in {timeout:g} s"
    last = (done.output.strip().splitlines() or [""])[-1][:200]
    return done.exit_code == 0, done.seconds, f"exit {done.exit_code}{': ' + last if last else ''}"


def probe_spans(
    history: Path, since: datetime
) -> dict[str, list[tuple[datetime, datetime | None, str]]]:
    """Per component, the spans its probes found it not operational: (start, end or None
    while it lasts, state), from ``history``."""
    spans: dict[str, list[tuple[datetime, datetime | None, str]]] = {}
    try:
        lines = history.read_text().splitlines()
    except OSError:
        return spans
    for line in lines:
        try:
            entry = json.loads(line)
            at = clock.parse_rfc3339(entry["at"])
        except (ValueError, KeyError):
            continue  # a line cut short by a crash
        held = spans.setdefault(entry["component"], [])
        if held and held[-1][1] is None:
            held[-1] = (held[-1][0], at, held[-1][2])
        if entry["state"] != OPERATIONAL:
            held.append((at, None, entry["state"]))
    return {n: [s for s in held if s[1] is None or s[1] > since - timedelta(days=1)]
            for n, held in spans.items()}  # fmt: skip

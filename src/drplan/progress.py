"""Progress of a long operation: how much is done of how much there is to do.

One model for the commands that take long: a backup counts files and bytes (its total
found by a scan running ahead of it, so the total grows until the scan completes), a
restore files and bytes of the snapshot (known before the first is written), a copy
and a check that reads data packs and bytes. The service counts into it from any of
its threads; the command line shows it (``drplan.cli.progress``). It only counts and
estimates: nothing in it waits, decides or prints.

Terms:

items
    What the operation counts one by one: files, or packs.
totals known
    The totals will not grow any more: set up front, or the scan completed.
finished
    The operation completed: what was done is the whole of it, 100%.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

UNFINISHED_AT_MOST = 0.999  # a total passed (a file grew) is not done until it is


@dataclass(frozen=True)
class Status:
    items_done: int
    items_total: int
    bytes_done: int
    bytes_total: int
    totals_known: bool
    finished: bool
    elapsed: float  # seconds
    current: str = ""  # what is being worked on, for people

    @property
    def fraction(self) -> float:
        """Done, from 0 to 1: by bytes when there are any to do, else by items."""
        if self.finished:
            return 1.0
        if self.bytes_total > 0:
            done = self.bytes_done / self.bytes_total
        elif self.items_total > 0:
            done = self.items_done / self.items_total
        else:
            return 0.0
        return max(0.0, min(done, UNFINISHED_AT_MOST))

    @property
    def seconds_remaining(self) -> float | None:
        """At the pace so far; unknown while the totals may still grow or nothing is done."""
        if self.finished:
            return 0.0
        fraction = self.fraction
        if not self.totals_known or fraction <= 0:
            return None
        return self.elapsed * (1 - fraction) / fraction

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0


class Progress:
    """Counters shared by the threads of one operation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._items = [0, 0]  # done, total
        self._bytes = [0, 0]
        self._known = False
        self._finished = False
        self._current = ""

    def done(self, items: int = 0, nbytes: int = 0, current: str = "") -> None:
        with self._lock:
            self._items[0] += items
            self._bytes[0] += nbytes
            if current:
                self._current = current

    def found(self, items: int = 0, nbytes: int = 0) -> None:
        """More to do, found by a scan while the work goes on."""
        with self._lock:
            self._items[1] += items
            self._bytes[1] += nbytes

    def set_totals(self, items: int, nbytes: int) -> None:
        """Everything there is to do, known in full."""
        with self._lock:
            self._items[1], self._bytes[1], self._known = items, nbytes, True

    def totals_complete(self) -> None:
        """The scan finished: the totals found are all there is."""
        with self._lock:
            self._known = True

    def finish(self) -> None:
        """The operation completed: what was done is the whole (a file may have vanished
        or grown since the scan)."""
        with self._lock:
            self._items[1], self._bytes[1] = self._items[0], self._bytes[0]
            self._known = self._finished = True

    def status(self) -> Status:
        """The counts now. While the totals are not known, what is done already is part of
        them: the total is at least that (the scan may be behind)."""
        with self._lock:
            items, nbytes = self._items[1], self._bytes[1]
            if not self._known:
                items, nbytes = max(items, self._items[0]), max(nbytes, self._bytes[0])
            return Status(
                items_done=self._items[0],
                items_total=items,
                bytes_done=self._bytes[0],
                bytes_total=nbytes,
                totals_known=self._known,
                finished=self._finished,
                elapsed=self._clock() - self._started,
                current=self._current,
            )

"""Showing the progress of a long command (``drplan.progress``) on standard error.

On a terminal, one live line: a bar, the share done, files (or packs) and bytes done
of the total, the rate and the time left, in human units. With the command's
``--json``, a JSON status line every second or so, as restic's ``--json`` writes them;
the result stays the one JSON document on standard output. Otherwise nothing.

``$DRPLAN_PROGRESS_INTERVAL`` sets the seconds between updates (default 1 for JSON
lines, 0.2 on a terminal); ``0`` updates at every change (tests use it), ``off``
shows no progress at all (the daemon's runs: nothing reads it there).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import click

from drplan.cli.context import human_bytes
from drplan.errors import UsageError
from drplan.progress import Progress, Status

INTERVAL_ENV = "DRPLAN_PROGRESS_INTERVAL"
JSON_INTERVAL = 1.0
TERMINAL_INTERVAL = 0.2
SMALLEST_TICK = 0.02  # with interval 0: how often to look for a change
CURRENT_WIDTH = 40


def human_duration(seconds: float) -> str:
    """``45s``, ``1m23s``, ``2h05m``, ``3d04h``: the two largest units, whole seconds up."""
    whole = _whole_seconds(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _whole_seconds(seconds: float) -> int:
    """Rounded up, so that only what is done says 0 s (to the millisecond: 110.0000001 is 110)."""
    return max(0, math.ceil(round(seconds, 3)))


def status_line(unit: str, status: Status) -> str:
    """``42.0%  12 of 340 files  1.2 GiB of 3.4 GiB  45.6 MiB/s  ETA 1m23s``; while the
    scan still finds more, ``12 of 340+ files  1.2 GiB of 3.4 GiB+`` and no share or ETA."""
    known = status.totals_known
    more = "" if known else "+"
    parts = [f"{100 * status.fraction:.1f}%"] if known else []
    if status.items_total or known:
        parts.append(f"{status.items_done} of {status.items_total}{more} {unit}")
        parts.append(f"{human_bytes(status.bytes_done)} of {human_bytes(status.bytes_total)}{more}")
    else:  # nothing known yet of what there is to do
        parts.append(f"{status.items_done} {unit}")
        parts.append(human_bytes(status.bytes_done))
    parts.append(f"{human_bytes(status.bytes_per_second)}/s")
    remaining = status.seconds_remaining
    if remaining is not None:
        parts.append(f"ETA {human_duration(remaining)}")
    return "  ".join(parts)


def status_json(action: str, unit: str, status: Status) -> dict[str, Any]:
    """A status line for ``--json``: restic's field names, ``files`` or ``packs`` per command."""
    remaining = status.seconds_remaining
    return {
        "message_type": "status",
        "action": action,
        "percent_done": round(status.fraction, 4),
        f"total_{unit}": status.items_total,
        f"{unit}_done": status.items_done,
        "total_bytes": status.bytes_total,
        "bytes_done": status.bytes_done,
        "totals_complete": status.totals_known,
        "seconds_elapsed": int(status.elapsed),
        "seconds_remaining": None if remaining is None else _whole_seconds(remaining),
    }


class _Renderer(Protocol):
    def show(self, status: Status) -> None: ...

    def close(self) -> None: ...


class _JsonLines:
    def __init__(self, action: str, unit: str) -> None:
        self.action, self.unit = action, unit

    def show(self, status: Status) -> None:
        line = json.dumps(status_json(self.action, self.unit, status), separators=(",", ":"))
        click.echo(line, err=True)

    def close(self) -> None:
        pass


class _Terminal:
    """A transient rich line on standard error, redrawn at each update."""

    def __init__(self, action: str, unit: str) -> None:
        # Imported only for a terminal: start-up time is a large part of a quick command.
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import BarColumn, TextColumn  # noqa: PLC0415
        from rich.progress import Progress as Bar  # noqa: PLC0415

        self.unit = unit
        self.bar = Bar(
            TextColumn(f"[bold]{action}[/]"),
            BarColumn(bar_width=30),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[current]}", style="dim"),
            console=Console(stderr=True),
            transient=True,
            auto_refresh=False,
            redirect_stdout=False,  # what goes to standard output stays there
        )
        self.task = self.bar.add_task("", total=None, current="")
        self.bar.start()

    def show(self, status: Status) -> None:
        self.bar.update(
            self.task,
            description=status_line(self.unit, status),
            total=1000 if status.totals_known else None,  # a pulse while the scan goes on
            completed=round(1000 * status.fraction),
            current=status.current[-CURRENT_WIDTH:],
        )
        self.bar.refresh()

    def close(self) -> None:
        self.bar.stop()


def _interval(as_json: bool) -> float | None:
    """Seconds between updates; None when progress is turned off."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return JSON_INTERVAL if as_json else TERMINAL_INTERVAL
    if raw.lower() == "off":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        raise UsageError(
            f"${INTERVAL_ENV} is {raw!r}: not a number of seconds",
            hint="unset it, or set seconds (0: every change) or off",
        )
    return seconds


@contextmanager
def progress_shown(action: str, unit: str, as_json: bool) -> Iterator[Progress | None]:
    """A Progress for the block to count into, shown while it runs (see the module
    docstring), and once more at 100% when it completes; None when nothing is shown, so
    the service spares the counting (a backup its scan)."""
    interval = _interval(as_json) if as_json or sys.stderr.isatty() else None
    if interval is None:
        yield None
        return
    progress = Progress()
    renderer: _Renderer = _JsonLines(action, unit) if as_json else _Terminal(action, unit)
    stop = threading.Event()

    def tick() -> None:
        shown = None
        while not stop.wait(max(interval, SMALLEST_TICK)):
            status = progress.status()
            counts = (status.items_done, status.items_total, status.bytes_done, status.bytes_total)
            if interval == 0 and counts == shown:
                continue  # every change, not every tick
            shown = counts
            renderer.show(status)

    thread = threading.Thread(target=tick, name="drplan-progress", daemon=True)
    thread.start()
    completed = False
    try:
        yield progress
        completed = True
    finally:
        stop.set()
        thread.join()
        if completed:
            progress.finish()
            renderer.show(progress.status())
        renderer.close()

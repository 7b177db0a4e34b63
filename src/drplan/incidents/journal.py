"""The local journal of incidents: one file per incident in the state directory, an
event per line, appended and synced before anything else is told of it.

The journal is written first because the catalog may be lost in the very disaster the
incident is about (a data-center failure takes its PostgreSQL down): the events go to
the catalog after, and again whenever it is back (``sync``). Appends to one incident
are serialized by a lock on its file, so ``serve`` and a responder's command never give
two events the same place. A line cut short by a crash was never acknowledged: reading
skips it and the next append overwrites it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from drplan.errors import DrplanError, IntegrityError
from drplan.incidents.timeline import Event, make_event, parse

SUFFIX = ".timeline"
ID_PATTERN = re.compile(r"^INC-[0-9A-Z]{4,12}$")


class Journal:
    """The incidents journaled in ``directory`` (``STATE_DIR/incidents``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, incident: str) -> Path:
        if not ID_PATTERN.match(incident):
            raise ValueError(f"not an incident id: {incident!r}")
        return self.directory / f"{incident}{SUFFIX}"

    def ids(self) -> list[str]:
        """The incidents journaled here, oldest first."""
        try:
            files = sorted(self.directory.glob(f"INC-*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return []
        return [p.name.removesuffix(SUFFIX) for p in files if ID_PATTERN.match(p.stem)]

    def has(self, incident: str) -> bool:
        return self.path(incident).exists()

    def read(self, incident: str) -> list[Event]:
        """Every whole event of ``incident``, in order (empty when not journaled here)."""
        try:
            with open(self.path(incident), "rb") as f:
                return parse_journal(f.read(), self.path(incident))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _unwritable(self.path(incident), exc, "read") from None

    def append(
        self, incident: str, kind: str, actor: str, data: dict[str, Any], at: datetime,
        *, new: bool = False, catch_up: Callable[[list[Event]], list[Event]] | None = None,
    ) -> Event:  # fmt: skip
        """Append one event and sync it; ``new``: the incident's first (its file must not
        exist yet, so two declarations never share an id); ``catch_up``: given the
        journal's events, those another copy (the catalog) has after them, taken in first
        (another host acted on the incident), so the new event follows every other."""
        with self._locked(incident, new) as f:
            content = f.read()
            whole = content[: content.rfind(b"\n") + 1]
            events = parse_journal(whole, self.path(incident))
            start = len(whole)
            tail = catch_up(events) if catch_up is not None else []
            events += tail
            whole += b"".join(_line(e) for e in tail)
            event = make_event(events[-1] if events else None, incident, kind, actor, data, at)
            line = whole[start:].decode() + _line(event).decode()
            try:
                f.seek(start)
                f.truncate()  # a line a crash cut short: never acknowledged
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _unwritable(self.path(incident), exc, "write") from None
        return event

    def raw(self, incident: str) -> bytes:
        """The journal's whole lines, as stored (what replicas hold)."""
        try:
            content = self.path(incident).read_bytes()
        except FileNotFoundError:
            return b""
        return content[: content.rfind(b"\n") + 1]

    def replace(self, incident: str, events: list[Event]) -> None:
        """Write a whole timeline (taken over from another copy), atomically."""
        path = self.path(incident)
        staged = path.with_name(path.name + ".new")
        lines = b"".join(_line(e) for e in events).decode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(staged, "wb") as f:
                f.write(lines.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(staged, path)
            _sync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                staged.unlink()
            raise _unwritable(path, exc, "write") from None

    @contextlib.contextmanager
    def _locked(self, incident: str, new: bool) -> Iterator[IO[bytes]]:
        path = self.path(incident)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_EXCL if new else 0), 0o600)
        except FileExistsError:
            raise DrplanError(f"incident {incident} exists already",
                              hint="declare again: another id is chosen") from None  # fmt: skip
        except OSError as exc:
            raise _unwritable(path, exc, "write") from None
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if new:
                _sync_dir(self.directory)
            yield f


def _line(event: Event) -> bytes:
    return (json.dumps({"body": event.body, "hash": event.hash}) + "\n").encode()


def parse_journal(content: bytes, path: Path | str) -> list[Event]:
    """The events of a journal's content (``path``: where it is, for the error)."""
    events = []
    lines = content.split(b"\n")
    for number, line in enumerate(lines[:-1], 1):  # the last is empty, or cut short
        try:
            stored = json.loads(line)
            events.append(parse(stored["body"], stored["hash"]))
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(
                f"incident journal {path}: line {number} is not a timeline entry",
                hint="the catalog or a replica holds another copy: `drplan incident resume"
                " INC --from LOCATION` takes it over",
            ) from None
    return events


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unwritable(path: Path, exc: OSError, what: str) -> DrplanError:
    return DrplanError(
        f"cannot {what} the incident journal {path}: {exc.strerror or exc}",
        hint="free space there or fix its permissions (set $DRPLAN_STATE_DIR to move it)",
    )

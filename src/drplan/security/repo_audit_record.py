"""Recording one repository operation for the audit trail: what it is, which locations it
used, what it did to each, and how it ended.

The operation's storage is wrapped in a :class:`RecordingStorage`, which counts every
object written, deleted and read as it happens: what an entry says the operation touched
is what it did, not what its command remembers to say. The command adds what only it
knows (a restore's snapshot and target) with :func:`note`, and registers the locations
it reaches besides the one it opened (a copy's target, a fan-out's) with
:func:`also_used` or :func:`reached`. :func:`audited`, around the opening of a
repository (``drplan.cli.repo_access.open_repo``), writes the entries when it ends.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import json
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drplan import __version__, clock
from drplan.errors import DrplanError
from drplan.repo.repository import Repository
from drplan.security.repo_audit import instant
from drplan.security.repo_audit_write import Target, write_entries
from drplan.storage import ObjectInfo, Storage, TransientError

Warn = Callable[[str], None]
# Kinds whose ids an entry names: few per operation, and each one matters.
NAMED = ("snapshots", "keys", "revoked", "keyring")
MAX_IDS = 100  # per kind and action; `more` counts the rest
UNCOUNTED = ("locks", "audit")  # a lock's refreshes are not the operation's work
INTERNAL_ERROR = 70
INTERRUPTED = 130


class Tally:
    """Objects and bytes per action (written, deleted, read) and kind, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, dict[str, Any]]] = {
            "written": {}, "deleted": {}, "read": {},
        }  # fmt: skip

    def add(self, action: str, name: str, size: int) -> None:
        kind = name.split("/", 1)[0]
        if kind in UNCOUNTED:
            return
        with self._lock:
            counts = self._counts[action].setdefault(kind, {"objects": 0, "bytes": 0})
            counts["objects"] += 1
            counts["bytes"] += size
            if action != "read" and kind in NAMED:
                ids = counts.setdefault("ids", [])
                if len(ids) < MAX_IDS:
                    ids.append(name.rsplit("/", 1)[-1])
                else:
                    counts["more"] = counts.get("more", 0) + 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._counts)


class RecordingStorage:
    """``inner``, with what goes through it counted in ``tally`` for ``recorder``."""

    def __init__(self, inner: Storage, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.tally = Tally()

    @property
    def url(self) -> str:
        return self.inner.url

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.read(name, offset, length)
        self.tally.add("read", name, len(data))
        return data

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        self.inner.write(name, data, hot=hot, content_type=content_type)
        self.tally.add("written", name, len(data))

    def delete(self, name: str) -> None:
        self.inner.delete(name)
        self.tally.add("deleted", name, 0)

    def verify(self, name: str, data: bytes) -> None:
        self.inner.verify(name, data)

    @property
    def lock_days(self) -> int | None:
        return self.inner.lock_days

    def locked_until(self, name: str) -> datetime | None:
        return self.inner.locked_until(name)

    def lock_until(self, name: str, until: datetime) -> None:
        self.inner.lock_until(name, until)

    @property
    def archives(self) -> bool:
        return self.inner.archives

    def thaw_state(self, name: str) -> str:
        return self.inner.thaw_state(name)

    def request_thaw(self, name: str, days: int, tier: str) -> None:
        self.inner.request_thaw(name, days, tier)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def stat(self, name: str) -> ObjectInfo:
        return self.inner.stat(name)

    def exists(self) -> bool:
        return self.inner.exists()

    def free_space(self) -> int | None:
        return self.inner.free_space()


@dataclass
class Used:
    label: str  # as the operation named the location
    storage: RecordingStorage
    started: str


@dataclass
class Recorder:
    """One operation: its name, what its command noted, the locations it used."""

    operation: str
    subject: str | None
    op: str = field(default_factory=lambda: secrets.token_hex(16))
    details: dict[str, Any] = field(default_factory=dict)
    used: list[Used] = field(default_factory=list)

    @classmethod
    def start(cls, operation: str) -> Recorder:
        """``backup web`` is the operation ``backup`` on the subject ``web``; the key
        commands are two words (``key add``)."""
        words = operation.split()
        size = 2 if words[0] == "key" and len(words) > 1 else 1
        return cls(" ".join(words[:size]), " ".join(words[size:]) or None)

    def use(self, label: str, storage: Storage) -> RecordingStorage:
        recording = RecordingStorage(storage, self)
        self.used.append(Used(label, recording, instant(clock.now())))
        return recording

    def finish(self, repo: Repository, failure: BaseException | None, warn: Warn) -> None:
        """Write the operation's entry to each location it used; never raises (a failed
        write is told through ``warn`` and kept for later, see repo_audit_write)."""
        try:
            outcome, error, code = _outcome(failure)
            common = {
                "version": 1, "op": self.op, "operation": self.operation,
                "subject": self.subject, "host": socket.gethostname(), "user": _user(),
                "pid": os.getpid(), "program": f"drplan {__version__}",
                "time": instant(clock.now()), "outcome": outcome, "error": error,
                "exit_code": code, "details": json.loads(json.dumps(self.details, default=str)),
                "late": False,
            }  # fmt: skip
            targets = [
                Target(u.label, u.storage.inner, u.started, u.storage.tally.as_dict())
                for u in self.used
            ]
            write_entries(repo, targets, common, warn, defer=isinstance(failure, TransientError))
        except Exception as exc:  # the record must never turn a success into a failure
            warn(f"the audit entry of this {self.operation} could not be made: {exc}")


def _outcome(failure: BaseException | None) -> tuple[str, str | None, int]:
    if failure is None or isinstance(failure, GeneratorExit):
        return "ok", None, 0
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted", "interrupted", INTERRUPTED
    if isinstance(failure, DrplanError):
        return "failed", failure.message, failure.exit_code
    if isinstance(failure, SystemExit):
        code = failure.code if isinstance(failure.code, int) else 1
        return ("ok", None, 0) if code == 0 else ("failed", f"exit {code}", code)
    return "failed", f"internal error: {type(failure).__name__}: {failure}", INTERNAL_ERROR


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


# -- what commands call ------------------------------------------------------------------------


def recorder_of(repo: Repository) -> Recorder | None:
    """The operation ``repo`` is recorded for (None: it is not recorded)."""
    storage = repo.storage
    return storage.recorder if isinstance(storage, RecordingStorage) else None


def note(repo: Repository, **details: Any) -> None:
    """Add what the command knows of its work to the entry (never a secret)."""
    recorder = recorder_of(repo)
    if recorder is not None:
        recorder.details.update(details)


def also_used(repo: Repository, label: str, storage: Storage) -> Storage:
    """``storage`` (location ``label``), used by ``repo``'s operation too: it gets an
    entry, if it holds the same repository when the operation ends."""
    recorder = recorder_of(repo)
    return recorder.use(label, storage) if recorder is not None else storage


def reached(repo: Repository, label: str, reach: Callable[[], Storage]) -> Callable[[], Storage]:
    """``reach`` (how to open location ``label``), its storage registered once opened."""
    return lambda: also_used(repo, label, reach())


@contextlib.contextmanager
def recorded(
    operation: str, warn: Warn, opened: Callable[[], Repository | None]
) -> Iterator[Recorder]:
    """Record ``operation``: the caller registers each location it uses (``use``); when the
    block ends, however it ends, each gets its entry, sealed with the repository
    ``opened`` gives then (None: none opened, nothing to seal with, nothing written).
    For commands that open their repositories themselves (``key rotate``)."""
    recorder = Recorder.start(operation)
    failure: BaseException | None = None
    try:
        yield recorder
    except BaseException as exc:
        failure = exc
        raise
    finally:
        repo = opened()
        if repo is not None:
            recorder.finish(repo, failure, warn)


@dataclass
class Audited:
    """The storage to open the repository on, and the repository once opened."""

    storage: Storage
    repo: Repository | None = None


@contextlib.contextmanager
def audited(operation: str, label: str, storage: Storage, warn: Warn) -> Iterator[Audited]:
    """Record ``operation`` on ``storage`` (location ``label``): the caller opens the
    repository on ``.storage`` and sets ``.repo``; when the block ends, however it ends,
    every location used gets its entry. An empty ``operation`` records nothing."""
    run = Audited(storage)
    if not operation:
        yield run
        return
    with recorded(operation, warn, lambda: run.repo) as recorder:
        run.storage = recorder.use(label, storage)
        yield run

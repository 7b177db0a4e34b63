"""Snapshots: one backup's root tree and what describes it (time, host, paths, tags, summary)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from drplan.clock import rfc3339
from drplan.errors import IntegrityError

VERSION = 1


@dataclass
class Summary:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return self.files_new + self.files_changed + self.files_unchanged


@dataclass
class Snapshot:
    time: datetime
    tree: bytes
    paths: list[str]
    host: str
    user: str
    tags: list[str] = field(default_factory=list)
    job: str | None = None
    system: str | None = None
    parent: str | None = None
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "files"})
    summary: Summary = field(default_factory=Summary)
    program: str = ""
    # Ids this snapshot had before re-encryption re-sealed it under another name: a
    # reference to one of them (an incident's, a drill's, a base backup's chain) means it.
    previous_ids: list[str] = field(default_factory=list)
    id: str = ""  # the storage id, known once saved or loaded

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def as_dict(self) -> dict[str, Any]:
        """As `drplan snapshots --json` and the API show it."""
        return {
            "id": self.id, "short_id": self.short_id, "time": rfc3339(self.time),
            "host": self.host, "user": self.user, "paths": self.paths, "tags": self.tags,
            "job": self.job, "system": self.system, "parent": self.parent,
            "tree": self.tree.hex(), "summary": vars(self.summary),
        }  # fmt: skip

    def to_json(self) -> bytes:
        data = {
            "version": VERSION,
            "time": self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "tree": self.tree.hex(),
            "paths": self.paths,
            "host": self.host,
            "user": self.user,
            "tags": self.tags,
            "job": self.job,
            "system": self.system,
            "parent": self.parent,
            "source": self.source,
            "summary": asdict(self.summary),
            "program": self.program,
        }
        if self.previous_ids:  # absent otherwise: a snapshot's bytes stay as they were
            data["previous_ids"] = self.previous_ids
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, snapshot_id: str) -> Snapshot:
        """The snapshot, every field of the type its users expect; IntegrityError otherwise.

        ``source`` is checked only as an object with a text ``kind``: the fields of a base
        backup's record are checked where they are used (``sources.postgres.backup_record``).
        """
        where = f"snapshot {snapshot_id[:8]}"
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"{where} is malformed ({exc})") from None
        version = data.get("version") if type(data) is dict else None
        if type(version) is not int or version != VERSION:
            raise IntegrityError(
                f"{where} has format version {_shown(version)}; this drplan reads {VERSION}",
                hint="written by a newer drplan? upgrade; otherwise it is damaged",
            )
        try:
            source = data.get("source", {"kind": "files"})
            if type(source) is not dict or type(source.get("kind", "")) is not str:
                raise ValueError(f"source is {_shown(source)}")
            return cls(
                time=_time(data.get("time")),
                tree=_snapshot_tree(data.get("tree")),
                paths=_strings(data.get("paths"), "paths"),
                host=_text(data.get("host"), "host"),
                user=_text(data.get("user"), "user"),
                tags=_strings(data.get("tags", []), "tags"),
                job=_optional(data.get("job"), "job"),
                system=_optional(data.get("system"), "system"),
                parent=_optional(data.get("parent"), "parent"),
                source=source,
                summary=_summary(data.get("summary", {})),
                program=_text(data.get("program", ""), "program"),
                previous_ids=_strings(data.get("previous_ids", []), "previous_ids"),
                id=snapshot_id,
            )
        except ValueError as exc:
            raise IntegrityError(f"{where} is malformed ({exc})") from None


def _shown(value: object) -> str:
    """A value as it may appear in a one-line message, cut short."""
    return repr(value)[:60]


def _time(value: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))  # type: ignore[attr-defined]
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC)
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise ValueError(f"time is {_shown(value)}, not an RFC 3339 time") from None


def _snapshot_tree(value: object) -> bytes:
    try:
        tree = bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        tree = b""
    if len(tree) != 32:
        raise ValueError(f"tree is {_shown(value)}, not a blob id (64 hex digits)")
    return tree


def _text(value: object, key: str) -> str:
    if type(value) is not str:
        raise ValueError(f"{key} is {_shown(value)}, not text")
    return value


def _optional(value: object, key: str) -> str | None:
    return None if value is None else _text(value, key)


def _strings(value: object, key: str) -> list[str]:
    if type(value) is not list or any(type(v) is not str for v in value):
        raise ValueError(f"{key} is {_shown(value)}, not a list of text")
    return value


def _summary(value: object) -> Summary:
    if type(value) is not dict:
        raise ValueError(f"summary is {_shown(value)}")
    known = {f.name: f.type for f in fields(Summary)}
    for key, item in value.items():
        kind = known.get(key)
        if kind is None:
            raise ValueError(f"summary has an unknown field {_shown(key)}")
        if kind == "int" and (type(item) is not int or item < 0):
            raise ValueError(f"summary {key} is {_shown(item)}, not a count")
        if kind == "float" and (type(item) not in (int, float) or not 0 <= item < float("inf")):
            raise ValueError(f"summary {key} is {_shown(item)}, not a duration")
        if kind == "list[str]":
            _strings(item, f"summary {key}")
    return Summary(**value)

"""Snapshots: one backup's root tree and what describes it (time, host, paths, tags, summary)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    id: str = ""  # the storage id, known once saved or loaded

    @property
    def short_id(self) -> str:
        return self.id[:8]

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
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, snapshot_id: str) -> Snapshot:
        try:
            data = json.loads(raw)
            if data.get("version") != VERSION:
                raise IntegrityError(
                    f"snapshot {snapshot_id[:8]} has format version {data.get('version')}; this drplan reads {VERSION}"
                )
            return cls(
                time=datetime.fromisoformat(data["time"].replace("Z", "+00:00")),
                tree=bytes.fromhex(data["tree"]),
                paths=list(data["paths"]),
                host=data["host"],
                user=data["user"],
                tags=list(data.get("tags", [])),
                job=data.get("job"),
                system=data.get("system"),
                parent=data.get("parent"),
                source=dict(data.get("source", {})),
                summary=Summary(**data.get("summary", {})),
                program=data.get("program", ""),
                id=snapshot_id,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"snapshot {snapshot_id[:8]} is malformed ({exc})") from None

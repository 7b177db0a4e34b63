"""What this host remembers of the repository audit trails, in ``STATE/audit/``.

anchors.json
    Per location (a repository id and a URL): the newest entry this host wrote or
    verified there. The newest entries of a location can be removed without breaking a
    link; the anchor is what shows it (docs/repository-format.md, "Verifying").
pending/<key>/
    Entries this host could not write to a location (it went away after the operation):
    written, ``late``, before the next entry this host writes there. At most
    ``MAX_PENDING`` per location: a location that refuses every audit write must not
    fill the disk.

Processes of one host update the anchors under an advisory lock (``flock``), so two
writers never lose each other's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drplan.catalog.paths import state_dir
from drplan.security.repo_audit import Ref

MAX_PENDING = 1000


@dataclass(frozen=True)
class Pending:
    path: Path
    fields: dict[str, Any]


class AuditState:
    def __init__(self, root: Path, max_pending: int = MAX_PENDING) -> None:
        self.root = root
        self.max_pending = max_pending

    @classmethod
    def default(cls) -> AuditState:
        return cls(Path(state_dir()) / "audit")

    # -- anchors -------------------------------------------------------------------------------

    def anchor(self, repo_id: str, url: str) -> Ref | None:
        head = self._anchors().get(_key(repo_id, url), {}).get("head")
        return Ref.parse(head) if isinstance(head, str) else None

    def set_anchor(self, repo_id: str, url: str, ref: Ref, time: str) -> None:
        """Move the anchor to ``ref``; never back (a lower seq is older news)."""
        with self._locked():
            anchors = self._anchors()
            current = self.anchor(repo_id, url)
            if current is not None and current.seq > ref.seq:
                return
            anchors[_key(repo_id, url)] = {"head": ref.name, "time": time}
            _write_atomic(self.root / "anchors.json", json.dumps(anchors, indent=1).encode())

    def _anchors(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "anchors.json").read_bytes())
        except (OSError, ValueError):
            return {}  # none yet, or cut by a crash: the next write makes it again
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / "anchors.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- entries not yet written -------------------------------------------------------------

    def pending(self, repo_id: str, url: str) -> list[Pending]:
        """The entries owed to the location, oldest first."""
        found = []
        for path in sorted(self._pending_dir(repo_id, url).glob("*.json")):
            try:
                fields = json.loads(path.read_bytes())["fields"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # cut by a crash while written: nothing was promised by it
            found.append(Pending(path, fields))
        return found

    def add_pending(self, repo_id: str, url: str, fields: dict[str, Any]) -> bool:
        """Keep an entry to write later; False when the location owes too many already."""
        where = self._pending_dir(repo_id, url)
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        if sum(1 for _ in where.glob("*.json")) >= self.max_pending:
            return False
        # Named by time first: the oldest is written first.
        name = f"{fields['time']}-{secrets.token_hex(4)}.json".replace(":", "")
        record = {"repository": repo_id, "url": url, "fields": fields}
        _write_atomic(where / name, json.dumps(record).encode())
        return True

    def _pending_dir(self, repo_id: str, url: str) -> Path:
        digest = hashlib.sha256(_key(repo_id, url).encode()).hexdigest()[:16]
        return self.root / "pending" / digest


def _key(repo_id: str, url: str) -> str:
    return f"{repo_id} {url}"


def _write_atomic(path: Path, data: bytes) -> None:
    """Whole or absent after a crash: written beside, synced, renamed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)

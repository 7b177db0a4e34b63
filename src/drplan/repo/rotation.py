"""The rotation of ``check --read-data-subset x%`` (or a size): which slice of the ring
of packs (``drplan.repo.subset``) this run reads, and where the next one starts.

State, kept between runs in a small JSON file per repository location in drplan's
state directory (``$DRPLAN_STATE_DIR``, else ``~/.local/state/drplan``):

cursor
    The id of the last pack of the ring read and verified; the next slice starts after
    it, round the ring. It never moves past a pack that failed verification, so the
    next run reads that pack again, and the check keeps failing until it is repaired.
read
    The packs read and verified in this pass (by the first 16 hex digits of their ids).
    A slice takes only packs not read yet, so packs written behind the cursor during a
    pass are read before the pass completes, and the share reported as read is true
    of the packs the repository holds now. When every pack of the ring has been read,
    the pass is complete: it is counted and the set starts empty again.

The file is keyed by the repository id and the location's URL: replicas share the id
but not their packs. It is replaced atomically, and only after the packs were read; a
missing or unreadable file starts the rotation at the beginning of the ring.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from drplan.repo.subset import Ring

ID_DIGITS = 16  # of a pack id kept in the read set: collisions would need 2^32 packs


@dataclass
class Rotation:
    cursor: str = ""  # "" is before the first pack of the ring
    read: set[str] = field(default_factory=set)
    pass_started: str | None = None  # RFC 3339: the first run of this pass
    passes: int = 0  # full passes completed
    last_pass_started: str | None = None
    last_pass_completed: str | None = None

    def start(self, ring: Ring, now: str) -> None:
        """Before choosing a slice: forget packs gone from the ring (pruned), and complete
        a pass whose unread packs have all gone."""
        present = {pack_id[:ID_DIGITS] for pack_id, _ in ring}
        self.read &= present
        if ring and self.read == present:
            self._complete(now)
        if self.pass_started is None:
            self.pass_started = now

    def next_slice(self, ring: Ring, budget: int) -> list[str]:
        """Unread packs in ring order after the cursor, until ``budget`` bytes (at least one)."""
        start = bisect.bisect_right([pack_id for pack_id, _ in ring], self.cursor)
        chosen: list[str] = []
        got = 0
        for pack_id, size in ring[start:] + ring[:start]:
            if got >= budget:
                break
            if pack_id[:ID_DIGITS] not in self.read:
                chosen.append(pack_id)
                got += size
        return chosen

    def record(self, chosen: list[str], sound: set[str], ring: Ring, now: str) -> bool:
        """The slice was read; ``sound`` are the packs that verified. Whether a pass completed."""
        moving = True
        for pack_id in chosen:
            if pack_id in sound:
                self.read.add(pack_id[:ID_DIGITS])
                if moving:
                    self.cursor = pack_id
            else:
                moving = False  # the next run starts at the damaged pack again
        if ring and all(pack_id[:ID_DIGITS] in self.read for pack_id, _ in ring):
            self._complete(now)
            return True
        return False

    def share_read(self, ring: Ring) -> float:
        """The percentage of the ring's bytes read and verified in this pass."""
        total = sum(size for _, size in ring)
        done = sum(size for pack_id, size in ring if pack_id[:ID_DIGITS] in self.read)
        return 100 * done / total if total else 0.0

    def _complete(self, now: str) -> None:
        self.passes += 1
        self.last_pass_started, self.last_pass_completed = self.pass_started or now, now
        self.read = set()
        self.pass_started = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "read": sorted(self.read),
            "pass_started": self.pass_started,
            "passes": self.passes,
            "last_pass_started": self.last_pass_started,
            "last_pass_completed": self.last_pass_completed,
        }

    @classmethod
    def from_json(cls, data: Any) -> Rotation:
        """The state as saved; ValueError (or TypeError) when it is not."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        rotation = cls(
            cursor=data["cursor"],
            read=set(data["read"]),
            pass_started=data["pass_started"],
            passes=data["passes"],
            last_pass_started=data["last_pass_started"],
            last_pass_completed=data["last_pass_completed"],
        )
        texts = [rotation.cursor, *rotation.read]
        optional = [rotation.pass_started, rotation.last_pass_started, rotation.last_pass_completed]
        if (
            not all(isinstance(t, str) for t in texts)
            or not all(t is None or isinstance(t, str) for t in optional)
            or not isinstance(rotation.passes, int)
        ):
            raise ValueError("unexpected types")
        return rotation


def rotation_file(state_dir: str, repo_id: str, url: str) -> str:
    """Where the rotation of the repository ``repo_id`` at ``url`` is kept."""
    key = hashlib.sha256(f"{repo_id}\0{url}".encode()).hexdigest()[:16]
    return os.path.join(state_dir, "check", f"rotation-{key}.json")


def load_rotation(path: str) -> Rotation:
    """The saved rotation; a fresh one when there is none or it cannot be read."""
    try:
        with open(path, "rb") as f:
            return Rotation.from_json(json.loads(f.read()))
    except (OSError, ValueError, TypeError, KeyError):
        return Rotation()


def save_rotation(path: str, rotation: Rotation) -> None:
    """Replace the saved rotation atomically: a crash leaves the old file or the new one."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".rotation-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rotation.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise

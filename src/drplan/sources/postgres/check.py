"""``drplan check postgres``: can this location recover the system, and to which points?

For every base backup: its chain is whole, and its stored files are the ones its
``backup_manifest`` lists, at the listed sizes. For the WAL: no gap from the oldest
base backup on (the recoverable window is named), and with ``read_wal`` every
archived WAL file read back and authenticated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from drplan.errors import DrplanError
from drplan.repo.browse import walk
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.backup_record import damage
from drplan.sources.postgres.basebackup import MANIFEST, read_manifest
from drplan.sources.postgres.protocol import TABLESPACES_DIR
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.sources.postgres.wal_status import Window, fmt_time, recoverable_window


@dataclass
class PostgresCheck:
    window: Window
    errors: list[str] = field(default_factory=list)
    wal_read: int = 0

    def as_dict(self) -> dict[str, object]:
        w = self.window
        return {
            "ok": not self.errors,
            "base_backups": [
                {
                    "snapshot": r.base.id,
                    "type": r.base.source.get("type"),
                    "stop_lsn": r.base.source.get("stop_lsn"),
                    "wal_reaches": fmt_time(r.last_time),
                    "gap": list(r.gap) if r.gap else None,
                }
                for r in w.reaches
            ],
            "window": {
                "start": w.start.isoformat() if w.start else None,
                "end": w.end.isoformat() if w.end else None,
            },
            "wal_files": len(w.files),
            "wal_read": self.wal_read,
            "errors": self.errors,
        }


def manifest_mismatches(repo: Repository, snapshot: Snapshot) -> list[str]:
    """Files the manifest lists that are missing or of another size in the stored backup."""
    try:
        manifest = json.loads(read_manifest(repo, snapshot))
        listed = {
            f.get("Path")
            or bytes.fromhex(f["Encoded-Path"]).decode("utf-8", "surrogateescape"): int(f["Size"])
            for f in manifest["Files"]
        }
    except (DrplanError, ValueError, KeyError, TypeError) as exc:
        message = exc.message if isinstance(exc, DrplanError) else f"unreadable ({exc})"
        return [f"{MANIFEST}: {message}"]
    stored = {
        _manifest_name(path.lstrip("/")): node.size
        for path, node in walk(repo, snapshot.tree)
        if node.type == "file"
    }
    return [p for p, size in listed.items() if stored.get(p) != size]


def _manifest_name(path: str) -> str:
    """How the manifest names a stored file (tablespaces are stored apart, see protocol)."""
    if path.startswith(TABLESPACES_DIR + "/"):
        return "pg_tblspc/" + path.removeprefix(TABLESPACES_DIR + "/")
    return path


def check_system(repo: Repository, system: str, *, read_wal: bool = False) -> PostgresCheck:
    window = recoverable_window(repo, system)
    report = PostgresCheck(window)
    if not window.bases:
        report.errors.append(f"no base backup of {system}")
    for bad in window.damaged:  # left out of the window: no restore uses them
        report.errors.append(f"{damage(bad, repo.storage.url)}: no restore uses it")
    by_id = {s.id: s for s in window.bases}
    for base in window.bases:
        missing = [i[:8] for i in base.source.get("chain", []) if i not in by_id]
        if missing:
            report.errors.append(
                f"base backup {base.short_id} builds on {', '.join(missing)}, which are gone"
            )
        wrong = manifest_mismatches(repo, base)
        if wrong:
            report.errors.append(
                f"base backup {base.short_id}: {len(wrong)} file(s) its manifest lists are"
                f" missing or of another size (e.g. {wrong[0]})"
            )
    seen = set()
    for reach in window.reaches:
        if reach.gap is not None and reach.gap not in seen:
            seen.add(reach.gap)
            report.errors.append(
                f"WAL {reach.gap[0]} to {reach.gap[1]} is missing: no point between"
                f" {fmt_time(reach.last_time)} and the next base backup after the gap can be"
                " recovered"
            )
    if read_wal:
        archive = WalArchive(repo, system)
        for wal in window.files:
            try:
                archive.fetch(wal.file)
                report.wal_read += 1
            except DrplanError as exc:
                report.errors.append(exc.message)
    return report

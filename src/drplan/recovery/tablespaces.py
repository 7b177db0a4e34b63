"""A restored cluster's tablespaces, and the layout of a base backup a restore relies on.

A base backup stores each tablespace apart, under ``.drplan-tablespaces/<oid>/`` (see
``sources.postgres.protocol``). A restore moves each to its place, beside the data
directory in ``DIR.tablespaces/<oid>`` or where ``--tablespace-map`` says, and points
``pg_tblspc/<oid>`` at it. Whatever builds a path here is checked before the first
file is written: oids are digits (``sources.postgres.backup_record``); places neither
overlap the target nor one another; and the snapshot's tree holds real directories and
files where drplan moves, links or writes after restoring it, not symlinks that would
carry those operations out of the target. In ``pg_tblspc`` only what PostgreSQL puts
there is accepted: a symlink per tablespace the backup records (and directories, for
in-place tablespaces).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from drplan.errors import IntegrityError, UsageError
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.postgres.backup_record import is_oid
from drplan.sources.postgres.protocol import TABLESPACES_DIR

# What drplan touches in a restored data directory after restore_files has written it
# (postgresql.auto.conf and recovery.signal are written, pg_ctl's log appended to, the
# restore_command probe and the WAL spools live in pg_wal): each must be what its name
# says, never a symlink (a base backup sends pg_wal as a directory even when it is one).
_DIRS = (b"pg_tblspc", b"pg_wal", TABLESPACES_DIR.encode())
_FILES = (b"postgresql.auto.conf", b"recovery.signal", b"standby.signal", b"drplan-restore.log")


def oids(snapshot: Snapshot) -> list[str]:
    return [str(t["oid"]) for t in snapshot.source.get("tablespaces") or []]


def tablespace_places(
    target: Path, snapshot: Snapshot, mapping: dict[str, Path] | None
) -> dict[str, Path]:
    """Where each tablespace of the backup goes: as mapped (by oid), else beside the data
    directory in ``<target>.tablespaces/<oid>`` (never its original place: that may
    belong to a server still running). ``target`` is resolved."""
    mapping = mapping or {}
    spaces = oids(snapshot)
    unknown = sorted(set(mapping) - set(spaces))
    if unknown:
        raise UsageError(
            f"--tablespace-map names {', '.join(unknown)}, which the backup has no tablespace of",
            hint=f"its tablespaces: {', '.join(spaces) or 'none'}",
        )
    bad = [oid for oid in spaces if not is_oid(oid)]
    if bad:  # backup_record refuses such a backup first: this guards the paths below
        raise IntegrityError(f"base backup {snapshot.short_id} records tablespace {bad[0]!r}")
    places = {
        oid: mapping.get(oid, target.parent / f"{target.name}.tablespaces" / oid).resolve()
        for oid in spaces
    }
    _refuse_overlaps(target, places)
    return places


def _refuse_overlaps(target: Path, places: dict[str, Path]) -> None:
    """A place inside the target (or holding it, or another place) would be emptied,
    moved or removed with it."""
    seen: list[tuple[str, Path]] = [("--target-dir", target)]
    for oid, place in places.items():
        for what, other in seen:
            if place == other or place.is_relative_to(other) or other.is_relative_to(place):
                raise UsageError(
                    f"tablespace {oid} would go to {place}, which overlaps {what} {other}",
                    hint="map each tablespace (--tablespace-map OID=DIR) to its own directory,"
                    " outside --target-dir",
                )
        seen.append((f"tablespace {oid}'s place", place))


def check_tablespace_place(place: Path, original: str) -> None:
    """A tablespace's place must be empty or absent: ``--force`` never empties one (no
    postmaster.pid tells that a tablespace is in use), and never its original location
    when that holds anything (a live cluster's tablespace, on this host)."""
    if place.exists() and any(place.iterdir()):
        where = " (its original location)" if str(place) == original else ""
        raise UsageError(
            f"tablespace directory {place}{where} is not empty",
            hint="map it to an empty directory with --tablespace-map OID=DIR",
        )


def check_layout(repo: Repository, snapshot: Snapshot) -> None:
    """Refuse, before anything is written, a base backup whose tree would carry the moves,
    links and writes that follow restoring it out of the target (see the module's doc)."""
    spaces = set(oids(snapshot))
    root = {node.name: node for node in repo.load_tree(snapshot.tree)}

    def damaged(path: str, what: str) -> IntegrityError:
        return IntegrityError(
            f"base backup {snapshot.short_id} in {repo.storage.url} is damaged: {path} is {what},"
            " which PostgreSQL never writes there: refusing to restore it (nothing was written)",
            hint="restore another base backup (--to SNAPSHOT; see `drplan snapshots`) or from"
            " another location (--repo)",
        )

    for name, node in root.items():
        if (name in _DIRS and node.type != "dir") or (name in _FILES and node.type != "file"):
            raise damaged(name.decode(errors="replace"), _kind(node))
    for name in _DIRS:
        subtree = root[name].subtree if name in root else None
        if subtree is None:
            continue
        for child in repo.load_tree(subtree):
            entry = child.name.decode(errors="replace")
            if name == b"pg_wal":
                ok = child.type != "symlink"
            elif name == b"pg_tblspc":  # a tablespace's link, or an in-place tablespace
                ok = (child.type == "symlink" and entry in spaces) or (
                    child.type == "dir" and is_oid(entry)
                )
            else:
                ok = child.type == "dir" and entry in spaces
            if not ok:
                raise damaged(f"{name.decode()}/{entry}", _kind(child))


def _kind(node: Node) -> str:
    if node.type == "symlink":
        return f"a symlink to {(node.target or b'').decode(errors='replace')!r}"
    return {"dir": "a directory", "file": "a file"}.get(node.type, f"a {node.type}")


def place_tablespaces(data: Path, places: dict[str, Path], *, required: bool = True) -> None:
    """Move each tablespace out of the restored tree to its place, and point
    ``pg_tblspc/<oid>`` at it. ``check_layout`` has made sure the paths read here are the
    directories restore_files made: no symlink is followed out of ``data``."""
    held = data / TABLESPACES_DIR
    links = data / "pg_tblspc"
    if held.is_symlink() or links.is_symlink():  # checked before restoring: a guard only
        raise IntegrityError(f"{held} or {links} is a symlink: not placing tablespaces")
    for oid, place in places.items():
        source = held / oid
        if source.is_symlink() or not source.is_dir():
            if not required and not source.is_symlink():
                continue
            raise IntegrityError(f"the backup holds no files of tablespace {oid}")
        if not place.parent.exists():
            place.parent.mkdir(parents=True)
            place.parent.chmod(0o711)  # the server's user must reach its tablespace
        if place.exists():
            place.rmdir()  # checked empty before anything was written
        shutil.move(str(source), str(place))
        link = links / oid
        if link.is_symlink() or link.exists():
            link.unlink()
        links.mkdir(exist_ok=True)
        os.symlink(place, link)
    shutil.rmtree(held, ignore_errors=True)


def remove_made(place: Path, existed: bool) -> None:
    """Undo a failed restore at ``place``: what it put there goes; a directory that was
    there before (empty, as checked) stays, emptied."""
    if not existed:
        shutil.rmtree(place, ignore_errors=True)
        return
    if place.is_symlink() or not place.is_dir():
        return
    for entry in place.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)

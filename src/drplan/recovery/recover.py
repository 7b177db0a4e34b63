"""A PostgreSQL system recovered from the plan's locations: the location chosen, the
base-backup chain rebuilt and verified, the cluster started and its recovery waited for,
each step timed. ``drplan restore postgres`` and drills share it.

Without a location named, the locations of the system's jobs are tried in plan order
(for ``latest``, furthest-reaching first: the first location with a base backup may hold
less WAL than another); the first that can be opened and can reach the target serves.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drplan.errors import RecoveryTargetError, RepositoryNotFoundError
from drplan.plan.model import Plan, PostgresSystem
from drplan.recovery.pitr import (
    Reached,
    Target,
    chain_for,
    choose_base,
    recovery_settings,
    wait_for_recovery,
)
from drplan.recovery.postgres import (
    ClusterRestore,
    NoBaseBackupError,
    PostgresRestoreError,
    choose_chain,
    probe_fetch,
    restore_cluster,
    server_running,
    start_cluster,
)
from drplan.recovery.restore_point import find_restore_point
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.backup_record import damage
from drplan.sources.postgres.binaries import Binaries, BinariesError, find_binaries
from drplan.sources.postgres.scratch import drplan_reachable_by_servers
from drplan.sources.postgres.wal_archive import (
    DEFAULT_SEGMENT_SIZE,
    SEGMENT,
    WalArchive,
    lsn_segment,
    segment_number,
)
from drplan.sources.postgres.wal_status import recoverable_window
from drplan.storage import StorageError

STAGE_WORKERS = 4  # WAL files fetched at once (each a read and a decryption)
OpenLocation = Callable[[str], AbstractContextManager[Repository]]


@dataclass
class Recovered:
    result: ClusterRestore
    location: str
    binaries: Binaries
    note: str | None
    reached: Reached | None = None  # when started
    # Seconds per step: fetch, rebuild, verify (see ClusterRestore), then, when started,
    # start (until it accepts connections: consistent) and replay (until promoted).
    phases: dict[str, float] = field(default_factory=dict)


def recover(
    plan: Plan,
    plan_path: str,
    system_name: str,
    system: PostgresSystem,
    target: Target,
    target_dir: Path,
    *,
    open_location: OpenLocation,
    reach_of: Callable[[str], datetime | None],
    location: str | None = None,
    candidates: list[str] | None = None,
    password_file: str | None = None,
    force: bool = False,
    spaces: dict[str, Path] | None = None,
    start: bool = False,
    port: int = 5433,
    server_env: dict[str, str] | None = None,
    prepare: Callable[[Path], str] | None = None,
    staged_wal: Path | None = None,
    check_fetch: bool = False,
) -> Recovered:
    """Rebuild ``system`` in ``target_dir`` for ``target``, from ``location`` or the first
    of the system's locations that serves; with ``start``, start it on ``port`` and wait
    until recovery has ended. ``server_env`` is the started server's environment (its
    restore_command runs with it); ``prepare``, given the rebuilt data directory, readies
    what the server needs besides and returns more server options. With ``staged_wal``,
    the WAL recovery needs is fetched there first (the ``fetch`` phase) and the server
    copies it from there: it then needs neither drplan, nor the repository's password,
    nor access to the location (a drill's scratch server). With ``check_fetch`` (and
    not ``start``), the restore_command is tried as the server will run it, for a server
    started later by someone else (a switch into production)."""
    if candidates is None:
        candidates = [location] if location else locations_of(plan, system_name)
    else:
        candidates = list(candidates)
    if target.kind == "latest" and len(candidates) > 1:
        reach = {ref: reach_of(ref) for ref in candidates}
        candidates.sort(
            key=lambda ref: reach[ref] or datetime.min.replace(tzinfo=UTC), reverse=True
        )

    def rebuild_from(repo: Repository, ref: str) -> tuple[Rebuilt, str]:
        if staged_wal is not None:
            fetch = copy_command(staged_wal)
        else:
            fetch = restore_command(plan_path, system_name, ref, password_file)
        rebuilt = rebuild_step(repo, system, system_name, target, fetch)(
            target_dir, force, spaces or {}
        )
        if staged_wal is not None:
            staging = time.monotonic()
            stage_wal(repo, system_name, rebuilt.result.chain, staged_wal, target_dir)
            phases = rebuilt.result.phases
            phases["fetch"] = round(phases.get("fetch", 0.0) + time.monotonic() - staging, 3)
        return rebuilt, fetch

    (rebuilt, fetch), ref = _first_that_serves(
        candidates, location, system_name, open_location, rebuild_from
    )
    result = rebuilt.result
    recovered = Recovered(result, ref, rebuilt.binaries, rebuilt.note, phases=dict(result.phases))
    if start or check_fetch:
        refuse_replayed_tablespaces(rebuilt.created_later)
        if os.geteuid() == 0 and staged_wal is None:  # restore_command runs as the owner
            drplan_reachable_by_servers()
        if rebuilt.probe:
            probe_fetch(result.target, fetch, rebuilt.probe, server_env)
    if start:
        options = prepare(result.target) if prepare else ""
        starting = time.monotonic()
        log = start_cluster(rebuilt.binaries, result.target, port, server_env, options)
        result.started_port = port
        replaying = time.monotonic()
        recovered.phases["start"] = round(replaying - starting, 3)
        recovered.reached = wait_for_recovery(
            rebuilt.binaries.tool("pg_controldata"),
            result.target,
            log,
            lambda: server_running(result.target),
        )
        recovered.phases["replay"] = round(time.monotonic() - replaying, 3)
    return recovered


def _first_that_serves(
    candidates: list[str],
    location: str | None,
    system_name: str,
    open_location: OpenLocation,
    rebuild_from: Callable[[Repository, str], tuple[Rebuilt, str]],
) -> tuple[tuple[Rebuilt, str], str]:
    """``rebuild_from`` the first candidate that can be opened and reach the target (only
    ``location`` when one is named: its refusal is final); each refusal is reported."""
    tried: list[str] = []
    refused: RecoveryTargetError | None = None
    for ref in candidates:
        try:
            with open_location(ref) as repo:
                return rebuild_from(repo, ref), ref
        except RecoveryTargetError as exc:
            if location:
                raise
            refused = refused or exc
            tried.append(f"{ref}: {exc.message}")
        except (RepositoryNotFoundError, StorageError, NoBaseBackupError) as exc:
            if location:
                raise
            tried.append(f"{ref}: {exc.message}")
    if refused is not None:
        refused.message = "; ".join(tried)
        raise refused
    raise PostgresRestoreError(
        f"no location holds a usable base backup of {system_name}"
        f" ({'; '.join(tried) or 'the plan names none'})",
        hint="name one with --repo",
    )


def locations_of(plan: Plan, system_name: str) -> list[str]:
    """Every location of the system's jobs (base backups and WAL), in plan order."""
    seen: list[str] = []
    for job in plan.jobs.values():
        if job.system == system_name:
            seen += [name for name in job.locations if name not in seen]
    return seen


def copy_command(staged: Path) -> str:
    """restore_command copying from a directory of staged WAL (absent: not archived)."""
    quoted = shlex.quote(str(staged)).replace("%", "%%")
    return f'test -f {quoted}/%f && cp {quoted}/%f "%p"'


def stage_wal(
    repo: Repository, system: str, chain: list[Snapshot], into: Path, owner_of: Path
) -> int:
    """Fetch every WAL file recovery from ``chain`` may ask for into ``into``: history
    files, and each segment from the base backup's start on (a segment archived only while
    it was being written under its own name, as ``drplan wal fetch`` serves it), owned by
    the owner of ``owner_of`` (the rebuilt data directory). How many were fetched."""
    archive = WalArchive(repo, system)
    files = archive.files()
    size = int(chain[-1].source.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)
    first = lsn_segment(str(chain[0].source.get("start_lsn", "0/0")), size)
    complete = {w.file for w in files if SEGMENT.match(w.file)}
    wanted = set()
    for wal in files:
        name = wal.file.removesuffix(".partial")
        if wal.file.endswith(".history"):
            wanted.add(wal.file)
        elif (
            SEGMENT.match(name)
            and segment_number(name, size) >= first
            and (wal.file == name or name not in complete)
        ):
            wanted.add(name)
    into.mkdir(mode=0o700, exist_ok=True)
    owner = os.stat(owner_of)

    def fetch(name: str) -> None:
        data = archive.fetch(name)
        if data is None:  # forgotten meanwhile: recovery will find the gap itself
            return
        path = into / name
        path.write_bytes(data)
        os.chown(path, owner.st_uid, owner.st_gid)

    with ThreadPoolExecutor(STAGE_WORKERS) as pool:
        list(pool.map(fetch, sorted(wanted)))
    os.chown(into, owner.st_uid, owner.st_gid)
    return len(wanted)


def created_after(base: Snapshot, bases: list[Snapshot]) -> dict[str, str]:
    """Tablespaces later base backups have and ``base`` has not: WAL replay will create
    them, at their original locations (PostgreSQL offers no mapping for that)."""
    known = {str(t["oid"]) for t in base.source.get("tablespaces") or []}
    later: dict[str, str] = {}
    for other in bases:
        if other.time > base.time:
            for space in other.source.get("tablespaces") or []:
                if str(space["oid"]) not in known:
                    later[str(space["oid"])] = str(space["location"])
    return later


def refuse_replayed_tablespaces(created: dict[str, str]) -> None:
    present = {oid: place for oid, place in created.items() if Path(place).exists()}
    if present:
        oid, place = next(iter(present.items()))
        raise PostgresRestoreError(
            f"recovery would replay the creation of tablespace {oid} at {place}, which exists"
            " on this host (a live cluster's?) and which replay would empty: not started",
            hint="restore to a point before it was created, or start the cluster on a host"
            " without that directory",
        )


@dataclass
class Rebuilt:
    result: ClusterRestore
    binaries: Binaries
    note: str | None
    probe: str | None  # an archived WAL file recovery will fetch first, if it replays WAL
    created_later: dict[str, str]  # tablespaces (oid: location) made after the base backup


def rebuild_step(
    repo: Repository, system: PostgresSystem, system_name: str, target: Target, fetch: str
) -> Callable[[Path, bool, dict[str, Path]], Rebuilt]:
    """Choose the chain for ``target`` in ``repo`` (raising before anything is written when
    the location cannot reach it), and return the step that rebuilds it."""

    recovery = None
    note = None
    probe = None
    created_later: dict[str, str] = {}
    if target.kind == "snapshot":
        chain = choose_chain(repo, system_name, target.value)
    else:
        window = recoverable_window(repo, system_name)
        if not window.bases:
            choose_chain(repo, system_name, None)  # raises NoBaseBackupError (or damage)
        for bad in window.damaged:
            warn(f"{damage(bad, repo.storage.url)}: not used")
        if target.kind == "latest" and not window.files:
            chain = choose_chain(repo, system_name, None)
            note = f"{repo.storage.url} holds no archived WAL: restored to the end of the newest base backup"
        else:
            reach = choose_base(window, target, repo.storage.url)
            chain = chain_for(reach, window.bases)
            recovery = recovery_settings(target, fetch)
            probe = reach.last_segment
            created_later = created_after(chain[-1], window.bases)
    major = int(chain[-1].source.get("server_version", 0)) // 10000
    binaries = find_binaries(system.bin_dir, major)
    if target.kind == "name":
        check_restore_point(repo, system_name, binaries, chain[-1], target.value)

    def rebuild(target_dir: Path, force: bool, spaces: dict[str, Path]) -> Rebuilt:
        result = restore_cluster(
            repo, binaries, chain, target_dir, force=force, recovery=recovery, tablespaces=spaces
        )
        return Rebuilt(result, binaries, note, probe, created_later)

    return rebuild


def warn(message: str) -> None:
    """On standard error, whatever the output format: a restore goes on, but not silently."""
    print(f"drplan: warning: {message}", file=sys.stderr, flush=True)


def check_restore_point(
    repo: Repository, system: str, binaries: Binaries, base: Snapshot, name: str
) -> None:
    """Refuse (before anything is written) a restore point the archived WAL does not hold;
    when the archive cannot tell, say so and go on."""
    where = repo.storage.url
    try:
        pg_waldump = binaries.tool("pg_waldump")
    except BinariesError as exc:
        warn(f"cannot check that restore point {name!r} is in the WAL of {where}: {exc.message}")
        return
    size = int(base.source.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)
    search = find_restore_point(WalArchive(repo, system), base, name, pg_waldump, size)
    if search.found is None:
        warn(
            f"cannot check that restore point {name!r} is in the WAL of {where}"
            f" ({search.searched}): {search.reason}; restoring anyway"
        )
    elif not search.found:
        raise RecoveryTargetError(
            f"restore point {name!r} is not in the WAL archived in {where}: searched"
            f" {search.searched} from base backup {base.short_id} on",
            hint="names are exact (case, spaces); choose another restore point, a time or an LSN",
        )


def restore_command(plan_path: str, system: str, location: str, password_file: str | None) -> str:
    """restore_command for the restored cluster: ``drplan wal fetch`` from the location the
    base backup came from, with the same plan and password file."""
    program = Path(sys.executable).with_name("drplan")
    argv = [str(program)] if program.is_file() else [sys.executable, "-m", "drplan"]
    argv += ["--plan", str(Path(plan_path).resolve()), "wal", "fetch", "--system", system]
    argv += ["--repo", location]
    if password_file:
        argv += ["--password-file", str(Path(password_file).resolve())]
    # PostgreSQL expands %f and %p and turns %% into %: a literal % must be doubled.
    return " ".join(shlex.quote(a).replace("%", "%%") for a in argv) + " %f %p"

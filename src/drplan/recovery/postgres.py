"""Restoring a PostgreSQL cluster from its base backups: fetch the chain, combine, verify, start.

The chain is the newest base backup of the system (or the one named) with the
backups it builds on (``source.chain``: the full, then each incremental). Each is
restored like any snapshot, into a staging directory beside the target (the same file
system, so ``pg_combinebackup --link`` hard-links unchanged files instead of copying
them), combined into the target, and checked with ``pg_verifybackup``. A target in use
(a ``postmaster.pid``) is never touched; a non-empty one only when asked.

What happens when the cluster starts is the recovery configuration written into it:
by default the end of the base backup (the WAL each backup carries); for
point-in-time recovery (``recovery.pitr``) archived WAL through ``drplan wal fetch``
up to a target.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from drplan.errors import DrplanError, UsageError
from drplan.nesting import remove_tree
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.recovery.tablespaces import (
    check_layout,
    check_tablespace_place,
    place_tablespaces,
    remove_made,
    tablespace_places,
)
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.postgres.backup_record import check_base_backup
from drplan.sources.postgres.binaries import Binaries
from drplan.sources.postgres.wal_status import base_backups

START_TIMEOUT = 600  # seconds to wait for a started cluster to accept connections


class PostgresRestoreError(DrplanError):
    """A cluster could not be rebuilt from its base backups."""


class NoBaseBackupError(PostgresRestoreError):
    """The location holds no base backup of the system (another location may)."""


@dataclass
class ClusterRestore:
    chain: list[Snapshot]
    target: Path
    stop_lsn: str
    timeline: int
    seconds: float = 0.0
    started_port: int | None = None
    tablespaces: dict[str, Path] = field(default_factory=dict)  # oid -> where it went
    warnings: list[str] = field(default_factory=list)
    # Seconds per step: fetch (files out of the repository), rebuild (pg_combinebackup),
    # verify (pg_verifybackup): a drill reports its RTO by these.
    phases: dict[str, float] = field(default_factory=dict)


def choose_chain(repo: Repository, system: str, snapshot_ref: str | None) -> list[Snapshot]:
    """The base backups to combine, oldest first, ending with the one asked for (newest by
    default). One whose record a restore cannot trust is refused as damage when asked
    for or needed, and passed over for ``latest``."""
    damaged: list[Snapshot] = []
    bases = base_backups(repo, system, damaged)
    if not bases and not damaged:
        raise NoBaseBackupError(
            f"{repo.storage.url} holds no base backup of system {system}",
            hint="run a full backup job of it first, or name another location with --repo",
        )
    if snapshot_ref in (None, "latest"):
        last = check_base_backup(bases[-1] if bases else damaged[-1], repo.storage.url)
    else:
        matches = [s for s in bases + damaged if s.id.startswith(str(snapshot_ref).lower())]
        if len(matches) != 1:
            raise UsageError(
                f"{len(matches)} base backups of {system} match {snapshot_ref!r}",
                hint="see `drplan snapshots`",
            )
        last = check_base_backup(matches[0], repo.storage.url)
    by_id = {s.id: s for s in bases + damaged}
    chain_ids = [*last.source.get("chain", []), last.id]
    missing = [i[:8] for i in chain_ids if i not in by_id]
    if missing:
        raise PostgresRestoreError(
            f"base backup {last.short_id} builds on {', '.join(missing)}, which"
            f" {repo.storage.url} no longer holds (forgotten or damaged)",
            hint="restore an older full backup, or copy the missing ones from another location",
        )
    return [check_base_backup(by_id[i], repo.storage.url) for i in chain_ids]


def _check_target(target: Path, force: bool) -> None:
    """Refuse a target in use, a mount point, or (without ``force``) a non-empty one.
    Nothing is deleted here: see ``_empty``."""
    if target.exists() and os.path.ismount(target):
        raise UsageError(
            f"{target} is a mount point: restore into a directory inside it",
            hint="e.g. --target-dir {target}/data",
        )
    in_use = next(
        (Path(root) for root, _, files in os.walk(target) if "postmaster.pid" in files), None
    )
    if in_use is not None:
        raise UsageError(
            f"{in_use} belongs to a running (or crashed) PostgreSQL server: refusing to touch"
            f" {target}",
            hint="choose another --target-dir, or stop that server and remove its postmaster.pid",
        )
    if target.exists() and any(target.iterdir()) and not force:
        raise UsageError(
            f"{target} is not empty", hint="choose an empty --target-dir, or pass --force"
        )


def incomplete(target: Path) -> Path:
    """Where a restore into ``target`` builds the cluster until it is verified."""
    return target.with_name(f"{target.name}.drplan-incomplete")


def _empty(target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        shutil.rmtree(target)


def restore_cluster(
    repo: Repository,
    binaries: Binaries,
    chain: list[Snapshot],
    target: Path,
    *,
    force: bool = False,
    recovery: str | None = None,
    tablespaces: dict[str, Path] | None = None,
) -> ClusterRestore:
    """Rebuild the cluster of ``chain`` in ``target`` and verify it (not started). It
    recovers, when started, as ``recovery`` (postgresql.auto.conf lines) says, by default
    to the end of the newest base backup. Tablespaces go where ``tablespace_places`` says."""
    started = time.monotonic()
    target = target.resolve()
    places = tablespace_places(target, chain[-1], tablespaces)
    originals = {
        str(t["oid"]): str(t["location"]) for t in chain[-1].source.get("tablespaces") or []
    }
    _check_target(target, force)
    for oid, place in places.items():
        _check_target(place, False)
        check_tablespace_place(place, originals.get(oid, ""))
    for snapshot in chain:
        check_layout(repo, snapshot)
    _empty(target)  # only now that every place is known to be acceptable
    # A failed restore removes what it made, and only that: a place that was there
    # before (empty) stays.
    existed = {place: place.exists() for place in places.values()}
    target.parent.mkdir(parents=True, exist_ok=True)
    # The cluster is built under a name that says it is not one yet, and takes the
    # target's name only once verified: killed at any moment, a restore leaves nothing
    # that passes for a data directory. The next restore there removes what it left.
    building = incomplete(target)
    remove_tree(building, ignore_errors=True)
    staging = target.parent / f".drplan-staging-{secrets.token_hex(4)}"
    done = False
    phases: dict[str, float] = {}
    try:
        if len(chain) == 1:
            _restore_one(repo, chain[0], building)
            place_tablespaces(building, places)
            owner = os.stat(building / "PG_VERSION")
            phases["fetch"] = time.monotonic() - started
        else:
            parts = []
            for snapshot in chain:
                part = staging / snapshot.short_id
                _restore_one(repo, snapshot, part)
                # Each input of pg_combinebackup links its own copy of each tablespace; an
                # older one taken before a tablespace existed has none (the newest, which
                # pg_combinebackup takes the tablespace's files from, has them all).
                staged = {oid: staging / f"{snapshot.short_id}.ts" / oid for oid in places}
                place_tablespaces(part, staged, required=snapshot is chain[-1])
                parts.append(str(part))
            owner = os.stat(Path(parts[-1]) / "PG_VERSION")  # as backed up, before combining
            phases["fetch"] = time.monotonic() - started
            relocate = [
                f"--tablespace-mapping={_escape(staged[oid])}={_escape(places[oid])}"
                for oid in places
            ]
            # Hard links need one file system: a tablespace mapped elsewhere is copied.
            same = all(_device(place) == _device(staging) for place in places.values())
            _run(
                [binaries.tool("pg_combinebackup"), "--link" if same else "--copy", *relocate,
                 *parts, "-o", str(building)],
                "pg_combinebackup",
            )  # fmt: skip
            phases["rebuild"] = time.monotonic() - started - phases["fetch"]
        verifying = time.monotonic()
        _run([binaries.tool("pg_verifybackup"), str(building)], "pg_verifybackup")
        phases["verify"] = time.monotonic() - verifying
        for place in [building, *places.values()]:
            _own(place, owner.st_uid, owner.st_gid)
        _promote_on_start(building, recovery or RECOVERY_SETTINGS)
        os.rename(building, target)  # over the target, empty or gone by now
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:  # an unverified cluster must not be left for someone to start
            remove_tree(building, ignore_errors=True)
            for place, was_there in existed.items():
                remove_made(place, was_there)
    last = chain[-1]
    return ClusterRestore(
        chain,
        target,
        str(last.source.get("stop_lsn", "")),
        int(last.source.get("timeline", 1)),
        round(time.monotonic() - started, 3),
        tablespaces=places,
        phases={k: round(v, 3) for k, v in phases.items()},
    )


def _device(path: Path) -> int:
    """The file system ``path`` is (or will be) on: that of its nearest existing ancestor."""
    while not path.exists():
        path = path.parent
    return os.stat(path).st_dev


def _escape(path: Path) -> str:
    """A path in pg_combinebackup's OLDDIR=NEWDIR (an = inside is written \\=)."""
    return str(path).replace("=", "\\=")


def _restore_one(repo: Repository, snapshot: Snapshot, into: Path) -> None:
    result = restore_files(repo, snapshot, RestoreOptions(target=str(into)))
    if result.failed:
        raise PostgresRestoreError(
            f"base backup {snapshot.short_id}: {len(result.failed)} file(s) could not be"
            f" restored ({result.failed[0]})",
            hint="run `drplan check --read-data`, or restore from another location",
        )


def _run(argv: list[str], tool: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PostgresRestoreError(
            f"{tool} failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
            hint="the restored directory is not usable; nothing was started",
        )


RECOVERY_SETTINGS = """
# Added by drplan restore: recover to the end of the base backup, then start a new
# timeline. A restored cluster must not continue the old one: backups taken of it later
# would otherwise look like successors of backups from the history it left behind.
restore_command = 'false'
recovery_target = 'immediate'
recovery_target_action = 'promote'
"""


# Settings an earlier restore may have left in postgresql.auto.conf (it travels in every
# later base backup): kept, they would override or contradict this restore's target.
RECOVERY_KEYS = frozenset(
    {
        "restore_command",
        "recovery_end_command",
        "recovery_min_apply_delay",
        "recovery_target",
        "recovery_target_action",
        "recovery_target_inclusive",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_timeline",
        "recovery_target_xid",
        "archive_mode",
        "primary_conninfo",
        "primary_slot_name",
    }
)


def _setting_name(line: str) -> str:
    """The setting a configuration line sets (``name = value`` or ``name value``)."""
    return line.split("=", 1)[0].strip().split(None, 1)[0].lower() if line.strip() else ""


NO_ARCHIVING = """
# Added by drplan restore: a restored copy must not archive into the archive of the
# cluster it came from (its new timeline would become part of that history). When
# this copy becomes the production cluster: ALTER SYSTEM RESET archive_mode; restart.
archive_mode = 'off'
"""


# The backed-up cluster's own archive_mode, kept as a comment: what a copy that becomes
# production takes back (``become_production``).
SET_ASIDE = "# set aside by drplan restore: "


def become_production(target: Path) -> None:
    """Ready a restored cluster to take production's place: it archives again, as the
    backed-up cluster did (its ``archive_mode``, set aside at the restore, taken back);
    the recovery settings stay, so that it recovers to its target on start."""
    auto = target / "postgresql.auto.conf"
    text = auto.read_text(encoding="utf-8").replace(NO_ARCHIVING, "\n")
    lines = [
        line.removeprefix(SET_ASIDE)
        if line.startswith(SET_ASIDE) and _setting_name(line.removeprefix(SET_ASIDE)) == "archive_mode"
        else line
        for line in text.splitlines()
    ]  # fmt: skip
    auto.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _promote_on_start(target: Path, settings: str) -> None:
    # Socket lock files of a server that kept its sockets in the data directory come along
    # in base backups (the sockets themselves do not) and would stop this one starting.
    for stale in target.glob(".s.PGSQL.*.lock"):
        stale.unlink()
    # A backup of a standby carries standby.signal, which would win over recovery.signal:
    # the copy would follow production as a replica instead of recovering to its target.
    (target / "standby.signal").unlink(missing_ok=True)
    auto = target / "postgresql.auto.conf"
    lines = auto.read_text(encoding="utf-8").splitlines() if auto.exists() else []
    kept = [line for line in lines if _setting_name(line) not in RECOVERY_KEYS]
    aside = [f"{SET_ASIDE}{line}" for line in lines if _setting_name(line) == "archive_mode"]
    auto.write_text("\n".join(kept + aside) + "\n" + settings + NO_ARCHIVING, encoding="utf-8")
    (target / "recovery.signal").touch()
    owner = os.stat(target)
    if os.geteuid() == 0:
        for made in (auto, target / "recovery.signal"):
            os.chown(made, owner.st_uid, owner.st_gid)


def _own(target: Path, uid: int, gid: int) -> None:
    """The data directory as PostgreSQL requires: mode 0700 and, when run as root, owned (with
    everything in it) by the user that owned the backed-up cluster; pg_combinebackup's
    output is root's otherwise."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        raise PostgresRestoreError(
            f"the backed-up cluster was owned by uid {uid}, which has no user on this host",
            hint="create the user PostgreSQL runs as with that uid, or restore on its host",
        ) from None
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(target):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
        os.chown(target, uid, gid)
    target.chmod(0o700)


def start_cluster(
    binaries: Binaries,
    target: Path,
    port: int,
    env: dict[str, str] | None = None,
    extra_options: str = "",
) -> Path:
    """Start the restored cluster on ``port`` (as the owner of its files when run as root)
    and wait until it accepts connections; return its log. Archiving is switched off: a
    restored copy must not push WAL into the archive of the cluster it came from."""
    prefix = as_owner(target)
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        " -c archive_mode=off"
        " -c max_logical_replication_workers=0"  # no subscription may reach a publisher
        # The log is read for the point reached: in English, UTC, and in this file.
        " -c lc_messages=C -c log_timezone=UTC -c logging_collector=off"
        " -c log_destination=stderr"
    )
    if extra_options:
        options += " " + extra_options
    argv = [
        *prefix,
        binaries.tool("pg_ctl"),
        "-D",
        str(target),
        "-l",
        str(target / "drplan-restore.log"),
        "-o",
        options,
        "-w",
        "-t",
        str(START_TIMEOUT),
        "start",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    log = target / "drplan-restore.log"
    if proc.returncode != 0:
        raise PostgresRestoreError(
            f"the restored cluster did not start: {failure_reason(log) or proc.stderr.strip()}",
            hint=f"see {log}",
        )
    return log


_FATAL = re.compile(r"(?:FATAL|PANIC):\s+(.*)")


def failure_reason(log: Path) -> str:
    """Why a server stopped, from its log: drplan's own WAL fetch error when there is one
    (PostgreSQL's line only says the command failed), else its last FATAL or PANIC."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    ours = [line for line in lines if line.startswith("drplan: ")]
    if ours:
        return ours[-1].removeprefix("drplan: ")
    fatal = [m.group(1) for line in lines if (m := _FATAL.search(line))]
    if fatal:
        return fatal[-1]
    return lines[-1].strip() if lines else ""


def as_owner(target: Path) -> list[str]:
    """The command prefix that runs a command as the owner of ``target`` (when root)."""
    owner = os.stat(target)
    if os.geteuid() == 0 and owner.st_uid != 0:
        return ["setpriv", f"--reuid={owner.st_uid}", f"--regid={owner.st_gid}", "--clear-groups"]
    return []


def expand_command(command: str, file: str, path: str) -> str:
    """``command`` as PostgreSQL runs it: %f the file name, %p its path, %% a percent sign."""
    out, i = [], 0
    while i < len(command):
        pair = command[i : i + 2]
        if pair in ("%f", "%p", "%%"):
            out.append({"%f": file, "%p": path, "%%": "%"}[pair])
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def probe_fetch(target: Path, command: str, file: str, env: dict[str, str] | None = None) -> None:
    """Run the restore_command as the server will (its user, in its data directory) for a
    file known to be archived. A server whose restore_command cannot run (drplan not
    reachable by that user, no password for it) would take the failure for the end of
    the archive, end recovery early and start: this is checked before it starts."""
    probe = target / "pg_wal" / "drplan-probe"
    proc = subprocess.run(  # relative, as PostgreSQL passes %p: the target may have spaces
        [*as_owner(target), "sh", "-c", expand_command(command, file, "pg_wal/drplan-probe")],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env=env,  # the server's, which it will run restore_command with
    )
    probe.unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise PostgresRestoreError(
            f"the restored cluster's restore_command cannot fetch {file} as its owner"
            f" (uid {os.stat(target).st_uid}): exit {proc.returncode}"
            + (f": {lines[-1].removeprefix('drplan: ')}" if lines else ""),
            hint="the server's user must be able to run drplan and read the plan and the"
            " password file (--password-file); nothing was started",
        )


def server_running(target: Path) -> bool:
    """Whether the postmaster of ``target`` is alive (its pid file names a live process)."""
    try:
        pid = int((target / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True

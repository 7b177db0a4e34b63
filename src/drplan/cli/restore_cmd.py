"""``drplan restore SNAPSHOT --target DIR`` (files back, bit-exact, verified, never outside DIR)
and ``drplan restore postgres SYSTEM --target-dir DIR`` (a cluster from its base backups)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from drplan.cli.context import DefaultToCommand, Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import (
    DrplanError,
    IntegrityError,
    RecoveryTargetError,
    RepositoryNotFoundError,
    UsageError,
)
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.storage import StorageError

if TYPE_CHECKING:
    from drplan.plan.model import Plan, PostgresSystem
    from drplan.recovery.pitr import Reached, Target
    from drplan.recovery.postgres import ClusterRestore
    from drplan.repo.repository import Repository
    from drplan.repo.snapshot import Snapshot
    from drplan.sources.postgres.binaries import Binaries


class _DefaultToSnapshot(DefaultToCommand):
    """``drplan restore SNAPSHOT ...`` restores files; ``drplan restore postgres ...`` a cluster."""

    default_command = "snapshot"


@click.group("restore", cls=_DefaultToSnapshot)
def restore_group() -> None:
    """Restore a snapshot's files (`drplan restore SNAPSHOT --target DIR`), or a PostgreSQL
    cluster (`drplan restore postgres SYSTEM --target-dir DIR`)."""


@restore_group.command("snapshot", hidden=True)
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option(
    "--target", required=True, metavar="DIR", help="Directory to restore into (created if missing)."
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    metavar="PATTERN",
    help="Restore only matching paths (glob on the snapshot path; repeatable).",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Threads writing files.")
@click.option(
    "--request-thaw",
    is_flag=True,
    help="From an archive location: ask for the archived packs this restore needs to be thawed.",
)
@click.option(
    "--thaw-days",
    type=click.IntRange(1, 365),
    default=7,
    show_default=True,
    metavar="DAYS",
    help="How long thawed copies stay readable.",
)
@click.option(
    "--thaw-tier",
    type=click.Choice(["Standard", "Bulk", "Expedited"]),
    default="Standard",
    show_default=True,
    help="Thaw speed (and price) tier.",
)
@click.option(
    "--no-thaw-check",
    is_flag=True,
    help="Read archived packs without checking that they are thawed (for services that ignore classes).",
)
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def restore_command(
    settings: Settings,
    snapshot_ref: str,
    target: str,
    includes: tuple[str, ...],
    workers: int | None,
    request_thaw: bool,
    thaw_days: int,
    thaw_tier: str,
    no_thaw_check: bool,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Restore SNAPSHOT (an id prefix or `latest`) into DIR. Run it again to resume."""
    options = RestoreOptions(target=target, includes=list(includes))
    if workers:
        options.workers = workers
    with open_repo(settings, repo_ref, password_file, operation="restore") as repo:
        snapshot = repo.find_snapshot(snapshot_ref)
        if repo.storage.archives and not no_thaw_check:
            from drplan.recovery.thaw import check_thawed  # noqa: PLC0415 - archive locations only

            check_thawed(
                repo, snapshot, list(includes), request=request_thaw, days=thaw_days, tier=thaw_tier
            )
        result = restore_files(repo, snapshot, options)
    if as_json:
        emit_json({"snapshot": snapshot.id, "target": target, **vars(result)})
    else:
        click.echo(
            f"restored snapshot {snapshot.short_id} to {target}: {result.files} files, {result.dirs} directories,"
            f" {human_bytes(result.bytes_written)} written and verified"
            + (f", {result.files_skipped} already complete" if result.files_skipped else "")
        )
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        for failure in result.failed:
            click.echo(f"error: {failure}", err=True)
    if result.failed:
        raise IntegrityError(
            f"{len(result.failed)} file(s) could not be restored: their data failed authentication or is missing",
            hint="run `drplan check --read-data`, and restore those files from another location",
        )


@restore_group.command("postgres")
@click.argument("system_name", metavar="SYSTEM")
@click.option("--target-dir", required=True, metavar="DIR", help="New data directory (empty).")
@click.option(
    "--to",
    "point",
    default="latest",
    show_default=True,
    metavar="latest|TIME|LSN|NAME|SNAPSHOT",
    help="All archived WAL; a time with zone ('2026-11-25 10:15:00+00'); an LSN (0/3000148);"
    " a restore point (name:NAME); or the end of a base backup (its snapshot id).",
)
@click.option("--force", is_flag=True, help="Empty a non-empty --target-dir first.")
@click.option(
    "--tablespace-map",
    "tablespace_map",
    multiple=True,
    metavar="OID=DIR",
    help="Where a tablespace goes (default DIR.tablespaces/OID beside --target-dir).",
)
@click.option(
    "--start", is_flag=True, help="Start the restored cluster and wait until recovery ends."
)
@click.option("--port", type=click.IntRange(1, 65535), default=5433, show_default=True)
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def postgres_command(
    settings: Settings,
    system_name: str,
    target_dir: str,
    point: str,
    force: bool,
    tablespace_map: tuple[str, ...],
    start: bool,
    port: int,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Rebuild SYSTEM's cluster in DIR from its base backups (full, then incrementals) and,
    when it starts, replay archived WAL to the point asked for."""
    from drplan.cli.wal_cmd import postgres_system  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.recovery.pitr import parse_target  # noqa: PLC0415
    from drplan.recovery.postgres import (  # noqa: PLC0415
        NoBaseBackupError,
        PostgresRestoreError,
        probe_fetch,
        server_running,
        start_cluster,
    )

    target = parse_target(point)
    spaces = _tablespace_map(tablespace_map)
    plan_file = settings.load()
    system_name, system = postgres_system(plan_file.plan, system_name)
    # Without --repo, the locations of the system's jobs in plan order: the first that can
    # be opened and can reach the target serves (in a disaster, the primary may be gone).
    candidates = [repo_ref] if repo_ref else locations_of(plan_file.plan, system_name)
    if target.kind == "latest" and len(candidates) > 1:
        # The latest point is the furthest any location reaches: the first location with
        # a base backup may hold no WAL (or less) while another has it to the last seconds.
        reach = {ref: _reach(settings, ref, password_file, system_name) for ref in candidates}
        candidates.sort(
            key=lambda ref: reach[ref] or datetime.min.replace(tzinfo=UTC), reverse=True
        )
    tried: list[str] = []
    refused: RecoveryTargetError | None = None
    for ref in candidates:
        try:
            with open_repo(settings, ref, password_file, operation="restore") as repo:
                fetch = _restore_command(plan_file.path, system_name, ref, password_file)
                rebuild = _rebuild(repo, system, system_name, target, fetch)
                rebuilt = rebuild(Path(target_dir), force, spaces)
                result, binaries, note = rebuilt.result, rebuilt.binaries, rebuilt.note
            break
        except RecoveryTargetError as exc:
            if repo_ref:
                raise
            refused = refused or exc
            tried.append(f"{ref}: {exc.message}")
        except (RepositoryNotFoundError, StorageError, NoBaseBackupError) as exc:
            if repo_ref:
                raise
            tried.append(f"{ref}: {exc.message}")
    else:
        if refused is not None:
            refused.message = "; ".join(tried)
            raise refused
        raise PostgresRestoreError(
            f"no location holds a usable base backup of {system_name}"
            f" ({'; '.join(tried) or 'the plan names none'})",
            hint="name one with --repo",
        )
    reached = None
    if start:
        from drplan.recovery.pitr import wait_for_recovery  # noqa: PLC0415

        _refuse_replayed_tablespaces(rebuilt.created_later)
        if rebuilt.probe:
            probe_fetch(result.target, fetch, rebuilt.probe)
        log = start_cluster(binaries, result.target, port)
        result.started_port = port
        reached = wait_for_recovery(
            binaries.tool("pg_controldata"),
            result.target,
            log,
            lambda: server_running(result.target),
        )
    _report_restore(
        system_name, target, ref, result, reached, port if start else None, note, as_json
    )


def _report_restore(
    system_name: str,
    target: Target,
    ref: str,
    result: ClusterRestore,
    reached: Reached | None,
    port: int | None,
    note: str | None,
    as_json: bool,
) -> None:
    if as_json:
        emit_json(
            {
                "system": system_name,
                "target": str(result.target),
                "to": target.describe(),
                "location": ref,
                "chain": [s.id for s in result.chain],
                "stop_lsn": result.stop_lsn,
                "timeline": result.timeline,
                "seconds": result.seconds,
                "tablespaces": {oid: str(p) for oid, p in result.tablespaces.items()},
                "started_port": result.started_port,
                "reached": None
                if reached is None
                else {
                    "lsn": reached.lsn,
                    "last_transaction": reached.last_transaction.isoformat()
                    if reached.last_transaction
                    else None,
                    "timeline": reached.timeline,
                },
                "note": note,
            }
        )
        return
    kinds = " + ".join(str(s.source.get("type")) for s in result.chain)
    click.echo(
        f"restored {system_name} to {result.target} from {kinds} ({result.chain[-1].short_id}"
        f" in {ref}), verified with pg_verifybackup, consistent at {result.stop_lsn}"
        f" in {result.seconds:.1f}s; recovers to {target.describe()}"
    )
    for oid, place in result.tablespaces.items():
        click.echo(f"tablespace {oid} restored to {place}")
    if note:
        click.echo(f"note: {note}", err=True)
    if reached is not None:
        when = reached.last_transaction.isoformat() if reached.last_transaction else "none replayed"
        click.echo(
            f"started on port {port}: recovery reached {reached.lsn or result.stop_lsn}, last"
            f" transaction {when}, now on timeline {reached.timeline or '?'}"
        )


def _created_after(base: Snapshot, bases: list[Snapshot]) -> dict[str, str]:
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


def _refuse_replayed_tablespaces(created: dict[str, str]) -> None:
    from drplan.recovery.postgres import PostgresRestoreError  # noqa: PLC0415

    present = {oid: place for oid, place in created.items() if Path(place).exists()}
    if present:
        oid, place = next(iter(present.items()))
        raise PostgresRestoreError(
            f"recovery would replay the creation of tablespace {oid} at {place}, which exists"
            " on this host (a live cluster's?) and which replay would empty: not started",
            hint="restore to a point before it was created, or start the cluster on a host"
            " without that directory",
        )


def _tablespace_map(items: tuple[str, ...]) -> dict[str, Path]:
    mapping = {}
    for item in items:
        oid, sep, place = item.partition("=")
        if not sep or not oid.isdigit() or not place:
            raise UsageError(
                f"--tablespace-map {item!r} is not OID=DIR",
                hint="e.g. --tablespace-map 16384=/srv/ts1",
            )
        mapping[oid] = Path(place)
    return mapping


def _reach(
    settings: Settings, ref: str, password_file: str | None, system_name: str
) -> datetime | None:
    """The newest point ``ref`` can recover the system to, None when it cannot be read."""
    from drplan.sources.postgres.wal_status import recoverable_window  # noqa: PLC0415

    try:
        with open_repo(settings, ref, password_file, lock=None, index=False) as repo:
            return recoverable_window(repo, system_name).end
    except DrplanError:
        return None


@dataclass
class _Rebuilt:
    result: ClusterRestore
    binaries: Binaries
    note: str | None
    probe: str | None  # an archived WAL file recovery will fetch first, if it replays WAL
    created_later: dict[str, str]  # tablespaces (oid: location) made after the base backup


def _rebuild(
    repo: Repository, system: PostgresSystem, system_name: str, target: Target, fetch: str
) -> Callable[[Path, bool, dict[str, Path]], _Rebuilt]:
    """Choose the chain for ``target`` in ``repo`` (raising before anything is written when
    the location cannot reach it), and return the step that rebuilds it."""
    from drplan.recovery.pitr import chain_for, choose_base, recovery_settings  # noqa: PLC0415
    from drplan.recovery.postgres import choose_chain, restore_cluster  # noqa: PLC0415
    from drplan.sources.postgres.binaries import find_binaries  # noqa: PLC0415
    from drplan.sources.postgres.wal_status import recoverable_window  # noqa: PLC0415

    recovery = None
    note = None
    probe = None
    created_later: dict[str, str] = {}
    if target.kind == "snapshot":
        chain = choose_chain(repo, system_name, target.value)
    else:
        window = recoverable_window(repo, system_name)
        if not window.bases:
            choose_chain(repo, system_name, None)  # raises NoBaseBackupError
        if target.kind == "latest" and not window.files:
            chain = choose_chain(repo, system_name, None)
            note = f"{repo.storage.url} holds no archived WAL: restored to the end of the newest base backup"
        else:
            reach = choose_base(window, target, repo.storage.url)
            chain = chain_for(reach, window.bases)
            recovery = recovery_settings(target, fetch)
            probe = reach.last_segment
            created_later = _created_after(chain[-1], window.bases)
    major = int(chain[-1].source.get("server_version", 0)) // 10000
    binaries = find_binaries(system.bin_dir, major)

    def rebuild(target_dir: Path, force: bool, spaces: dict[str, Path]) -> _Rebuilt:
        result = restore_cluster(
            repo, binaries, chain, target_dir, force=force, recovery=recovery, tablespaces=spaces
        )
        return _Rebuilt(result, binaries, note, probe, created_later)

    return rebuild


def _restore_command(plan_path: str, system: str, location: str, password_file: str | None) -> str:
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


def locations_of(plan: Plan, system_name: str) -> list[str]:
    """Every location of the system's jobs (base backups and WAL), in plan order."""
    seen: list[str] = []
    for job in plan.jobs.values():
        if job.system == system_name:
            seen += [name for name in job.locations if name not in seen]
    return seen

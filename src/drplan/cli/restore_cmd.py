"""``drplan restore SNAPSHOT --target DIR`` (files back, bit-exact, verified, never outside DIR)
and ``drplan restore postgres SYSTEM --target-dir DIR`` (a cluster from its base backups)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from string import hexdigits
from typing import TYPE_CHECKING, Any

import click

from drplan import clock
from drplan.cli.context import (
    DefaultToCommand,
    Settings,
    counted,
    emit_json,
    human_bytes,
    pass_settings,
)
from drplan.cli.progress import progress_shown
from drplan.cli.repo_access import open_repo, password, repo_options
from drplan.errors import (
    DrplanError,
    IntegrityError,
    UsageError,
)
from drplan.incidents.points import INCIDENT_ENV, LAST_CLEAN
from drplan.recovery.files import RestoreOptions, refuse_target, restore_files
from drplan.security.repo_audit_record import note

if TYPE_CHECKING:
    from drplan.drills.last_good import Search
    from drplan.incidents.rehearsal import StandIn
    from drplan.plan.loader import PlanFile
    from drplan.plan.model import Plan
    from drplan.recovery.pitr import Reached, Target
    from drplan.recovery.postgres import ClusterRestore
    from drplan.repo.repository import Repository
    from drplan.repo.snapshot import Snapshot


class _DefaultToSnapshot(DefaultToCommand):
    """``drplan restore SNAPSHOT ...`` restores files; ``drplan restore postgres ...`` a cluster."""

    default_command = "snapshot"
    default_metavar = "SNAPSHOT"

    def takes(self, ctx: click.Context, word: str) -> bool:
        # What `Repository.find_snapshot` accepts: `latest`, or an id prefix of 4+ hex digits;
        # and `last-clean`, which `drplan scan` picks.
        return word in ("latest", LAST_CLEAN) or (
            len(word) >= 4 and all(c in hexdigits for c in word)
        )


@click.group("restore", cls=_DefaultToSnapshot)
def restore_group() -> None:
    """Restore a snapshot's files (`drplan restore SNAPSHOT --target DIR`), or a PostgreSQL
    cluster (`drplan restore postgres SYSTEM --target-dir DIR`)."""


@restore_group.command("snapshot", hidden=True)
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option(
    "--system",
    "system_name",
    metavar="SYSTEM",
    help="With SNAPSHOT `last-clean`: the files system whose last clean point `drplan scan`"
    " finds (its job locations tried in order without --repo).",
)
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
    "--special-files",
    is_flag=True,
    help="Also make the snapshot's device nodes and FIFOs (skipped and listed otherwise).",
)
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
    system_name: str | None,
    target: str,
    includes: tuple[str, ...],
    workers: int | None,
    special_files: bool,
    request_thaw: bool,
    thaw_days: int,
    thaw_tier: str,
    no_thaw_check: bool,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Restore SNAPSHOT (an id prefix, `latest`, or `last-clean` with --system) into DIR.
    Run it again to resume."""
    if (snapshot_ref == LAST_CLEAN) != (system_name is not None):
        raise UsageError(
            "last-clean needs --system SYSTEM, and --system goes only with last-clean",
            hint="e.g. `drplan restore last-clean --system web --target DIR`",
        )
    options = RestoreOptions(target=target, includes=list(includes), special_files=special_files)
    refuse_target(target)  # before the repository is opened: nothing to undo
    if workers:
        options.workers = workers
    with _restore_repo(settings, system_name, repo_ref, password_file) as repo:
        snapshot, why = _chosen(repo, snapshot_ref, system_name, as_json)
        if repo.storage.archives and not no_thaw_check:
            from drplan.recovery.thaw import check_thawed  # noqa: PLC0415 - archive locations only

            check_thawed(
                repo, snapshot, list(includes), request=request_thaw, days=thaw_days, tier=thaw_tier
            )
        with progress_shown("restore", "files", as_json) as progress:
            result = restore_files(repo, snapshot, options, progress)
        note(repo, snapshot=snapshot.id, target=target, files=result.files,
             failed=len(result.failed))  # fmt: skip
    passed_over = sorted(repo.passed_over)
    if passed_over:
        click.echo(
            f"drplan: warning: {counted(len(passed_over), 'snapshot')} cannot be read"
            f" ({', '.join(i[:8] for i in passed_over)}) and may be newer: `latest` restored"
            f" {snapshot.short_id} of {clock.rfc3339(snapshot.time)}, the newest that can be"
            " read; run `drplan check`",
            err=True,
        )
    if as_json:
        emit_json(
            {"snapshot": snapshot.id, "target": target, "unreadable_snapshots": passed_over,
             **({"last_clean_why": why} if why else {}), **vars(result)}
        )  # fmt: skip
    else:
        click.echo(
            f"restored snapshot {snapshot.short_id} to {target}: {counted(result.files, 'file')},"
            f" {result.dirs} director{'y' if result.dirs == 1 else 'ies'},"
            f" {human_bytes(result.bytes_total)};"
            f" {human_bytes(result.bytes_written)} written and verified"
            + (f", {result.files_skipped} already complete" if result.files_skipped else "")
        )
        if result.skipped_special:
            click.echo(
                f"skipped {len(result.skipped_special)} special file(s) (devices, FIFOs, sockets;"
                f" --special-files makes devices and FIFOs): {', '.join(result.skipped_special[:10])}"
                + (" ..." if len(result.skipped_special) > 10 else ""),
                err=True,
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


def _chosen(
    repo: Repository, snapshot_ref: str, system: str | None, quiet: bool
) -> tuple[Snapshot, str | None]:
    """The snapshot to restore, and for last-clean why it is the one (told on stderr)."""
    if system is None:
        return repo.find_snapshot(snapshot_ref), None
    from drplan.cli.scan_cmd import pick_last_clean  # noqa: PLC0415 - see cli.COMMANDS

    snapshot, why = pick_last_clean(repo, system)
    if not quiet:
        click.echo(f"last clean point of {system}: {snapshot.short_id} of"
                   f" {clock.rfc3339(snapshot.time)}, {why}", err=True)  # fmt: skip
    return snapshot, why


def _restore_repo(
    settings: Settings, system: str | None, repo_ref: str | None, password_file: str | None
) -> contextlib.AbstractContextManager[Repository]:
    """The repository a files restore reads: for last-clean, ``--repo`` or the first of the
    system's locations that opens, as `drplan scan` picks it."""
    if system is None:
        return open_repo(settings, repo_ref, password_file, operation="restore")
    from drplan.cli.scan_cmd import system_repo  # noqa: PLC0415 - see cli.COMMANDS

    return _first(system_repo(settings, system, repo_ref, password_file, "restore"))


@contextlib.contextmanager
def _first(
    opened: contextlib.AbstractContextManager[tuple[Repository, str]],
) -> Iterator[Repository]:
    with opened as (repo, _):
        yield repo


@restore_group.command(
    "postgres",
    short_help="Rebuild a PostgreSQL cluster from its backups and WAL.",
)
@click.argument("system_name", metavar="SYSTEM")
@click.option("--target-dir", metavar="DIR", help="New data directory (empty).")
@click.option(
    "--production",
    is_flag=True,
    help="Recover into the system's data_dir: the damaged one stopped and kept aside, the"
    " recovered one started in its place (implied in an incident's step without --target-dir).",
)
@click.option(
    "--to",
    "point",
    default="latest",
    show_default=True,
    metavar="latest|TIME|LSN|name:NAME|SNAPSHOT|before-incident|last-good|last-clean",
    help="All archived WAL; a time with zone ('2026-11-25 10:15:00+00'); an LSN (0/3000148);"
    " a restore point (name:NAME); the end of a base backup (its snapshot id); in an"
    " incident's step, just before its disaster moment (before-incident); or the newest"
    " point the system's drill checks pass, searched with scratch recoveries (last-good),"
    " or its security checks, to the commit (last-clean).",
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
    target_dir: str | None,
    production: bool,
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
    when it starts, replay archived WAL to the point asked for; with --production, into
    the system's data_dir in place of the damaged cluster, which is kept aside."""
    from drplan.cli.wal_cmd import postgres_system  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.incidents.points import (  # noqa: PLC0415
        POINTS,
        SEARCHED,
        incident_locations,
        incident_target,
    )
    from drplan.recovery.pitr import parse_target  # noqa: PLC0415
    from drplan.recovery.recover import recover  # noqa: PLC0415

    production = _production(production, target_dir, start, force, tablespace_map)
    search = None
    target = incident_target(point) if point in POINTS else parse_target(point)
    spaces = _tablespace_map(tablespace_map)
    plan_file = settings.load()
    system_name, system = postgres_system(plan_file.plan, system_name)
    # In an incident, with no --repo: only the locations its scenario recovers from.
    candidates = None if repo_ref else incident_locations()
    if point in SEARCHED:
        search = _search(settings, plan_file, password_file, system_name, point,
                         [repo_ref] if repo_ref else candidates, as_json)  # fmt: skip
        assert search.found is not None
        target = search.found
    # "last_good" or "last_clean": the search, its probes and what it found
    extra: dict[str, Any] = {point.replace("-", "_"): search.as_dict()} if search else {}
    stand_in = _stand_in(plan_file.plan, system_name) if production else None
    if stand_in is not None:  # a rehearsal: production is left alone
        target_dir, start, port, production = str(stand_in.data_dir), True, stand_in.port, False
        extra["rehearsal"] = {"stand_in": str(stand_in.data_dir), "port": stand_in.port}
    if production:
        _into_production(settings, plan_file, system_name, system, target, repo_ref,
                         candidates, password_file, as_json, extra)  # fmt: skip
        return
    assert target_dir is not None
    recovered = recover(
        plan_file.plan,
        plan_file.path,
        system_name,
        system,
        target,
        Path(target_dir),
        open_location=lambda ref: open_repo(
            settings, ref, password_file, operation=f"restore {system_name}"
        ),
        reach_of=lambda ref: reach_of(settings, ref, password_file, system_name),
        location=repo_ref,
        candidates=candidates,
        password_file=password_file,
        # A stand-in recovers from WAL fetched beside it first, as a drill's scratch server
        # does: its server needs neither drplan, the password, nor the location.
        staged_wal=stand_in.data_dir.parent / "wal" if stand_in else None,
        force=force,
        spaces=spaces,
        start=start,
        port=port,
    )
    result, reached, note, ref = (
        recovered.result, recovered.reached, recovered.note, recovered.location
    )  # fmt: skip
    _report_restore(
        system_name,
        target,
        ref,
        result,
        reached,
        port if start else None,
        note,
        as_json,
        extra,
    )
    if stand_in is not None:
        from drplan.incidents.rehearsal import keep  # noqa: PLC0415

        keep(plan_file.plan, os.environ[INCIDENT_ENV], stand_in)
        if not as_json:
            click.echo(f"rehearsal: production is untouched; {system_name}'s stand-in runs on"
                       f" 127.0.0.1:{stand_in.port} until the rehearsal is resolved")  # fmt: skip


def _stand_in(plan: Plan, system_name: str) -> StandIn | None:
    """Where a production restore goes instead when the incident it runs in is a
    rehearsal (None: a real incident, production it is)."""
    from drplan.incidents.rehearsal import new_stand_in, rehearsing  # noqa: PLC0415

    incident = os.environ.get(INCIDENT_ENV)
    if not rehearsing(incident):
        return None
    assert incident is not None
    return new_stand_in(plan, incident, system_name)


def _production(
    asked: bool, target_dir: str | None, start: bool, force: bool, spaces: tuple[str, ...]
) -> bool:
    """Whether the restore goes into production: asked for, or implied in an incident's
    step that names no directory. Flags that only make sense for a copy are refused."""
    if target_dir is not None:
        if asked:
            raise UsageError("--production and --target-dir exclude each other",
                             hint="--production recovers into the system's data_dir")  # fmt: skip
        return False
    if not asked and not os.environ.get(INCIDENT_ENV):
        raise UsageError(
            "give --target-dir DIR for a copy, or --production to recover into the system's"
            " data_dir (the damaged cluster is stopped and kept aside)",
            hint="an incident's step without --target-dir recovers into production",
        )
    if start or force or spaces:
        raise UsageError("--start, --force and --tablespace-map are for a copy (--target-dir)",
                         hint="a production restore always starts, in a new directory")  # fmt: skip
    return True


def _server_env(settings: Settings, password_file: str | None) -> dict[str, str]:
    """The environment of a server that stays up: its restore_command (drplan wal fetch)
    reads the repository password from it while it recovers, not a file its user may not
    read."""
    from drplan.repo.password import PASSWORD_ENV, PASSWORD_FILE_ENV  # noqa: PLC0415

    server_env = {**os.environ, PASSWORD_ENV: password(settings, password_file).decode()}
    server_env.pop(PASSWORD_FILE_ENV, None)
    return server_env


def _into_production(
    settings: Settings, plan_file: PlanFile, system_name: str, system: Any, target: Target,
    repo_ref: str | None, candidates: list[str] | None, password_file: str | None,
    as_json: bool, extra: dict[str, Any],
) -> None:  # fmt: skip
    """Recover beside production, verified, then switch it in (``recovery.switch``)."""
    from drplan.recovery.recover import recover  # noqa: PLC0415
    from drplan.recovery.switch import production_dirs, switch_in  # noqa: PLC0415

    now = clock.now()
    data, staged = production_dirs(system_name, system, now)
    server_env = _server_env(settings, password_file)

    def tell(line: str) -> None:
        if not as_json:
            click.echo(line, err=True)

    recovered = recover(
        plan_file.plan, plan_file.path, system_name, system, target, staged,
        open_location=lambda ref: open_repo(settings, ref, password_file,
                                            operation=f"restore {system_name}"),
        reach_of=lambda ref: reach_of(settings, ref, password_file, system_name),
        location=repo_ref, candidates=candidates, password_file=None, server_env=server_env,
        check_fetch=True,
    )  # fmt: skip
    tell(f"recovered {system_name} into {staged}, verified with pg_verifybackup")
    switched = switch_in(staged, data, recovered.binaries.tool("pg_ctl"),
                         recovered.binaries.tool("pg_controldata"), server_env, tell, now)  # fmt: skip
    reached = switched.reached
    if as_json:
        emit_json({
            **extra,
            "system": system_name, "to": target.describe(), "location": recovered.location,
            "chain": [s.id for s in recovered.result.chain], "data_dir": str(switched.data_dir),
            "damaged": str(switched.damaged) if switched.damaged else None,
            "reached": {
                "lsn": reached.lsn, "timeline": reached.timeline,
                "last_transaction": reached.last_transaction.isoformat()
                if reached.last_transaction else None,
            },
            "seconds": recovered.result.seconds,
        })  # fmt: skip
        return
    when = reached.last_transaction.isoformat() if reached.last_transaction else "none replayed"
    click.echo(f"{system_name} is back in production in {switched.data_dir}, recovered to"
               f" {target.describe()} from {recovered.location}: reached {reached.lsn or '?'},"
               f" last transaction {when}, now on timeline {reached.timeline or '?'}")  # fmt: skip
    if switched.damaged:
        click.echo(f"the damaged data directory is kept in {switched.damaged}")


def _search(
    settings: Settings, plan_file: PlanFile, password_file: str | None, system: str,
    point: str, candidates: list[str] | None, quiet: bool,
) -> Search:  # fmt: skip
    """The search for the system's last good (or clean) point, before the incident's
    disaster moment when run in one; each scratch recovery told on standard error as it
    is judged. last-clean searches where the restore will read (``candidates``)."""
    from drplan.cli.drill_cmd import drill_context  # noqa: PLC0415
    from drplan.drills.last_clean import judge_of, last_clean, summary  # noqa: PLC0415
    from drplan.drills.last_good import drill_of, last_good  # noqa: PLC0415
    from drplan.incidents.points import incident_moment  # noqa: PLC0415

    if point == LAST_CLEAN:  # refused before a password is asked for
        judge_of(plan_file.plan, system, candidates)
    else:
        drill_of(plan_file.plan, system)
    ctx = drill_context(settings, plan_file, password_file)
    tell = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
    if point != LAST_CLEAN:
        return last_good(ctx, system, incident_moment(), tell)
    search = last_clean(ctx, system, incident_moment(), tell, candidates)
    if not quiet:
        click.echo(summary(system, search), err=True)
    return search


def _report_restore(
    system_name: str,
    target: Target,
    ref: str,
    result: ClusterRestore,
    reached: Reached | None,
    port: int | None,
    note: str | None,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    if as_json:
        emit_json(
            {
                **(extra or {}),
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


def reach_of(
    settings: Settings, ref: str, password_file: str | None, system_name: str
) -> datetime | None:
    """The newest point ``ref`` can recover the system to, None when it cannot be read."""
    from drplan.sources.postgres.wal_status import recoverable_window  # noqa: PLC0415

    try:
        with open_repo(settings, ref, password_file, lock=None, index=False) as repo:
            return recoverable_window(repo, system_name).end
    except DrplanError:
        return None


def _platform_commands() -> None:
    from drplan.cli.restore_platform import etcd_command, git_command, images_command  # noqa: PLC0415

    for command in (etcd_command, git_command, images_command):
        restore_group.add_command(command)


_platform_commands()

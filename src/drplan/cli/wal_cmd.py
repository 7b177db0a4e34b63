"""``drplan wal push|fetch|status``: continuous WAL archiving of a PostgreSQL system.

``push`` and ``fetch`` are what PostgreSQL runs (archive_command, restore_command);
plain calls never reach this module (see ``drplan.entry``), only ``--help`` and the
agent they start do.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import password, resolve_storage
from drplan.errors import DrplanError, UsageError
from drplan.locations.storage import storage_for
from drplan.repo.repository import Repository
from drplan.sources.postgres import wal_spool

if TYPE_CHECKING:
    from drplan.plan.model import Plan, PostgresSystem
    from drplan.sources.postgres.wal_agent import NamedArchive


def _wal_options(fn: Any) -> Any:
    fn = click.option("--password-file", metavar="FILE", help="Repository password file.")(fn)
    fn = click.option(
        "--repo",
        "repo_ref",
        metavar="LOCATION",
        help="Archive to (fetch from) this location only, instead of the WAL job's.",
    )(fn)
    return click.option(
        "--system",
        "system_name",
        metavar="SYSTEM",
        help="The PostgreSQL system (needed when the plan has several).",
    )(fn)


@click.group("wal")
def wal_group() -> None:
    """Continuous WAL archiving: archive_command, restore_command, and the archive's state."""


def _passthrough(action: str, args: list[str], options: dict[str, str | None]) -> None:
    flags = {"system_name": "--system", "repo_ref": "--repo", "password_file": "--password-file"}
    opts = [x for key, flag in flags.items() if options.get(key) for x in (flag, options[key])]
    ctx = click.get_current_context()
    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    global_args = ["--plan", settings.plan_path] if settings.plan_path else []
    code = wal_spool.run(wal_spool.WalCall(action, global_args, [str(o) for o in opts], args))
    ctx.exit(code)


@wal_group.command("push", short_help="Archive a WAL file (PostgreSQL's archive_command).")
@_wal_options
@click.argument("path", metavar="PATH")
def push_command(
    path: str, system_name: str | None, repo_ref: str | None, password_file: str | None
) -> None:
    """Archive the WAL file PATH in every location of the system's WAL job (archive_command
    = 'drplan wal push --system SYSTEM %p'). Pushing the same file again succeeds; a
    different file under an archived name fails."""
    _passthrough("push", [path], locals())


@wal_group.command("fetch", short_help="Fetch an archived WAL file (PostgreSQL's restore_command).")
@_wal_options
@click.argument("name", metavar="NAME")
@click.argument("path", metavar="PATH")
def fetch_command(
    name: str, path: str, system_name: str | None, repo_ref: str | None, password_file: str | None
) -> None:
    """Fetch the archived WAL file NAME into PATH (restore_command = 'drplan wal fetch
    --system SYSTEM %f %p'). Exit 1: not archived; 255: archived but unreadable
    (PostgreSQL then stops recovery instead of ending it early)."""
    _passthrough("fetch", [name, path], locals())


@wal_group.command("agent", hidden=True)
@click.argument("action", type=click.Choice(["push", "fetch"]))
@click.option("--spool", required=True, metavar="DIR")
@_wal_options
@pass_settings
def agent_command(
    settings: Settings,
    action: str,
    spool: str,
    system_name: str | None,
    repo_ref: str | None,
    password_file: str | None,
) -> None:
    """The long-running side of push and fetch, started by them (see wal_spool)."""
    from drplan.sources.postgres import wal_agent  # noqa: PLC0415

    lock = wal_spool.agent_lock(spool)
    if lock is None:
        return  # another agent serves this spool
    try:
        archives = wal_archives(settings, system_name, repo_ref, password_file)
    except DrplanError as exc:
        wal_spool.mark(
            os.path.join(spool, wal_spool.AGENT_ERROR),
            exc.message + (f"; {exc.hint}" if exc.hint else ""),
        )
        raise
    pid_file = os.path.join(spool, wal_spool.AGENT_PID)
    wal_spool.mark(pid_file, str(os.getpid()))  # drplan-wal-push waits while this one lives
    print(f"{datetime.now(UTC).isoformat()} agent {action} started", file=sys.stderr)
    stop = wal_agent.stop_requested(spool, settings.load().path)
    try:
        if action == "push":
            wal_agent.run_push_agent(archives, spool, should_stop=stop)
        else:
            wal_agent.run_fetch_agent(archives, spool, should_stop=stop)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)  # the shell script stops waiting for this one


@wal_group.command("stream", short_help="Ship WAL as it is written, through pg_receivewal.")
@click.option("--system", "system_name", metavar="SYSTEM")
@click.option("--password-file", metavar="FILE", help="Repository password file.")
@click.option("--slot", metavar="NAME", help="Replication slot (default drplan_SYSTEM).")
@click.option(
    "--partial-every",
    type=click.FloatRange(0.5),
    metavar="SECONDS",
    help="Ship the segment being written this often: the recovery point is never older"
    " (default: the wal job's partial_every, else 10).",
)
@click.option(
    "--dir",
    "directory",
    metavar="DIR",
    help="Where WAL is received before it is shipped (default STATE_DIR/wal-stream/SYSTEM:"
    " $DRPLAN_STATE_DIR, else ~/.local/state/drplan).",
)
@pass_settings
def stream_command(
    settings: Settings,
    system_name: str | None,
    password_file: str | None,
    slot: str | None,
    partial_every: float | None,
    directory: str | None,
) -> None:
    """Receive WAL as it is written (a supervised pg_receivewal with a replication slot) and
    ship it to every WAL location; runs until stopped (SIGTERM or Ctrl-C)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.sources.postgres.cluster import preflight  # noqa: PLC0415
    from drplan.sources.postgres.wal_stream import WalStreamer, slot_name  # noqa: PLC0415

    plan = settings.load().plan
    name, system = postgres_system(plan, system_name)
    archives = wal_archives(settings, name, None, password_file)
    secret = system.password.resolve() if system.password else None
    ready = preflight(system.connection, secret, system.bin_dir, name, "full")
    where = Path(directory) if directory else Path(state_dir()) / "wal-stream" / name
    if partial_every is None:  # what the plan promises its RPO with (DR022), as serve runs it
        from drplan.plan.wal_loss import DEFAULT_PARTIAL_EVERY  # noqa: PLC0415

        planned = [j.partial_every for j in plan.jobs.values()
                   if j.system == name and j.type == "wal" and j.partial_every]  # fmt: skip
        partial_every = min(planned or [DEFAULT_PARTIAL_EVERY]).total_seconds()
    streamer = WalStreamer(
        ready.binaries,
        system.connection,
        secret,
        archives,
        where,
        slot=slot or slot_name(name),
        partial_every=partial_every,
        segment_size=int(ready.info.setting("wal_segment_size") or 16 * 1024 * 1024),
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    streamer.run(stop)
    streamer.log(f"stopped; {streamer.shipped} file(s) shipped")


def postgres_system(plan: Plan, system_name: str | None) -> tuple[str, PostgresSystem]:
    """The system named, or the plan's only PostgreSQL system."""
    from drplan.plan.model import PostgresSystem  # noqa: PLC0415 - see cli.COMMANDS

    systems = {n: s for n, s in plan.systems.items() if isinstance(s, PostgresSystem)}
    if system_name is None:
        if len(systems) != 1:
            raise UsageError(
                f"the plan has {len(systems)} PostgreSQL systems", hint="name one with --system"
            )
        system_name = next(iter(systems))
    if system_name not in systems:
        raise UsageError(
            f"the plan has no PostgreSQL system {system_name!r}"
            f" (it has {', '.join(systems) or 'none'})",
            hint="see `drplan plan show`",
        )
    return system_name, systems[system_name]


def wal_locations(plan: Plan, system_name: str) -> list[str]:
    """Where the system's WAL goes: the locations of its WAL jobs, in plan order."""
    found: list[str] = []
    for job in plan.jobs.values():
        if job.system == system_name and job.type == "wal":
            found += [name for name in job.locations if name not in found]
    if not found:
        raise UsageError(
            f"the plan has no WAL job for system {system_name}",
            hint="add a job with `type: wal`, `schedule: continuous` and its locations",
        )
    return found


def wal_archives(
    settings: Settings, system_name: str | None, repo_ref: str | None, password_file: str | None
) -> list[NamedArchive]:
    """The WAL archive of every location of the system's WAL job (or of --repo), opened."""
    from drplan.sources.postgres.wal_agent import NamedArchive  # noqa: PLC0415
    from drplan.sources.postgres.wal_archive import WalArchive  # noqa: PLC0415

    secret = password(settings, password_file)
    plan = settings.load().plan
    name, _ = postgres_system(plan, system_name)
    if repo_ref:
        storage = resolve_storage(settings, repo_ref)
        return [NamedArchive(repo_ref, WalArchive(Repository.open(storage, secret), name))]
    archives = []
    for location in wal_locations(plan, name):
        repo = Repository.open(storage_for(plan.locations[location]), secret)
        archives.append(NamedArchive(location, WalArchive(repo, name)))
    return archives


@wal_group.command("status", short_help="Newest archived WAL per location, and gaps.")
@click.option("--system", "system_name", metavar="SYSTEM")
@click.option("--password-file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def status_command(
    settings: Settings, system_name: str | None, password_file: str | None, as_json: bool
) -> None:
    """Newest archived WAL in each location, how long ago, and gaps since the oldest base
    backup; the server's own archiver counters. Exit 1 when the server cannot be reached,
    WAL is not being archived, or the archive has gaps or unreachable locations (the
    archive of every location is shown first)."""
    from drplan.sources.postgres.wal_status import archive_state, server_archiver  # noqa: PLC0415

    plan = settings.load().plan
    name, system = postgres_system(plan, system_name)
    secret = password(settings, password_file)
    now = time.time()
    locations = []
    for location in wal_locations(plan, name):
        try:
            repo = Repository.open(storage_for(plan.locations[location]), secret)
            locations.append({"location": location, **archive_state(repo, name, now)})
        except DrplanError as exc:
            locations.append({"location": location, "error": exc.message})
    server = server_archiver(system, name)
    if as_json:
        emit_json({"system": name, "locations": locations, "server": server})
    else:
        _print_status(name, locations, server)
    if "error" in server:
        # A server that is down archives nothing: WAL written before it stopped may be
        # sitting unarchived in its pg_wal, and no one can tell from here.
        raise DrplanError(
            f"{server['error']}: whether its WAL is being archived cannot be told",
            hint="start the server or fix the system's connection; the archive shown above"
            " can be restored from meanwhile",
        )
    if server.get("problems"):
        raise DrplanError(
            f"WAL of {name} is not being archived: {'; '.join(server['problems'])}",
            hint="fix the server's settings named",
        )
    if any("error" in e or e.get("gaps") for e in locations):
        raise DrplanError(
            "the WAL archive has gaps or unreachable locations: point-in-time recovery is limited",
            hint="see above; `drplan check postgres` tells the recoverable window",
        )


def _print_status(name: str, locations: list[dict[str, Any]], server: dict[str, Any]) -> None:
    for entry in locations:
        if "error" in entry:
            click.echo(f"{entry['location']}: unreachable ({entry['error']})")
            continue
        newest = entry["newest"]
        if newest is None:
            click.echo(f"{entry['location']}: no WAL archived")
            continue
        gaps = entry["gaps"]
        click.echo(
            f"{entry['location']}: newest {newest} archived {entry['lag_seconds']:.0f}s ago,"
            f" {entry['files']} files ({human_bytes(entry['bytes'])}),"
            + (f" {len(gaps)} gap(s): first missing {gaps[0]['first']}" if gaps else " no gaps")
        )
    if server:
        if "error" in server:
            click.echo(f"server of {name}: cannot be reached ({server['error']})")
        else:
            click.echo(
                f"server of {name}: last archived {server['last_archived_wal'] or '-'},"
                f" {server['failed_count']} failures,"
                f" {'a' if server['streaming'] else 'no'} drplan wal stream connected"
                + (
                    f" (last {server['last_failed_wal']} at {server['last_failed_time']})"
                    if server["failed_count"]
                    else ""
                )
            )

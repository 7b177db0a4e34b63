"""``drplan restore SNAPSHOT --target DIR`` (files back, bit-exact, verified, never outside DIR)
and ``drplan restore postgres SYSTEM --target-dir DIR`` (a cluster from its base backups)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from drplan.cli.context import DefaultToCommand, Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import IntegrityError, RepositoryNotFoundError, UsageError
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.storage import StorageError

if TYPE_CHECKING:
    from drplan.plan.model import Plan


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
    metavar="latest|SNAPSHOT",
    help="The newest base backup, or the one named (a snapshot id prefix).",
)
@click.option("--force", is_flag=True, help="Empty a non-empty --target-dir first.")
@click.option("--start", is_flag=True, help="Start the restored cluster and wait until it is up.")
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
    start: bool,
    port: int,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Rebuild SYSTEM's cluster in DIR from its base backups (full, then incrementals)."""
    from drplan.plan.model import PostgresSystem  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.recovery.postgres import (  # noqa: PLC0415
        NoBaseBackupError,
        PostgresRestoreError,
        choose_chain,
        restore_cluster,
        start_cluster,
    )
    from drplan.sources.postgres.binaries import find_binaries  # noqa: PLC0415

    if point != "latest" and not all(c in "0123456789abcdef" for c in point.lower()):
        raise UsageError(
            f"--to {point!r}: restoring to a time, LSN or restore point needs drplan's WAL"
            " archive, which is not available yet",
            hint="use --to latest or a base backup's snapshot id",
        )
    plan = settings.load().plan
    system = plan.systems.get(system_name)
    if not isinstance(system, PostgresSystem):
        raise UsageError(f"the plan has no PostgreSQL system {system_name!r}")
    # Without --repo, the locations of the system's jobs in plan order: the first that can
    # be opened and holds a base backup serves (in a disaster, the primary may be gone).
    candidates = [repo_ref] if repo_ref else _locations_of(plan, system_name)
    tried: list[str] = []
    for ref in candidates:
        try:
            with open_repo(settings, ref, password_file, operation="restore") as repo:
                chain = choose_chain(repo, system_name, point)
                major = int(chain[-1].source.get("server_version", 0)) // 10000
                binaries = find_binaries(system.bin_dir, major)
                result = restore_cluster(repo, binaries, chain, Path(target_dir), force=force)
            break
        except (RepositoryNotFoundError, StorageError, NoBaseBackupError) as exc:
            if repo_ref:
                raise
            tried.append(f"{ref}: {exc.message}")
    else:
        raise PostgresRestoreError(
            f"no location holds a usable base backup of {system_name}"
            f" ({'; '.join(tried) or 'the plan names none'})",
            hint="name one with --repo",
        )
    if start:
        start_cluster(binaries, result.target, port)
        result.started_port = port
    if as_json:
        emit_json(
            {
                "system": system_name,
                "target": str(result.target),
                "chain": [s.id for s in result.chain],
                "stop_lsn": result.stop_lsn,
                "timeline": result.timeline,
                "seconds": result.seconds,
                "started_port": result.started_port,
            }
        )
        return
    kinds = " + ".join(str(s.source.get("type")) for s in result.chain)
    click.echo(
        f"restored {system_name} to {result.target} from {kinds} ({result.chain[-1].short_id}),"
        f" verified with pg_verifybackup, consistent at {result.stop_lsn} in {result.seconds:.1f}s"
        + (f"; started on port {port}" if start else "")
    )


def _locations_of(plan: Plan, system_name: str) -> list[str]:
    seen: list[str] = []
    for job in plan.jobs.values():
        if job.system == system_name:
            seen += [name for name in job.locations if name not in seen]
    return seen

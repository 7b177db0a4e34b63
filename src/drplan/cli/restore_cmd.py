"""``drplan restore SNAPSHOT --target DIR``: files back, bit-exact, verified, never outside DIR."""

from __future__ import annotations

import click

from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import IntegrityError
from drplan.recovery.files import RestoreOptions, restore_files


@click.command("restore")
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

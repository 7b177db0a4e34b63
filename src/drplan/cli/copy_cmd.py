"""``drplan copy --from LOCATION --to LOCATION [SNAPSHOT...]``: replicate snapshots between locations."""

from __future__ import annotations

import click

from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.copy_rekey import chosen, rekey_copy
from drplan.cli.key_cmd import new_password_option
from drplan.cli.progress import progress_shown
from drplan.cli.repo_access import location_is_name, open_repo, plan_or_none, resolve_storage
from drplan.errors import IntegrityError, UsageError
from drplan.locations.copying import about_location, copy_to
from drplan.repo.replication import CopyResult
from drplan.repo.retention import plan_policies
from drplan.security.repo_audit_record import also_used


def _name(ref: str) -> str | None:
    """The plan location ``ref`` names (bare words are names; paths and URLs are not)."""
    return ref if location_is_name(ref) else None


@click.command("copy")
@click.option("--from", "source_ref", required=True, metavar="LOCATION", help="Copy from here.")
@click.option("--to", "target_ref", required=True, metavar="LOCATION", help="Copy to here.")
@click.argument("snapshot_refs", nargs=-1, metavar="[SNAPSHOT]...")
@click.option("--job", "jobs", multiple=True, help="Only snapshots of this job (repeatable).")
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option(
    "--rekey",
    is_flag=True,
    help="Write a new repository under new keys (blob-id key included) into an empty --to.",
)
@new_password_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_settings
def copy_command(
    settings: Settings,
    /,
    source_ref: str,
    target_ref: str,
    snapshot_refs: tuple[str, ...],
    jobs: tuple[str, ...],
    password_file: str | None,
    rekey: bool,
    new_password_file: str | None,
    as_json: bool,
) -> None:
    """Copy snapshots from one location to another: all of them, or those named.

    An empty target becomes a replica of the source repository. Only what the target
    lacks is sent, and every object is verified there before the snapshot that needs
    it appears. Without SNAPSHOT arguments, snapshots that the target's retention in
    the plan would not keep are not sent.

    With --rekey the target must be empty: it becomes a new repository with new keys and
    the new password (after a leaked master key); rerun the command to resume one cut short.
    """
    if rekey:
        rekey_copy(settings, source_ref, target_ref, snapshot_refs, jobs, password_file,
                   new_password_file, as_json)  # fmt: skip
        return
    if new_password_file:
        raise UsageError("--new-password-file goes with --rekey", hint="a copy keeps the passwords")
    with (
        about_location(_name(source_ref)),
        open_repo(settings, source_ref, password_file, operation="copy") as source,
    ):
        snapshots, unreadable = chosen(source, snapshot_refs, jobs)
        plan = None if snapshot_refs or not _name(target_ref) else plan_or_none(settings)
        policies = plan_policies(plan, target_ref) if plan else None
        with about_location(_name(target_ref)):
            target = also_used(source, target_ref, resolve_storage(settings, target_ref))
            with progress_shown("copy", "packs", as_json) as progress:
                result = copy_to(source, target, snapshots, policies=policies, progress=progress)
            result.damaged.update(unreadable)
    if as_json:
        emit_json({"from": source.storage.url, "to": target.url, **result.as_dict()})
    else:
        _print(result, source.storage.url, target.url, target_ref)
    if result.damaged:
        rest = "; the others were copied" if result.copied or result.already else ""
        raise IntegrityError(
            f"{len(result.damaged)} snapshot(s) could not be copied: they are damaged in the source",
            hint=f"run `drplan check --repo {source.storage.url}`{rest}",
        )


def _print(result: CopyResult, source_url: str, target_url: str, target_ref: str) -> None:
    if result.created:
        click.echo(f"{target_url}: created as a replica of {source_url}")
    click.echo(
        f"copied {len(result.copied)} snapshot(s) to {target_url}"
        f" ({len(result.already)} already there): {result.packs_copied} pack(s),"
        f" {human_bytes(result.bytes_copied)} sent, {result.packs_reused} reused from an"
        " interrupted copy; every object verified on the target"
    )
    if result.not_kept:
        click.echo(
            f"{result.not_kept} snapshot(s) left out: {target_ref}'s retention would not keep them"
        )
    for snapshot_id in result.vanished:
        click.echo(
            f"warning: snapshot {snapshot_id[:8]} was deleted from the source during the copy",
            err=True,
        )
    for snapshot_id, why in result.damaged.items():
        click.echo(f"error: snapshot {snapshot_id[:8]} not copied: {why}", err=True)

"""``drplan copy --rekey``: the snapshots into a new repository with new keys (the service
is ``drplan.repo.rekey``; ``copy_cmd`` parses the flags and branches here).

Besides the service, what the command owns: the new password (as ``key rotate`` takes
it), the snapshots chosen (as a copy chooses them), and the audit trail. The source's
entry notes the new repository; the target's trail starts with this copy's entry, sealed
with the new keys (an ordinary copy's target gets its entry from the source's recorder,
which only writes where the source's key opens the config: never here), naming the
source repository and the head of its trail.
"""

from __future__ import annotations

import click

from drplan.cli.context import Settings, emit_json, human_bytes
from drplan.cli.key_cmd import new_password
from drplan.cli.progress import progress_shown
from drplan.cli.repo_access import audit_warning, location_is_name, open_repo, resolve_storage
from drplan.errors import IntegrityError
from drplan.locations.copying import about_location
from drplan.repo.rekey import RekeyResult, open_target, rekey_snapshots
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.security.repo_audit import list_refs
from drplan.security.repo_audit_record import note, recorded


def chosen(
    source: Repository, snapshot_refs: tuple[str, ...], jobs: tuple[str, ...]
) -> tuple[list[Snapshot], dict[str, str]]:
    """The snapshots named, or all of ``jobs`` (every one without), and why others do not read."""
    if snapshot_refs:
        return [source.find_snapshot(ref) for ref in snapshot_refs], {}
    readable, unreadable = source.readable_snapshots()
    return [s for s in readable if not jobs or s.job in jobs], unreadable


def _name(ref: str) -> str | None:
    return ref if location_is_name(ref) else None


def rekey_copy(
    settings: Settings,
    source_ref: str,
    target_ref: str,
    snapshot_refs: tuple[str, ...],
    jobs: tuple[str, ...],
    password_file: str | None,
    new_password_file: str | None,
    as_json: bool,
) -> None:
    """Open (and lock) the source, open or create the target, re-key, report; exit 13 when
    something of the source could not be re-keyed (the rest was)."""
    made: list[Repository] = []  # the new repository, once there: its entry is sealed with it
    with (
        about_location(_name(source_ref)),
        open_repo(settings, source_ref, password_file, operation="copy") as source,
    ):
        snapshots, unreadable = chosen(source, snapshot_refs, jobs)
        fresh = new_password(new_password_file)
        refs = list_refs(source.storage)[0]
        top = max((r.seq for r in refs), default=0)
        origin = {"from": source.storage.url, "repository": source.config.id,
                  "audit_head": sorted(r.name for r in refs if r.seq == top)}  # fmt: skip
        # All the WAL when the whole repository is re-keyed; else the chosen systems'.
        systems = {s.system for s in snapshots if s.system} if snapshot_refs or jobs else None
        with (
            about_location(_name(target_ref)),
            recorded("copy", audit_warning, lambda: made[0] if made else None) as record,
        ):
            storage = record.use(target_ref, resolve_storage(settings, target_ref))
            target, created = open_target(source, storage, fresh)
            made.append(target)
            record.details["rekey"] = origin
            with progress_shown("copy", "snapshots", as_json) as progress:
                result = rekey_snapshots(
                    source, target, snapshots, wal_systems=systems, progress=progress
                )
            result.created = created
            # Counts: the snapshots themselves name their old ids (previous_ids).
            record.details["rekeyed"] = {
                "snapshots": len(result.copied), "already_present": len(result.already),
                "damaged": len(result.damaged), "wal": result.wal.copied,
                "incidents": result.incidents.copied,
            }  # fmt: skip
        note(source, rekey={"to": storage.url, "repository": target.config.id})
        result.damaged.update(unreadable)
    if as_json:
        emit_json({"from": source.storage.url, "to": storage.url, **result.as_dict()})
    else:
        _print(result, source.storage.url, storage.url)
    damaged = len(result.damaged) + len(result.wal.damaged) + len(result.incidents.damaged)
    if damaged:
        rest = "; the rest was re-keyed" if result.copied or result.already else ""
        raise IntegrityError(
            f"{damaged} snapshot(s) or object(s) could not be re-keyed: they are damaged in the"
            " source",
            hint=f"run `drplan check --repo {source.storage.url} --read-data`{rest}",
        )


def _print(result: RekeyResult, source_url: str, target_url: str) -> None:
    if result.created:
        click.echo(f"{target_url}: created as a new repository, re-keyed from {source_url}")
    click.echo(
        f"re-keyed {len(result.copied)} snapshot(s) into {target_url}"
        f" ({len(result.already)} by an earlier run): {result.blobs_stored} blob(s),"
        f" {human_bytes(result.bytes_stored)} stored; {result.wal.copied} WAL file(s) and"
        f" {result.incidents.copied} incident timeline copies re-sealed. The new password"
        " opens it; no key or password of the source does"
    )
    for old, new in result.copied.items():
        click.echo(f"  snapshot {old[:8]} is {new[:8]} there")
    for snapshot_id, why in result.damaged.items():
        click.echo(f"error: snapshot {snapshot_id[:8]} not re-keyed: {why}", err=True)
    for problem in [*result.wal.damaged, *result.incidents.damaged]:
        click.echo(f"error: not re-keyed: {problem}", err=True)

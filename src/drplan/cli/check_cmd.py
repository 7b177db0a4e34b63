"""``drplan check``: is the repository whole, and (with --read-data) is every byte of it sound?"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click

from drplan.catalog.paths import state_dir
from drplan.cli.context import Settings, counted, emit_json, human_bytes, pass_settings
from drplan.cli.progress import progress_shown
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import DrplanError, IntegrityError, UsageError
from drplan.repo.check import CheckReport, Finding, check_repository
from drplan.repo.rotation import Rotation, load_rotation, rotation_file, save_rotation
from drplan.repo.subset import Part, Subset, parse_subset
from drplan.security.repo_audit_record import note

if TYPE_CHECKING:
    from drplan.repo.repository import Repository
    from drplan.sources.postgres.wal_archive import WalReadBack


@click.command("check")
@click.argument("what", nargs=-1, metavar="[postgres SYSTEM]")
@repo_options
@click.option("--read-data", is_flag=True, help="Read back and verify every blob of every pack.")
@click.option(
    "--read-data-subset",
    metavar="x%|n/t|SIZE",
    help="Read back part of the data: the next x% or SIZE (500M, 2G) of a rotation kept"
    " between runs, or part n of t.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def check_command(
    settings: Settings,
    what: tuple[str, ...],
    repo_ref: str | None,
    password_file: str | None,
    read_data: bool,
    read_data_subset: str | None,
    as_json: bool,
) -> None:
    """Check structure always; with --read-data(-subset), the data too. Exit 13 on damage.

    `drplan check postgres SYSTEM`: base backups whole and matching their manifests, and
    the WAL from the oldest on without gaps (the recoverable window); with --read-data,
    every archived WAL file read back and authenticated."""
    if read_data and read_data_subset:
        raise UsageError("--read-data and --read-data-subset cannot be combined")
    if what:
        if len(what) != 2 or what[0] != "postgres":
            raise UsageError(
                f"unknown check {' '.join(what)!r}",
                hint="`drplan check` or `drplan check postgres SYSTEM`",
            )
        _check_postgres(settings, what[1], repo_ref, password_file, read_data, as_json)
        return
    subset = parse_subset(read_data_subset) if read_data_subset else None
    with open_repo(settings, repo_ref, password_file, operation="check", index=False) as repo:
        rotating = subset is not None and not isinstance(subset, Part)
        place = rotation_file(state_dir(), repo.config.id, repo.storage.url) if rotating else None
        rotation = load_rotation(place) if place else None
        reading = read_data or subset is not None
        with progress_shown("check", "packs", as_json) if reading else nullcontext() as progress:
            report = check_repository(
                repo, read_data=read_data, subset=subset, rotation=rotation, progress=progress
            )
        if place and rotation is not None:  # still locked: the next check starts where it ends
            _save_rotation(place, rotation)
        wal = _read_back_wal(repo, report) if read_data else None
        url = repo.storage.url
        note(repo, errors=len(report.errors), snapshots=report.snapshots, packs=report.packs,
             packs_read=report.packs_read, subset=read_data_subset, read_data=read_data)  # fmt: skip
    if as_json:
        emit_json(
            {
                "location": url,
                "ok": not report.errors,
                "snapshots": report.snapshots,
                "packs": report.packs,
                "packs_read": report.packs_read,
                "blobs_read": report.blobs_read,
                "bytes_read": report.bytes_read,
                "data_bytes": report.data_bytes,
                "percent_read": float(f"{report.percent_read:.4g}"),
                "pack_ids_read": report.pack_ids_read,
                "subset": read_data_subset,
                "rotation": report.rotation,
                "wal_files_read": wal.files if wal else 0,
                "wal_bytes_read": wal.bytes_read if wal else 0,
                "findings": [f.as_dict() for f in report.findings],
            }
        )
    else:
        for f in report.findings:
            click.echo(f"{f.severity}: {f.message}", err=f.severity == "error")
            if f.snapshots:
                click.echo(f"    snapshots: {', '.join(f.snapshots)}", err=True)
            for path in f.files:
                click.echo(f"    file: {path}", err=True)
        status = "no errors" if not report.errors else f"{len(report.errors)} error(s)"
        click.echo(
            f"check of {url}: {counted(report.snapshots, 'snapshot')},"
            f" {counted(report.packs, 'pack')}{_read_back(report, subset, read_data)}"
            + (f", {counted(wal.files, 'WAL file')} ({human_bytes(wal.bytes_read)})" if wal else "")
            + f": {status}"
            + _rotation_text(report)
        )
    if report.errors:
        raise IntegrityError(
            f"{url}: check found {len(report.errors)} error(s)", hint="see the findings above"
        )


def _read_back_wal(repo: Repository, report: CheckReport) -> WalReadBack:
    """Every archived WAL file read back too: a damaged one is an error of the check."""
    from drplan.sources.postgres.wal_archive import read_back  # noqa: PLC0415 - see COMMANDS

    wal = read_back(repo)
    report.findings += [Finding("error", f"archived WAL {damage}") for damage in wal.damaged]
    return wal


def _save_rotation(place: str, rotation: Rotation) -> None:
    """Only after the slice was read; a state directory that cannot be written is a warning:
    the check itself was done, and the next one reads the same packs again."""
    try:
        save_rotation(place, rotation)
    except OSError as exc:
        click.echo(
            f"drplan: warning: the rotation could not be saved to {place} ({exc.strerror});"
            " the next check reads the same packs again",
            err=True,
        )


def _read_back(report: CheckReport, subset: Subset | None, read_data: bool) -> str:
    """``; read back 1 of 4 packs (24.6% of the data), 3 blobs, 98 KiB``."""
    if not read_data and subset is None:
        return ""
    part = f"part {subset.n}/{subset.t}: " if isinstance(subset, Part) else ""
    return (
        f"; read back {report.packs_read} of {counted(report.packs, 'pack')}"
        f" ({part}{_percent(report.percent_read)} of the data),"
        f" {counted(report.blobs_read, 'blob')}, {human_bytes(report.bytes_read)}"
    )


def _rotation_text(report: CheckReport) -> str:
    rotation = report.rotation
    if rotation is None:
        return ""
    if rotation["pass_completed"]:
        return (
            "; a full pass completed: every pack read back since"
            f" {rotation['last_pass']['started']}"
        )
    return (
        f"; the rotation has read {_percent(rotation['percent_read'])} of the data since"
        f" {rotation['pass_started']}"
        + (
            f" (last full pass: {rotation['last_pass']['completed']})"
            if rotation["last_pass"]
            else ""
        )
    )


def _percent(value: float) -> str:
    """``24.6%``, ``100%``, ``0.52%``, ``<0.01%``: a small share read is never shown as 0."""
    if value == 0 or value >= 1:
        return f"{value:.3g}%"
    return f"{value:.2f}%" if value >= 0.01 else "<0.01%"


def _check_postgres(
    settings: Settings,
    system_name: str,
    repo_ref: str | None,
    password_file: str | None,
    read_wal: bool,
    as_json: bool,
) -> None:
    from drplan.cli.wal_cmd import postgres_system  # noqa: PLC0415
    from drplan.recovery.recover import locations_of  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.sources.postgres.check import check_system  # noqa: PLC0415

    plan = settings.load().plan
    system_name, _ = postgres_system(plan, system_name)
    results: list[dict[str, Any]] = []
    for ref in [repo_ref] if repo_ref else locations_of(plan, system_name):
        try:
            with open_repo(settings, ref, password_file, operation=f"check {system_name}",
                           index=True) as repo:  # fmt: skip
                report = check_system(repo, system_name, read_wal=read_wal)
                note(repo, errors=len(report.errors))
            results.append({"location": ref, **report.as_dict()})
        except DrplanError as exc:
            results.append({"location": ref, "ok": False, "errors": [exc.message]})
    if as_json:
        emit_json({"system": system_name, "locations": results})
    else:
        for entry in results:
            window = entry.get("window") or {}
            if entry["ok"]:
                click.echo(
                    f"{entry['location']}: {len(entry['base_backups'])} base backup(s),"
                    f" {entry['wal_files']} WAL files"
                    + (f" ({entry['wal_read']} read back)" if read_wal else "")
                    + f"; recoverable from {window.get('start')} to {window.get('end')}"
                )
            for error in entry["errors"]:
                click.echo(f"{entry['location']}: error: {error}", err=True)
    failed = [str(e["location"]) for e in results if not e["ok"]]
    if failed:
        raise IntegrityError(
            f"{system_name} cannot be recovered as the plan expects from {', '.join(failed)}",
            hint="see the errors above",
        )

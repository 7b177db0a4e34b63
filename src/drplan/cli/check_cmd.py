"""``drplan check``: is the repository whole, and (with --read-data) is every byte of it sound?"""

from __future__ import annotations

from typing import Any

import click

from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import DrplanError, IntegrityError, UsageError
from drplan.repo.check import check_repository, parse_subset


@click.command("check")
@click.argument("what", nargs=-1, metavar="[postgres SYSTEM]")
@repo_options
@click.option("--read-data", is_flag=True, help="Read back and verify every blob of every pack.")
@click.option(
    "--read-data-subset",
    metavar="N%|n/t",
    help="Read back a rotating subset: N% per run, or part n of t.",
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
        report = check_repository(repo, read_data=read_data, subset=subset)
        url = repo.storage.url
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
        read = (
            f"; read back {report.packs_read} packs, {report.blobs_read} blobs, {human_bytes(report.bytes_read)}"
            if (read_data or subset)
            else ""
        )
        status = "no errors" if not report.errors else f"{len(report.errors)} error(s)"
        click.echo(
            f"check of {url}: {report.snapshots} snapshots, {report.packs} packs{read}: {status}"
        )
    if report.errors:
        raise IntegrityError(
            f"{url}: check found {len(report.errors)} error(s)", hint="see the findings above"
        )


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
            with open_repo(settings, ref, password_file, operation="check", index=True) as repo:
                report = check_system(repo, system_name, read_wal=read_wal)
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

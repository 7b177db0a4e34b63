"""``drplan check``: is the repository whole, and (with --read-data) is every byte of it sound?"""

from __future__ import annotations

import click

from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import IntegrityError, UsageError
from drplan.repo.check import check_repository, parse_subset


@click.command("check")
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
    repo_ref: str | None,
    password_file: str | None,
    read_data: bool,
    read_data_subset: str | None,
    as_json: bool,
) -> None:
    """Check structure always; with --read-data(-subset), the data too. Exit 13 on damage."""
    if read_data and read_data_subset:
        raise UsageError("--read-data and --read-data-subset cannot be combined")
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

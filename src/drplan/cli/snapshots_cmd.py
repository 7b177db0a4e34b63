"""``drplan snapshots``, ``drplan ls SNAPSHOT``, ``drplan diff A B``: what the repository holds."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from drplan.cli.context import Settings, console, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.clock import rfc3339
from drplan.repo.browse import diff_snapshots, walk


@click.command("snapshots")
@repo_options
@click.option("--host", help="Only snapshots of this host.")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Only snapshots with this tag (repeatable: all must match).",
)
@click.option("--path", "paths", multiple=True, help="Only snapshots of this path (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def snapshots_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    host: str | None,
    tags: tuple[str, ...],
    paths: tuple[str, ...],
    as_json: bool,
) -> None:
    """List snapshots, oldest first."""
    with open_repo(settings, repo_ref, password_file, lock=None, index=False) as repo:
        found = [
            s
            for s in repo.snapshots()
            if (host is None or s.host == host)
            and set(tags) <= set(s.tags)
            and (not paths or set(paths) <= set(s.paths))
        ]
    if as_json:
        emit_json([s.as_dict() for s in found])
        return
    table = Table("id", "time (UTC)", "host", "tags", "paths", "files", "size")
    for s in found:
        table.add_row(
            s.short_id,
            rfc3339(s.time),
            s.host,
            ", ".join(s.tags),
            "\n".join(s.paths),
            str(s.summary.files),
            human_bytes(s.summary.bytes_total),
        )
    console().print(table)
    click.echo(f"{len(found)} snapshot(s)")


@click.command("ls")
@click.argument("snapshot_ref")
@click.argument("path", required=False, default="/")
@repo_options
@click.option("--long", "-l", "long_format", is_flag=True, help="Show mode, owner, size and mtime.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def ls_command(
    settings: Settings,
    snapshot_ref: str,
    path: str,
    repo_ref: str | None,
    password_file: str | None,
    long_format: bool,
    as_json: bool,
) -> None:
    """List the files of SNAPSHOT (an id prefix or `latest`) below PATH."""
    with open_repo(settings, repo_ref, password_file, lock=None) as repo:
        snapshot = repo.find_snapshot(snapshot_ref)
        entries = list(walk(repo, snapshot.tree, path))
    if as_json:
        emit_json([{"path": p, **n.to_json()} for p, n in entries])
        return
    for p, n in entries:
        if long_format:
            click.echo(
                f"{n.type[0] if n.type != 'file' else '-'}{n.mode:04o} {n.user or n.uid}:{n.group or n.gid}"
                f" {n.size:>12} {rfc3339(datetime.fromtimestamp(n.mtime_ns / 1e9, UTC))} {p}"
            )
        else:
            click.echo(p)


@click.command("diff")
@click.argument("first")
@click.argument("second")
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def diff_command(
    settings: Settings,
    first: str,
    second: str,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Show what changed between snapshots FIRST and SECOND.

    + added, - removed, M modified (a file's content, a symlink's target), T type changed
    (a file became a symlink), U metadata updated (mode, owner, extended attributes, a
    file's mtime). A directory is listed only when its own mode, owner or attributes
    changed, not because its entries did.
    """
    with open_repo(settings, repo_ref, password_file, lock=None) as repo:
        a, b = repo.find_snapshot(first), repo.find_snapshot(second)
        changes = list(diff_snapshots(repo, a.tree, b.tree))
    if as_json:
        emit_json(
            {
                "first": a.id,
                "second": b.id,
                "changes": [{"change": c, "path": p} for c, p in changes],
            }
        )
        return
    for change, p in changes:
        click.echo(f"{change} {p}")
    counts = {c: sum(1 for x, _ in changes if x == c) for c in "+-MTU"}
    click.echo(
        f"{counts['+']} added, {counts['-']} removed, {counts['M']} modified,"
        f" {counts['T']} type changed, {counts['U']} metadata updated"
    )

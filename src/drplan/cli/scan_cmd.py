"""``drplan scan SYSTEM``: each snapshot of a files system judged clean, suspicious or
compromised (signs of ransomware; with ``--yara`` and ``--scanner``, what rules and a
malware scanner find in it), and the last clean point named (docs/security.md, "Finding
the last clean point", "Scanners and YARA")."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import click

from drplan import clock
from drplan.catalog.paths import state_dir
from drplan.cli.context import Settings, console, emit_json, pass_settings
from drplan.cli.repo_access import open_repo, plan_or_none, repo_options
from drplan.cli.restore_platform import locations_of, system_of
from drplan.errors import CompromisedError, DrplanError, IntegrityError, UsageError
from drplan.plan.model import FilesSystem, Plan, PostgresSystem
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.security.scan import Judgement, ScanReport, last_clean_point, scan_system, scan_with
from drplan.security.scan_scanner import Scanner, refuse_overlap, scratch_base
from drplan.security.scan_signals import MIN_HISTORY
from drplan.security.scan_yara import YaraMatcher, compile_rules

DEFAULT_SCANNER_TIMEOUT = "4h"  # per snapshot: clamscan reads about 20-100 MB/s

# Table columns: signal name -> heading.
_LINES_SHOWN = 5  # of the scanner's evidence lines, per snapshot, in the text output
_SHOWN = {"deleted": "deleted", "renamed": "renamed", "rewritten": "rewritten",
          "encrypted": "encrypted", "ransom_named": "ransom ext", "notes": "notes"}  # fmt: skip


@click.command("scan")
@click.argument("system_name", metavar="SYSTEM")
@click.option(
    "--since",
    metavar="DURATION|DATE",
    help="Show only snapshots taken at or after then (7d, 2026-11-20, an RFC 3339 time);"
    " earlier ones are still read, as history.",
)
@click.option(
    "--scanner",
    "scanner_command",
    metavar="CMD",
    help="A malware scanner run over snapshots restored into a scratch directory, {dir}"
    " standing for it (else it comes last), e.g. 'clamscan -r --infected --no-summary {dir}'.",
)
@click.option(
    "--scanner-found",
    metavar="EXITS",
    default="1",
    show_default=True,
    help="The scanner's exit statuses that mean it found something (comma-separated), or"
    " 'nonzero'; 0 is clean, any other status an error.",
)
@click.option(
    "--scanner-all",
    is_flag=True,
    help="Scan every readable snapshot (default: the newest, the suspicious ones and the last"
    " clean point).",
)
@click.option(
    "--scanner-timeout",
    metavar="DURATION",
    default=DEFAULT_SCANNER_TIMEOUT,
    show_default=True,
    help="How long the scanner may take per snapshot.",
)
@click.option(
    "--scratch",
    metavar="DIR",
    help="Where snapshots are restored for the scanner (default: STATE/scan); each is removed"
    " once scanned.",
)
@click.option(
    "--yara",
    "yara_rules",
    metavar="RULES",
    help="A YARA rule file matched over the content of what each snapshot brought (read"
    " from the repository, nothing restored).",
)
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def scan_command(
    settings: Settings,
    system_name: str,
    since: str | None,
    scanner_command: str | None,
    scanner_found: str,
    scanner_all: bool,
    scanner_timeout: str,
    scratch: str | None,
    yara_rules: str | None,
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
) -> None:
    """Judge each snapshot of SYSTEM (a files system) against the one before it and the
    system's history for signs of ransomware, and name the last clean snapshot.

    Exit 25 when the newest snapshot is suspicious or compromised; 1 when the scanner
    failed on a snapshot."""
    start = _since(since) if since else None
    scanner = _scanner(settings, scanner_command, scanner_found, scanner_all, scanner_timeout,
                       scratch)  # fmt: skip
    yara = YaraMatcher(compile_rules(yara_rules)) if yara_rules else None

    def tell(line: str) -> None:
        click.echo(line, err=True)

    with system_repo(settings, system_name, repo_ref, password_file, "scan") as (repo, ref):
        report = scan_system(repo, system_name, yara=yara)
        if scanner is not None and report.judgements:
            scan_with(scanner, repo, report.judgements, scanner_all, tell)
    if not report.judgements:
        raise DrplanError(
            f"{ref} holds no files snapshot of {system_name}",
            hint="back it up first (`drplan backup JOB`), or name another --repo",
        )
    shown = [j for j in report.judgements if start is None or j.snapshot.time >= start]
    point = last_clean_point(report.judgements)
    if as_json:
        emit_json({
            "system": system_name, "location": ref,
            "snapshots": [j.as_dict() for j in shown],
            "unreadable_snapshot_objects": report.unreadable_objects,
            "last_clean": None if point.judgement is None else point.judgement.snapshot.id,
            "last_clean_why": point.why,
        })  # fmt: skip
    else:
        _render(report, shown, point.judgement, point.why, yara is not None, scanner is not None)
    _exit_status(report, system_name)


def _scanner(
    settings: Settings, command: str | None, found: str, every: bool, timeout: str,
    scratch: str | None,
) -> Scanner | None:  # fmt: skip
    if command is None:
        given = [flag for flag, used in (("--scanner-all", every), ("--scratch", scratch),
                 ("--scanner-found", found != "1"),
                 ("--scanner-timeout", timeout != DEFAULT_SCANNER_TIMEOUT)) if used]  # fmt: skip
        if given:
            raise UsageError(f"{', '.join(given)}: only with --scanner",
                             hint="add --scanner CMD, or leave them out")  # fmt: skip
        return None
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        seconds = parse_duration(timeout).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--scanner-timeout: {exc}", hint="e.g. --scanner-timeout 2h") from None
    base = scratch_base(scratch, state_dir())
    plan = plan_or_none(settings)
    if plan is not None:
        refuse_overlap(base, _places(plan))
    return Scanner.parse(command, found, seconds, base)


def _places(plan: Plan) -> dict[str, list[str]]:
    """What each system backs up or runs on: never a scratch directory's home."""
    places: dict[str, list[str]] = {}
    for name, system in plan.systems.items():
        if isinstance(system, FilesSystem):
            places[name] = list(system.paths)
        elif isinstance(system, PostgresSystem) and system.data_dir:
            places[name] = [system.data_dir]
    return places


def _render(
    report: ScanReport, shown: list[Judgement], clean: Judgement | None, why: str,
    yara: bool, scanner: bool,
) -> None:  # fmt: skip
    from rich.table import Table  # noqa: PLC0415 - only for text output

    extra = ["yara"] * yara + ["scanner"] * scanner
    table = Table("time (UTC)", "id", "verdict", *_SHOWN.values(), *extra)
    for j in shown:
        table.add_row(clock.rfc3339(j.snapshot.time), j.snapshot.short_id, j.verdict,
                      *(_cell(j, name) for name in _SHOWN),
                      *(_content_cell(j, what) for what in extra))  # fmt: skip
    console().print(table)
    for j in shown:
        if j.compared_with is None and j.verdict != "unknown":
            click.echo(f"{j.snapshot.short_id}: nothing before it to compare with (no history):"
                       " judged on names and absolute thresholds alone")  # fmt: skip
        elif j.verdict != "unknown" and j.history < MIN_HISTORY:
            click.echo(f"{j.snapshot.short_id}: {j.history} earlier clean comparison(s), fewer than"
                       f" {MIN_HISTORY}: absolute thresholds decided")  # fmt: skip
        if j.verdict != "clean":
            examples = sorted({p for s in j.signals.values() if s.out_of_line for p in s.examples})
            click.echo(f"{j.snapshot.short_id} {j.verdict}: {'; '.join(j.reasons)}"
                       + (f" (e.g. {', '.join(examples[:5])})" if examples else ""))  # fmt: skip
        if j.scanner is not None and j.scanner.outcome == "found":
            for line in j.scanner.lines[:_LINES_SHOWN]:
                click.echo(f"  {line}")
            if j.scanner.lines_total > _LINES_SHOWN:
                click.echo(f"  ... {j.scanner.lines_total - _LINES_SHOWN} more line(s) (--json"
                           f" keeps {len(j.scanner.lines)})")  # fmt: skip
    for snapshot_id, reason in report.unreadable_objects.items():
        click.echo(f"{snapshot_id[:8]} unknown: {reason} (its system cannot be told)", err=True)
    if clean is None:
        click.echo(f"no clean point: {why}")
    else:
        s = clean.snapshot
        click.echo(f"last clean point: {s.short_id} of {clock.rfc3339(s.time)} ({why})")


def _content_cell(j: Judgement, what: str) -> str:
    if what == "yara":
        if j.yara is None:
            return "-"
        found = len(j.yara.matches) + len(j.yara.carried)
        return f"{found} match(es) !" if found else "no match"
    return (
        "-"
        if j.scanner is None
        else j.scanner.outcome + (" !" if j.scanner.outcome != "clean" else "")
    )


def _cell(j: Judgement, name: str) -> str:
    judged = j.signals.get(name)
    if judged is None or judged.value is None:
        return "-"
    shown = str(judged.count) if name == "notes" else f"{judged.value:.0%}"
    if judged.z is not None:
        shown += f" z={judged.z:.1f}"
    return shown + (" !" if judged.out_of_line else "")


def _exit_status(report: ScanReport, system: str) -> None:
    newest = report.newest_judged
    failed = [
        (j, j.scanner) for j in report.judgements if j.scanner and j.scanner.outcome == "error"
    ]
    unknown = [j for j in report.judgements if j.verdict == "unknown" and j.scanner is None]
    if newest is None and not failed:
        raise IntegrityError(
            f"no snapshot of {system} could be read ({len(unknown)} unknown): nothing was judged",
            hint="run `drplan check` on the location",
        )
    if unknown:
        click.echo(
            f"drplan: warning: {len(unknown)} snapshot(s) could not be read and are unknown"
            f" ({', '.join(j.snapshot.short_id for j in unknown)}); run `drplan check`",
            err=True,
        )
    if newest is not None and newest.verdict in ("suspicious", "compromised"):
        content = any(j.scanner or j.yara for j in report.judgements)
        raise CompromisedError(
            f"the newest snapshot of {system}, {newest.snapshot.short_id}, is {newest.verdict}:"
            f" {newest.reasons[0] if newest.reasons else 'see the table'}",
            # restore last-clean judges by the heuristics alone: name the scan's own answer.
            hint="restore the last clean point the last line names: `drplan restore ID"
            " --target DIR`"
            if content
            else f"restore the last clean point: `drplan restore last-clean --system {system}"
            " --target DIR`",
        )
    if failed:
        first, result = failed[0]
        raise DrplanError(
            f"the scanner could not judge {len(failed)} snapshot(s) of {system}"
            f" ({', '.join(j.snapshot.short_id for j, _ in failed)}; a clean one is now unknown):"
            f" {first.snapshot.short_id}: {result.error}",
            hint="run the scanner by hand to see why (its signature database, its permissions),"
            " or give --scanner-found the statuses it uses for a finding",
        )


def pick_last_clean(repo: Repository, system: str) -> tuple[Snapshot, str]:
    """The snapshot `drplan restore last-clean` restores, and why it is the one."""
    point = last_clean_point(scan_system(repo, system).judgements)
    if point.judgement is None:
        raise DrplanError(
            f"no clean snapshot of {system} to restore: {point.why}",
            hint=f"see `drplan scan {system}`",
        )
    return point.judgement.snapshot, point.why


@contextlib.contextmanager
def system_repo(
    settings: Settings, system: str, repo_ref: str | None, password_file: str | None, operation: str
) -> Iterator[tuple[Repository, str]]:
    """``--repo``, else the first of the system's job locations that opens (in plan order)."""
    plan = plan_or_none(settings)
    if plan is not None:
        system_of(plan, system, "files")
    refs = [repo_ref] if repo_ref else (locations_of(plan, system) if plan else [])
    if not refs:
        raise UsageError(f"no location given for {system}, and no job of the plan backs it up",
                         hint="pass --repo LOCATION")  # fmt: skip
    tried = []
    for ref in refs:
        stack = contextlib.ExitStack()
        try:
            repo = stack.enter_context(open_repo(settings, ref, password_file, operation=operation))
        except DrplanError as exc:
            if len(refs) == 1 or isinstance(exc, UsageError):
                raise
            tried.append(f"{ref}: {exc.message}")
            continue
        with stack:
            yield repo, ref
        return
    raise DrplanError(f"no location of {system} can be read: {'; '.join(tried)}",
                      hint="see `drplan locations status`")  # fmt: skip


def _since(text: str) -> datetime:
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        return clock.now() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a duration nor a date",
                         hint="e.g. --since 7d, --since 2026-11-20") from None  # fmt: skip
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

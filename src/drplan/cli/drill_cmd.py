"""``drplan drill run DRILL`` (a recovery rehearsed into a scratch target, measured and
judged) and ``drplan drill list`` (the plan's drills and how each last went)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drplan import clock
from drplan.cli.context import Settings, console, emit_json, pass_settings
from drplan.cli.repo_access import open_repo, password
from drplan.errors import CatalogError, DrillFailedError
from drplan.repo.password import PASSWORD_ENV, PASSWORD_FILE_ENV

if TYPE_CHECKING:
    from drplan.catalog.store import Catalog
    from drplan.drills.results import DrillResult, SystemResult
    from drplan.drills.runner import DrillContext
    from drplan.plan.loader import PlanFile

F = TypeVar("F", bound=Callable[..., Any])
CATALOG_HELP = "The catalog drills are recorded in (default $DRPLAN_CATALOG, else SQLite in the state directory)."


@click.group("drill")
def drill_group() -> None:
    """Recoveries rehearsed for real: `drplan drill run DRILL`, `drplan drill list`."""


@drill_group.command("run", short_help="Recover, validate, and measure RTO and RPO, for real.")
@click.argument("name", metavar="DRILL")
@click.option("--keep", is_flag=True, help="Leave the scratch target (stopped) for a look.")
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_settings
def run_command(
    settings: Settings,
    /,
    name: str,
    keep: bool,
    password_file: str | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Recover the drill's systems into scratch targets, validate them, measure RTO and RPO
    against the plan's objectives, record the result and its evidence; exit 21 when the
    drill did not pass. The scratch targets are always torn down (unless --keep)."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.drills.evidence import catalog_row, write_evidence  # noqa: PLC0415
    from drplan.drills.runner import run_drill  # noqa: PLC0415

    plan_file = settings.load()
    ctx = drill_context(settings, plan_file, password_file, keep)
    store = _open_catalog(catalog)
    try:
        ctx.acquire, ctx.release = store.acquire, store.release
        ctx.history = store.drills(limit=100)
        result = run_drill(ctx, name)
        path, digest = write_evidence(result, Path(state_dir()) / "drills" / "evidence")
        try:
            store.record_drill(catalog_row(result, path, digest))
        except CatalogError as exc:  # the evidence is written: the rebuild finds it
            verdict = "passed" if result.passed else "did not pass"
            raise CatalogError(
                f"drill {name} {verdict}; its evidence is in {path}, but the catalog could"
                f" not record it: {exc.message}",
                hint=f"{exc.hint}; then `drplan catalog rebuild` adds it from its evidence",
            ) from None
    finally:
        store.close()
    if as_json:
        emit_json({**result.as_dict(), "evidence": str(path), "sha256": digest})
    else:
        _print(result, path, digest)
    if not result.passed:
        raise DrillFailedError(
            f"drill {name} did not pass: {'; '.join(result.failures)}",
            hint=f"the evidence is in {path}",
        )


def drill_context(
    settings: Settings, plan_file: PlanFile, password_file: str | None, keep: bool = False
) -> DrillContext:
    """What recovering into scratch targets needs: the locations, opened for restoring,
    and the scratch server's environment."""
    from drplan.cli.restore_cmd import reach_of  # noqa: PLC0415
    from drplan.drills.runner import DrillContext  # noqa: PLC0415

    secret = password(settings, password_file).decode()
    # The scratch server's restore_command (drplan wal fetch) reads the password from its
    # environment: no file to hand over, nothing on a command line.
    server_env = {**os.environ, PASSWORD_ENV: secret}
    server_env.pop(PASSWORD_FILE_ENV, None)  # a file the server's user may not read
    return DrillContext(
        plan_file.plan,
        plan_file.path,
        open_location=lambda ref: open_repo(settings, ref, password_file, operation="restore"),
        reach_of=lambda ref, system: reach_of(settings, ref, password_file, system),
        password_file=None,
        server_env=server_env,
        keep=keep,
    )


def _open_catalog(url: str | None) -> Catalog:
    from drplan.catalog.paths import default_url  # noqa: PLC0415
    from drplan.catalog.store import Catalog  # noqa: PLC0415

    return Catalog.open(url or default_url())


def _print(result: DrillResult, path: Path, digest: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    out = console()
    verdict = "[bold green]passed[/]" if result.passed else "[bold red]failed[/]"
    out.print(f"drill {result.drill} ({result.kind}): {verdict}")
    for system in result.systems:
        if system.stage == "corruption":
            out.print(f"\n[bold]{system.system}[/] (the recovered copy damaged: are the checks"
                      " catching it?)")  # fmt: skip
        else:
            stage = "" if system.stage == "recovery" else f" ({system.stage})"
            out.print(f"\n[bold]{system.system}[/]{stage} from {system.location or 'no location'}"
                      f" to {system.recovery_point}, disaster at {clock.rfc3339(system.disaster)}")  # fmt: skip
            phases = Table("phase", "seconds")
            for phase, seconds in system.phases.items():
                phases.add_row(phase, f"{seconds:.1f}")
            out.print(phases)
            out.print(_measure("RTO", system.rto_seconds, system.rto_objective_seconds))
            rpo = _measure("RPO", system.rpo_seconds, system.rpo_objective_seconds)
            measured = system.rpo_seconds is not None
            out.print(rpo + (f" ({explain_rpo(system)})" if measured else ""))
        checks = Table("validation", "outcome", "seconds", "detail")
        colours = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
        for v in system.validations:
            checks.add_row(v.name, f"[{colours[v.outcome]}]{v.outcome}[/]", f"{v.seconds:.1f}",
                           v.detail)  # fmt: skip
        out.print(checks)
        if system.error:
            out.print(f"[bold red]recovery failed:[/] {system.error}")
    if result.critical_path:
        predicted = (f"; {result.predicted_seconds:.1f}s predicted from past drills"
                     if result.predicted_seconds is not None else "")  # fmt: skip
        out.print(f"\ncritical path: {' -> '.join(result.critical_path)},"
                  f" {result.critical_seconds or 0:.1f}s{predicted}")  # fmt: skip
        if result.critical_objective_seconds is not None:
            out.print(_measure("full-platform RTO", result.critical_seconds,
                               result.critical_objective_seconds))  # fmt: skip
    if result.error:
        out.print(f"[bold red]{result.error}[/]")
    if result.kept:
        out.print(f"scratch target kept in {result.kept}")
    out.print(f"evidence: {path} (sha256 {digest})")


def _measure(what: str, seconds: float | None, objective: float | None) -> str:
    if seconds is None:
        return f"{what}: not measured"
    if objective is None:
        return f"{what} {seconds:.1f}s (no objective)"
    met = "[green]met[/]" if seconds <= objective else "[bold red]missed[/]"
    return f"{what} {seconds:.1f}s against an objective of {objective:.0f}s: {met}"


def explain_rpo(system: SystemResult) -> str:
    """What a measured RPO means for the data, in words a user knows (the marker row is
    what the plan calls the drill's ``sentinel``)."""
    if system.sentinel_found:
        return "nothing lost: the marker row the drill wrote at the disaster moment was recovered"
    lost = f"{system.rpo_seconds or 0.0:.1f}s"
    if system.sentinel_found is False:
        return (f"the last {lost} of writes before the disaster were not recovered: the marker"
                " row the drill wrote at the disaster moment is missing from the recovered copy")  # fmt: skip
    if system.last_transaction is None:
        return f"the recovered copy lacks the last {lost} of writes before the disaster"
    return (f"the recovered copy holds the writes up to {clock.rfc3339(system.last_transaction)},"
            f" {lost} before the disaster")  # fmt: skip


@drill_group.command("list", short_help="The plan's drills and the last run of each.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_command(settings: Settings, /, catalog: str | None, as_json: bool) -> None:
    """The plan's drills: kind, systems, schedule, and the last run of each."""
    plan = settings.load().plan
    from drplan.drills.schedule import newest_drills  # noqa: PLC0415

    last: dict[str, dict[str, Any]] = {}
    try:
        store = _open_catalog(catalog)
        try:
            last = newest_drills(store, plan)
        finally:
            store.close()
    except CatalogError as exc:
        if not as_json:
            from drplan.cli.catalog_cmd import unavailable  # noqa: PLC0415

            unavailable(exc)
    rows: list[dict[str, Any]] = [
        {
            "drill": name,
            "kind": drill.kind,
            "systems": drill.systems,
            "schedule": None if drill.schedule is None else str(drill.schedule),
            "from_location": drill.from_location,
            "last_run": None if name not in last else {
                "started_at": clock.rfc3339(last[name]["started_at"]),
                "passed": bool(last[name]["passed"]),
                "rto_seconds": last[name]["rto_seconds"],
                "rpo_seconds": last[name]["rpo_seconds"],
                "evidence": last[name]["evidence"],
            },
        }
        for name, drill in plan.drills.items()
    ]  # fmt: skip
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table("drill", "kind", "systems", "schedule", "last run")
    for row in rows:
        run = row["last_run"]
        drill = plan.drills[row["drill"]]
        shown = "never" if run is None else (
            f"{run['started_at']} {'passed' if run['passed'] else 'failed'}"
            + (f", RTO {run['rto_seconds']:.0f}s" if run["rto_seconds"] is not None else "")
            + (f", RPO {run['rpo_seconds']:.0f}s" if run["rpo_seconds"] is not None else "")
        )  # fmt: skip
        table.add_row(row["drill"], row["kind"], ", ".join(row["systems"]) or "all",
                      drill.schedule_text, shown)  # fmt: skip
    console().print(table)


def report_options(fn: F) -> F:
    """--since, --format, --output and --catalog: `drill report` and `report` share them."""
    for option in reversed([
        click.option("--since", default="365d", show_default=True, metavar="DURATION|DATE",
                     help="Since this long ago (e.g. 90d) or this date (2026-01-01)."),
        click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]),
                     default="md", show_default=True),
        click.option("-o", "--output", metavar="FILE",
                     help="Write to FILE instead of standard output."),
        click.option("--catalog", metavar="URL", help=CATALOG_HELP),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


@drill_group.command("report", short_help="Every drill run since a date, with the recovery KPIs.")
@report_options
@pass_settings
def report_command(
    settings: Settings, /, since: str, fmt: str, output: str | None, catalog: str | None
) -> None:
    """Every drill run since then, each system's restore times as a trend, and the plan's
    recovery KPIs (within RTO, within RPO, data integrity) per window, tier and data
    class against its success criteria."""
    write_report(settings, since, fmt, output, catalog, runs=True)


def write_report(
    settings: Settings, since: str, fmt: str, output: str | None, catalog: str | None, runs: bool
) -> None:
    import json  # noqa: PLC0415

    from drplan.drills.report import as_html, markdown, report  # noqa: PLC0415
    from drplan.incidents.outcomes import from_catalog, recoveries  # noqa: PLC0415

    plan = settings.load().plan
    now = clock.now()
    start = _since(since, now)
    store = _open_catalog(catalog)
    try:
        rows = store.drills(since=start, limit=100_000)
        incidents, left_out = from_catalog(store, start)
    finally:
        store.close()
    for why in left_out:
        click.echo(f"drplan: warning: incident left out of the KPIs: {why}", err=True)
    data = report(plan, rows, now, runs=runs, incidents=recoveries(incidents))
    if fmt == "json":
        text = json.dumps(data, indent=2) + "\n"
    elif fmt == "html":
        text = as_html(data)
    else:
        text = markdown(data)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


def _since(text: str, now: Any) -> Any:
    from datetime import UTC, datetime  # noqa: PLC0415

    from drplan.errors import UsageError  # noqa: PLC0415
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a duration nor a date",
                         hint="e.g. --since 90d or --since 2026-01-01") from None  # fmt: skip

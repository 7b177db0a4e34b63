"""``drplan plan validate|lint|show``: check a plan, hold it against its objectives, display it."""

from __future__ import annotations

from collections import Counter

import click
from rich.table import Table

from drplan import clock
from drplan.cli.context import Settings, console, counted, emit_json, pass_settings
from drplan.cli.plan_show import render_summary
from drplan.errors import LintFailedError, PlanInvalidError, SecretMissingError, UsageError
from drplan.plan.export import to_yaml
from drplan.plan.lint import RULES, Finding, LintContext, failing, run_lint
from drplan.plan.loader import PlanFile
from drplan.plan.secrets import find_refs, missing
from drplan.plan.source import dotted
from drplan.plan.summary import summarize

plan_argument = click.argument("plan_file", metavar="[PLAN]", required=False)
COUNTED_SECTIONS = (
    "systems",
    "jobs",
    "locations",
    "scenarios",
    "runbooks",
    "drills",
    "roles",
    "channels",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("plan")
def plan_group() -> None:
    """Check, lint and show the plan."""


@plan_group.command(
    "validate",
    short_help="Check the plan's syntax, schema, references and secrets.",
)
@plan_argument
@json_option
@click.option(
    "--no-env",
    is_flag=True,
    help="Do not check that the environment variables of ${VAR} secrets are set.",
)
@pass_settings
def validate_command(
    settings: Settings, plan_file: str | None, as_json: bool, no_env: bool
) -> None:
    """Check the plan's syntax, schema, references and secret variables."""
    try:
        loaded = settings.load(plan_file, actions=True)
    except PlanInvalidError as exc:
        if as_json:
            problems = [vars(p) for p in exc.problems]
            emit_json({"valid": False, "problems": problems})
        raise
    refs = list(find_refs(loaded.plan))
    unset = [] if no_env else missing(ref for _, ref in refs)
    plan = loaded.plan
    counts = {section: len(getattr(plan, section)) for section in COUNTED_SECTIONS}
    if as_json:
        emit_json(
            {
                "valid": not unset,
                "file": loaded.path,
                "name": plan.name,
                "counts": counts,
                "secrets": {
                    "referenced": sorted({ref.variable for _, ref in refs}),
                    "missing": unset,
                    "checked": not no_env,
                },
            }
        )
    if unset:
        first_use = {ref.variable: dotted(path) for path, ref in reversed(refs)}
        where = ", ".join(f"{var} (used by {first_use[var]})" for var in unset)
        raise SecretMissingError(
            f"{loaded.path}: environment variables for secrets are not set: {where}",
            hint="export them, or pass --no-env to check the plan without its secrets",
        )
    if not as_json:
        summary = ", ".join(counted(n, k.removesuffix("s")) for k, n in counts.items())
        checked = (
            "secrets not checked" if no_env else f"{counted(len(refs), 'secret reference')} set"
        )
        click.echo(f"{loaded.path}: valid plan '{plan.name}': {summary}; {checked}")


@plan_group.command("lint", short_help="Find what keeps the plan from meeting its own objectives.")
@plan_argument
@json_option
@click.option("--strict", is_flag=True, help="Fail on warnings as well as errors.")
@click.option(
    "--ignore", "ignored", multiple=True, metavar="RULE", help="Skip a rule by id (repeatable)."
)
@click.option("--list-rules", is_flag=True, help="List every rule and exit.")
@pass_settings
def lint_command(
    settings: Settings,
    plan_file: str | None,
    as_json: bool,
    strict: bool,
    ignored: tuple[str, ...],
    list_rules: bool,
) -> None:
    """Find what keeps the plan from meeting its own objectives."""
    if list_rules:
        _list_rules(as_json)
        return
    known = {rule.id for rule in RULES}
    unknown = sorted(set(ignored) - known)
    if unknown:
        raise UsageError(
            f"--ignore {', '.join(unknown)}: no such rule",
            hint="see `drplan plan lint --list-rules`",
        )
    loaded = settings.load(plan_file, actions=True)
    rules = [rule for rule in RULES if rule.id not in ignored]
    findings = run_lint(LintContext(loaded.plan, clock.now()), rules)
    bad = failing(findings, strict=strict)
    counts = Counter(f.severity.value for f in findings)
    if as_json:
        emit_json(
            {
                "file": loaded.path,
                "passed": not bad,
                "strict": strict,
                "counts": {s: counts.get(s, 0) for s in ("error", "warning", "info")},
                "findings": [_located(loaded, f.path) | f.as_dict() for f in findings],
            }
        )
    else:
        _print_findings(loaded, findings, counts)
    if bad:
        raise LintFailedError(
            f"{loaded.path}: lint failed with {len(bad)} finding(s) at"
            f" {'warning' if strict else 'error'} level or above",
            hint="fix them, or `--ignore RULE` the ones your plan accepts",
        )


def _located(loaded: PlanFile, path: tuple[str | int, ...]) -> dict[str, int]:
    pos = loaded.source.locate(path)
    return {"line": pos.line, "column": pos.column}


def _print_findings(loaded: PlanFile, findings: list[Finding], counts: Counter[str]) -> None:
    out = console()
    style = {"error": "bold red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        pos = loaded.source.locate(f.path)
        sev = f.severity.value
        out.print(
            f"{loaded.path}:{pos.line}:{pos.column}: [{style[sev]}]{sev}[/] "
            f"[bold]{f.rule}[/] {f.name}: {f.message}",
            markup=True,
            soft_wrap=True,
        )
        out.print(f"    hint: {f.hint}", style="dim", soft_wrap=True, markup=False)
    total = ", ".join(counted(counts.get(s, 0), s) for s in ("error", "warning", "info"))
    out.print(f"{loaded.path}: {counted(len(findings), 'finding')} ({total})")


def _list_rules(as_json: bool) -> None:
    if as_json:
        emit_json(
            [
                {"rule": r.id, "name": r.name, "severity": r.severity.value, "summary": r.summary}
                for r in RULES
            ]
        )
        return
    table = Table("rule", "name", "severity", "what it finds", title="Lint rules")
    for r in RULES:
        table.add_row(r.id, r.name, r.severity.value, r.summary)
    console().print(table)


@plan_group.command("show", short_help="Show the plan as tables, JSON or YAML.")
@plan_argument
@json_option
@click.option(
    "--yaml",
    "as_yaml",
    is_flag=True,
    help="Print the plan as understood: anchors expanded, as YAML.",
)
@pass_settings
def show_command(settings: Settings, plan_file: str | None, as_json: bool, as_yaml: bool) -> None:
    """Show objectives, systems, jobs with their next runs, locations, scenarios and more."""
    if as_json and as_yaml:
        raise UsageError("--json and --yaml cannot be combined", hint="pick one output format")
    loaded = settings.load(plan_file, actions=True)
    if as_yaml:
        click.echo(to_yaml(loaded.plan), nl=False)
        return
    summary = summarize(loaded.plan, clock.now())
    if as_json:
        emit_json(summary.as_json())
    else:
        render_summary(console(), summary)

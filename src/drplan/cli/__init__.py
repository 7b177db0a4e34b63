"""The ``drplan`` command line: one module per command group, each a thin layer over a service.

Modules here parse flags, call plain functions that the daemon and the API call
too, and render results as text or JSON. Every failure a user can cause ends in
one line on standard error and a documented exit code (docs/cli.md); a
traceback appears only for a bug, and only with ``--debug``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from drplan import __version__
from drplan.cli.context import Settings
from drplan.cli.suggest import usage_problem
from drplan.errors import DrplanError, PlanInvalidError

INTERNAL_ERROR = 70
INTERRUPTED = 130


# name: (where the command lives, its line in `drplan --help`). A command's module is
# imported only when it runs: a backup should not pay for the plan schema's import, nor
# `drplan --help` (or a did-you-mean) for every command's.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("drplan.cli.init_cmd:init_command", "Write a commented starter plan."),
    "plan": ("drplan.cli.plan_cmd:plan_group", "Check, lint and show the plan."),
    "repo": ("drplan.cli.repo_cmd:repo_group", "Create and inspect repositories."),
    "key": (
        "drplan.cli.key_cmd:key_group",
        "Manage the passwords (key files) that open a repository.",
    ),
    "backup": ("drplan.cli.backup_cmd:backup_group", "Back up files, or run a job of the plan."),
    "snapshots": ("drplan.cli.snapshots_cmd:snapshots_command", "List snapshots, oldest first."),
    "ls": ("drplan.cli.snapshots_cmd:ls_command", "List the files of a snapshot."),
    "diff": ("drplan.cli.snapshots_cmd:diff_command", "Show what changed between two snapshots."),
    "scan": (
        "drplan.cli.scan_cmd:scan_command",
        "Find the last clean snapshot of a files system (ransomware signs).",
    ),
    "restore": (
        "drplan.cli.restore_cmd:restore_group",
        "Restore a snapshot's files, or a PostgreSQL cluster.",
    ),
    "check": ("drplan.cli.check_cmd:check_command", "Check a repository, and its data if asked."),
    "forget": (
        "drplan.cli.forget_cmd:forget_command",
        "Forget snapshots the retention policy does not keep.",
    ),
    "prune": ("drplan.cli.forget_cmd:prune_command", "Delete data no snapshot needs."),
    "copy": ("drplan.cli.copy_cmd:copy_command", "Copy snapshots to another location."),
    "locations": (
        "drplan.cli.locations_cmd:locations_group",
        "The state of the plan's locations.",
    ),
    "wal": ("drplan.cli.wal_cmd:wal_group", "Archive PostgreSQL's WAL, and fetch it back."),
    "status": (
        "drplan.cli.status_cmd:status_command",
        "The plan at a glance: RPO exposure, jobs, locations.",
    ),
    "serve": ("drplan.cli.serve_cmd:serve_command", "Run every job of the plan on its schedule."),
    "trigger": (
        "drplan.cli.trigger_cmd:trigger_command",
        "Run the jobs scheduled `on EVENT` (through the daemon when one runs).",
    ),
    "catalog": (
        "drplan.cli.catalog_cmd:catalog_group",
        "Rebuild the daemon's run history from the repositories.",
    ),
    "observability": (
        "drplan.cli.observability_cmd:observability_group",
        "Prometheus alert rules and a Grafana dashboard.",
    ),
    "drill": ("drplan.cli.drill_cmd:drill_group", "Rehearse recoveries and record the evidence."),
    "incident": (
        "drplan.cli.incident_cmd:incident_group",
        "Declare an incident and run its runbook against the RTO clock.",
    ),
    "report": (
        "drplan.cli.report_cmd:report_command",
        "Recovery KPIs and restore-time trends.",
    ),
    "web": ("drplan.cli.web_cmd:web_command", "Serve the API alone, for a second host."),
    "status-page": (
        "drplan.cli.statuspage_cmd:status_page_group",
        "Publish the public status page's static copy.",
    ),
    "user": ("drplan.cli.access_cmd:user_group", "Local accounts of the dashboard and the API."),
    "token": ("drplan.cli.access_cmd:token_group", "Scoped API tokens: shown once, revocable."),
    "audit": (
        "drplan.cli.audit_cmd:audit_group",
        "The audit trails: web and API changes, and every repository operation.",
    ),
    "secrets": (
        "drplan.cli.secrets_cmd:secrets_group",
        "The plan's credentials: fingerprints, last changes, and proof they work.",
    ),
    "evidence": (
        "drplan.cli.evidence_cmd:evidence_group",
        "Preserve a compromised system as it is, under Object Lock.",
    ),
}


class LazyGroup(click.Group):
    """The root: its commands from COMMANDS, each imported when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr = entry[0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for name, (_, line) in COMMANDS.items()])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--plan",
    "plan_path",
    metavar="FILE",
    envvar="DRPLAN_PLAN",
    help="Plan file (default: $DRPLAN_PLAN, then ./drplan.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="drplan")
@click.pass_context
def cli(ctx: click.Context, plan_path: str | None, debug: bool) -> None:
    """drplan: your disaster recovery plan, executable.

    Validate the plan, back up what it names, restore to any point in time, prove
    recovery with drills, and report RTO and RPO as measured.
    """
    source = ctx.get_parameter_source("plan_path")
    origin = "$DRPLAN_PLAN" if source is click.core.ParameterSource.ENVIRONMENT else "--plan"
    ctx.obj = Settings(plan_path=plan_path, debug=debug, plan_origin=origin)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising, for tests and the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # File names need not be UTF-8: print their bytes as they are, as ls does.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        cli.main(args=args, prog_name="drplan", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        click.echo(f"drplan: {usage_problem(exc)}; see `{_help_of(exc.ctx)} --help`", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"drplan: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("drplan: interrupted", err=True)
        return INTERRUPTED
    except KeyboardInterrupt:
        click.echo("drplan: interrupted", err=True)
        return INTERRUPTED
    except PlanInvalidError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"drplan: {exc.hint}", err=True)
        return exc.exit_code
    except DrplanError as exc:
        hint = f"; {exc.hint}" if exc.hint else ""
        click.echo(f"drplan: {exc.message}{hint}", err=True)
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"drplan: internal error: {type(exc).__name__}: {exc}; rerun with --debug and report it",
            err=True,
        )
        return INTERNAL_ERROR
    return 0


def _help_of(ctx: click.Context | None) -> str:
    """The command whose help a usage error points to: a hidden default command's
    (``drplan restore snapshot``) is its group's, where users read about it."""
    while ctx is not None and ctx.command.hidden and ctx.parent is not None:
        ctx = ctx.parent
    return ctx.command_path if ctx is not None else "drplan"

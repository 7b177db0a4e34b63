"""A runbook step's ``action`` parsed as the drplan command line it claims to be: the
command found at every level, its arguments and options checked by the command's own
parser (names, types, choices, required ones), and nothing run.

A plan that names an action drplan does not have (``restore kubernetes``) or gets wrong
(``--to before-breach``) is refused when it is loaded for the commands that run
runbooks and validate plans, not discovered at 3 a.m. mid-incident. Commands on the hot
path (``wal push``, run by PostgreSQL for every segment) do not pay for importing every
command to check.
"""

from __future__ import annotations

import shlex

import click

from drplan.errors import DrplanError, PlanInvalidError
from drplan.plan.loader import PlanFile
from drplan.plan.source import PathKey

# Recovery targets a restore accepts only in an incident, or searched for: checked here
# by the same parser the restore uses.
TARGET_COMMANDS = (("restore", "postgres"),)


def action_problem(action: str) -> str | None:
    """What is wrong with ``action`` as a drplan command line (None: it parses)."""
    from drplan.cli import cli  # noqa: PLC0415 - the root imports this module's callers

    try:
        words = shlex.split(action)
    except ValueError as exc:
        return f"action '{action}' is not a command line: {exc}"
    path: list[str] = []
    try:
        ctx = cli.make_context("drplan", list(words), resilient_parsing=False)
        command: click.Command = cli
        while isinstance(command, click.Group):
            args = [*_protected(ctx), *ctx.args]
            if not args:
                return f"action '{action}' names no command"
            name, sub, rest = command.resolve_command(ctx, args)
            if sub is None or name is None:
                return f"action '{action}': no command '{args[0]}'"
            path.append(name)
            if isinstance(sub, click.Group) and not rest:
                return f"action '{action}' names no command after 'drplan {' '.join(path)}'"
            ctx = sub.make_context(name, rest, parent=ctx)
            command = sub
        point = ctx.params.get("point")
        if tuple(path) in TARGET_COMMANDS and isinstance(point, str):
            _check_target(point)
    except click.exceptions.Exit:
        return f"action '{action}' only asks for help"
    except click.UsageError as exc:
        from drplan.cli.suggest import usage_problem  # noqa: PLC0415

        return f"action '{action}' is not a drplan command line: {usage_problem(exc)}"
    except DrplanError as exc:
        return f"action '{action}': {exc.message}"
    return None


def check_actions(plan_file: PlanFile) -> None:
    """Raise PlanInvalidError listing every step whose action does not parse."""
    problems = []
    for name, runbook in plan_file.plan.runbooks.items():
        for p, phase in enumerate(runbook.phases):
            for s, step in enumerate(phase.steps):
                if step.action is None:
                    continue
                found = action_problem(step.action)
                if found is not None:
                    at: PathKey = ("runbooks", name, "phases", p, "steps", s, "action")
                    problems.append(plan_file.source.problem(at, found))
    if problems:
        raise PlanInvalidError(problems)


def _protected(ctx: click.Context) -> list[str]:
    """The words a group left for its subcommand (renamed across click versions)."""
    if hasattr(ctx, "_protected_args"):
        return list(ctx._protected_args)
    return list(ctx.protected_args)  # click before 8.2


def _check_target(point: str) -> None:
    from drplan.incidents.points import POINTS  # noqa: PLC0415
    from drplan.recovery.pitr import parse_target  # noqa: PLC0415

    if point not in POINTS:
        parse_target(point)

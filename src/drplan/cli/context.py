"""What every command receives from the root: global settings, plan loading, output helpers."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from drplan.cli.suggest import nearest, subcommand_names

if TYPE_CHECKING:
    from rich.console import Console

    from drplan.plan.loader import PlanFile


@dataclass(frozen=True)
class Settings:
    plan_path: str | None = None
    debug: bool = False
    plan_origin: str = "--plan"

    def load(self, override: str | None = None, *, actions: bool = False) -> PlanFile:
        """The plan named on the command line (a command's own argument wins over --plan);
        with ``actions``, every runbook action checked as a drplan command line too (for
        the commands that validate plans or run runbooks: it imports every command)."""
        from drplan.plan.loader import load_plan, resolve_plan_path  # noqa: PLC0415 - see COMMANDS

        if override:
            loaded = load_plan(resolve_plan_path(override, "the command line"))
        else:
            loaded = load_plan(resolve_plan_path(self.plan_path, self.plan_origin))
        if actions:
            from drplan.cli.actions import check_actions  # noqa: PLC0415

            check_actions(loaded)
        return loaded


class DefaultToCommand(click.Group):
    """A group whose first argument, unless it names a subcommand or is an option, goes to
    its ``default_command``: ``drplan backup JOB`` beside ``drplan backup files``.

    A first argument that is a slip of a subcommand's name (``fils``) is answered with that
    name, unless the default command ``takes`` it (the plan has a job called ``file``)."""

    default_command = ""
    default_metavar = ""  # what the default command's argument is called: JOB, SNAPSHOT

    def takes(self, ctx: click.Context, word: str) -> bool:
        """Whether WORD is an argument of the default command. Asked only of a word close to
        a subcommand's name, so it may take its time (load the plan)."""
        return True

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            word = args[0]
            near = nearest(word, subcommand_names(ctx))
            if near is not None and not ctx.resilient_parsing and not self.takes(ctx, word):
                raise click.UsageError(
                    f"No {self.default_metavar.lower()} or subcommand {word!r}"
                    f" (did you mean {near!r}?)",
                    ctx,
                )
            return self.default_command, self.commands[self.default_command], args
        return super().resolve_command(ctx, args)


PIPE_WIDTH = 240
pass_settings = click.make_pass_decorator(Settings, ensure=True)


def console() -> Console:
    """Rich console on standard output; plain when not a terminal or when NO_COLOR is set.

    Piped output is not cut to 80 columns: tables get the width they need (COLUMNS wins).
    Rich is imported here, not at the top: commands that print JSON or one line start
    faster without it (a re-backup of unchanged files is dominated by start-up).
    """
    from rich.console import Console  # noqa: PLC0415

    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=wide)


def emit_json(data: Any) -> None:
    # ASCII with escapes: valid JSON even for file names that are not UTF-8.
    click.echo(json.dumps(data, indent=2, ensure_ascii=True))


def counted(number: int, noun: str) -> str:
    """``1 finding``, ``2 findings``: plural nouns here all take a plain 's'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def human_bytes(count: float) -> str:
    """``1.5 MiB``: binary units, three significant figures."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1024
    return f"{count} TiB"

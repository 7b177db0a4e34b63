"""``drplan init``: write a commented starter plan that validates and lints clean."""

from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import click

from drplan import clock
from drplan.errors import DrplanError, UsageError
from drplan.plan.loader import DEFAULT_PLAN

REVIEW_CADENCE = timedelta(days=90)


def starter_plan() -> str:
    """The starter plan, dated today with its first review a quarter ahead."""
    today = clock.now().date()
    text = files("drplan").joinpath("templates/starter.yaml").read_text(encoding="utf-8")
    return text.replace("{today}", today.isoformat()).replace(
        "{next_review}", (today + REVIEW_CADENCE).isoformat()
    )


@click.command("init")
@click.argument("path", default=DEFAULT_PLAN, metavar="[PATH]")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_command(path: str, force: bool) -> None:
    """Write a commented starter plan to PATH (default ./drplan.yaml)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{path} is a directory", hint="give a file name, e.g. drplan.yaml")
    if target.exists() and not force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist", hint="create it first")
    try:
        target.write_text(starter_plan(), encoding="utf-8")
    except OSError as exc:
        raise DrplanError(
            f"cannot write {path}: {exc.strerror}", hint="check the path and permissions"
        ) from None
    click.echo(
        f"wrote {path}; next: `drplan plan validate --no-env {path}`, then `drplan plan lint {path}`"
    )

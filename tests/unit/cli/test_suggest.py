"""Typos on the command line get the real name: every command, every option, every level."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from drplan.cli import cli
from tests.conftest import ROOT, Result, dump

Run = Callable[..., Result]

# Hidden commands a user reaches through their group's default: `drplan backup JOB`.
DEFAULT_ARGUMENT = {("backup", "job"): "nightly", ("restore", "snapshot"): "latest"}


@pytest.fixture(autouse=True)
def no_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRPLAN_PLAN", raising=False)
    monkeypatch.delenv("DRPLAN_REPO", raising=False)


def commands(
    command: click.Command = cli, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """(what a user types to reach it, command) for every command of the CLI."""
    yield words, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            word = DEFAULT_ARGUMENT.get((words[-1] if words else "", name), name)
            yield from commands(sub, (*words, word))


def visible_subcommands(group: click.Group) -> list[str]:
    ctx = click.Context(group)
    return [n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden]  # type: ignore[union-attr]


def long_options(command: click.Command) -> list[str]:
    ctx = click.Context(command)
    return [
        name
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    ]


def typos(name: str) -> list[str]:
    """One-letter slips of a name: a letter left out, two swapped, one mistyped."""
    dashes = name[: len(name) - len(name.lstrip("-"))]
    bare = name[len(dashes) :]
    middle = len(bare) // 2
    slips = {
        bare[:middle] + bare[middle + 1 :],
        bare[: middle - 1] + bare[middle] + bare[middle - 1] + bare[middle + 1 :],
        bare[:middle] + ("q" if bare[middle] != "q" else "z") + bare[middle + 1 :],
    }
    return sorted(dashes + s for s in slips if s and s != bare)


def one_line(result: Result) -> str:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    return result.err


def test_every_subcommand_typo_gets_the_real_name(run: Run) -> None:
    checked = 0
    for words, command in commands():
        if not isinstance(command, click.Group):
            continue
        names = visible_subcommands(command)
        for name in names:
            for typo in typos(name):
                if typo in names:
                    continue
                err = one_line(run(*words, typo))
                assert f"(did you mean '{name}'?)" in err, (words, typo, err)
                assert f"see `{' '.join(('drplan', *words))} --help`" in err
                checked += 1
    assert checked > 100


def test_every_option_typo_gets_the_real_option(run: Run) -> None:
    checked = 0
    for words, command in commands():
        names = long_options(command)
        for name in names:
            for typo in typos(name):
                if typo in names:
                    continue
                err = one_line(run(*words, typo))
                assert f"(did you mean '{name}'?)" in err, (words, typo, err)
                checked += 1
    assert checked > 300


def test_a_root_command_typo(run: Run) -> None:
    err = one_line(run("snapshot"))
    assert (
        err
        == "drplan: No such command 'snapshot' (did you mean 'snapshots'?); see `drplan --help`\n"
    )


def test_a_subcommand_typo_beside_a_default_is_not_taken_for_a_job(run: Run) -> None:
    err = one_line(run("backup", "fils", "/x", "--repo", "r"))
    assert err == (
        "drplan: No job or subcommand 'fils' (did you mean 'files'?); see `drplan backup --help`\n"
    )
    err = one_line(run("restore", "postgress", "db", "--target-dir", "/x"))
    assert "No snapshot or subcommand 'postgress' (did you mean 'postgres'?)" in err


def test_an_option_typo_is_not_answered_with_help(run: Run) -> None:
    err = one_line(run("backup", "files", "/x", "--rep", "r"))
    assert err == (
        "drplan: No such option '--rep' (did you mean '--repo'?); see `drplan backup files --help`\n"
    )


def test_an_option_of_a_sibling_says_which_command_has_it(run: Run) -> None:
    err = one_line(run("backup", "nightly", "--repo", "r"))
    assert "No such option '--repo' (--repo is an option of `drplan backup files`)" in err
    err = one_line(run("restore", "latest", "--target-dir", "/x"))
    assert "(--target-dir is an option of `drplan restore postgres`)" in err
    err = one_line(run("key", "--repo", "r", "list"))
    assert "--repo is an option of `drplan key add`, `drplan key list`" in err
    err = one_line(run("restore", "--targt", "/x", "latest"))
    assert (
        "(did you mean '--target', an option of `drplan restore git`, `drplan restore SNAPSHOT`?)"
        in err
    )


def test_a_root_option_after_the_command_says_where_it_goes(run: Run) -> None:
    err = one_line(run("status", "--plan", "p.yaml"))
    assert "(--plan is an option of `drplan`: give it before `status`)" in err


def plan_with_jobs(tmp_path: Path, plan_data: dict[str, Any], *names: str) -> Path:
    web = plan_data["jobs"].pop("web")
    for name in names:
        plan_data["jobs"][name] = {**web, "locations": ["local"]}
    plan_data["locations"]["local"]["path"] = str(tmp_path / "no-repo-here")
    path = tmp_path / "drplan.yaml"
    path.write_text(dump(plan_data))
    return path


def test_a_job_named_like_a_subcommand_still_runs(
    run: Run, tmp_path: Path, plan_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guard: the typo check beside `files` must not swallow a job called `file`."""
    monkeypatch.setenv("DRPLAN_PASSWORD", "secret")
    plan_with_jobs(tmp_path, plan_data, "file")
    result = run("backup", "file")
    assert result.code == 1, result.err
    assert "job file: no location could be written" in result.err
    assert "did you mean" not in result.err


def test_an_unknown_job_gets_the_plans_nearest_job(
    run: Run, tmp_path: Path, plan_data: dict[str, Any]
) -> None:
    plan_with_jobs(tmp_path, plan_data, "web", "webhooks")
    err = one_line(run("backup", "wbe"))
    assert err == (
        "drplan: the plan has no job 'wbe' (did you mean 'web'?); jobs: db-full, db-wal, web,"
        " webhooks\n"
    )
    err = one_line(run("backup", "fils"))
    assert "No job or subcommand 'fils' (did you mean 'files'?)" in err


def modules_imported_by(*args: str) -> list[str]:
    script = (
        "import sys, json\n"
        "from drplan.cli import main\n"
        f"code = main({list(args)!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.endswith('_cmd'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return loaded


def test_suggesting_a_command_and_listing_them_import_no_command_module() -> None:
    assert modules_imported_by("snapshot") == []
    assert modules_imported_by("--help") == []
    assert modules_imported_by("--pln", "x") == []


def test_the_typos_shown_in_the_docs_are_what_drplan_prints(run: Run) -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    block = text.split("## Typos", 1)[1].split("```\n", 2)[1]
    lines = block.splitlines()
    assert len(lines) >= 10
    for command, shown in zip(lines[::2], lines[1::2], strict=True):
        assert command.startswith("$ drplan ")
        assert run(*command.split()[2:]).err == shown + "\n"

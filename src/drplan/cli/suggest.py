"""Did-you-mean: an unknown command or option answered with the real name it most likely meant,
or with the command that has it.

A *slip* is a letter or two off a real name (left out, added, mistyped, two swapped;
longer names allow more). Names come from the command tree as far as it is loaded: the
root's commands from its ``COMMANDS`` table, so suggesting one imports no command
module; a group's from the group; an option's from the command it was given to. An
option that is not this command's but exactly one of its parents', siblings' or
subcommands' is named with where it belongs (``--repo`` given to ``drplan backup JOB``
is an option of ``drplan backup files``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import click


def nearest(word: str, names: Iterable[str]) -> str | None:
    """The name WORD is a slip of, or None; on a tie, the one sharing the longest start."""
    typed = word.lstrip("-").casefold()
    best: tuple[int, int, str] | None = None
    for name in names:
        real = name.lstrip("-").casefold()
        distance = _edits(typed, real)
        if distance > max(1, len(real) // 4):
            continue
        key = (distance, -_common_start(typed, real), name)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def usage_problem(exc: click.UsageError) -> str:
    """What is wrong with the command line, without the trailing full stop, with the real
    name a typo most likely meant."""
    ctx = exc.ctx
    if ctx is not None and isinstance(exc, click.exceptions.NoSuchCommand):
        near = nearest(exc.command_name, subcommand_names(ctx))
        return _with(f"No such command {exc.command_name!r}", near and f"did you mean {near!r}?")
    if ctx is not None and isinstance(exc, click.exceptions.NoSuchOption):
        return _with(f"No such option {exc.option_name!r}", _option_hint(ctx, exc.option_name))
    return exc.format_message().rstrip(".")


def subcommand_names(ctx: click.Context) -> list[str]:
    """The subcommands a user may type after ctx's group (hidden ones left out)."""
    group = ctx.command
    if not isinstance(group, click.Group):
        return []
    # The root lists names it has not imported: they are absent from `commands`, and visible.
    return [
        name
        for name in group.list_commands(ctx)
        if not getattr(group.commands.get(name), "hidden", False)
    ]


def _with(problem: str, hint: str | None) -> str:
    return f"{problem} ({hint})" if hint else problem


def _option_hint(ctx: click.Context, word: str) -> str | None:
    """Where an option the command does not have belongs, else the option it is a slip of."""
    child, parent = ctx, ctx.parent
    while parent is not None:
        if word in _options(parent.command):
            return f"{word} is an option of `{parent.command_path}`: give it before `{child.info_name}`"
        child, parent = parent, parent.parent
    relatives = [(path, _options(command)) for path, command in _relatives(ctx)]
    homes = [path for path, names in relatives if word in names]
    if homes:
        return f"{word} is an option of {_listed(homes)}"
    if not word.startswith("--"):  # `-x` for `-l` would be a guess, not a slip
        return None
    near = nearest(word, [n for p in ctx.command.get_params(ctx) for n in _names(p)])
    if near is not None:
        return f"did you mean {near!r}?"
    near = nearest(word, {n for _, names in relatives for n in names})
    if near is not None:
        homes = [path for path, names in relatives if near in names]
        return f"did you mean {near!r}, an option of {_listed(homes)}?"
    return None


def _listed(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths)


def _relatives(ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    """(how a user types it, command): the command's siblings, then its subcommands, as far
    as they are loaded (the root's are not imported for a suggestion)."""
    parent = ctx.parent
    if parent is not None and isinstance(parent.command, click.Group):
        for name, command in sorted(parent.command.commands.items()):
            if command is not ctx.command:
                yield from _typed(parent, name, command)
    if isinstance(ctx.command, click.Group):
        for name, command in sorted(ctx.command.commands.items()):
            yield from _typed(ctx, name, command)


def _typed(
    group_ctx: click.Context, name: str, command: click.Command
) -> Iterator[tuple[str, click.Command]]:
    if not command.hidden:
        yield f"{group_ctx.command_path} {name}", command
    elif getattr(group_ctx.command, "default_command", None) == name:
        yield (
            f"{group_ctx.command_path} {getattr(group_ctx.command, 'default_metavar', name)}",
            command,
        )


def _options(command: click.Command) -> set[str]:
    return {n for p in command.params for n in _names(p)}


def _names(param: click.Parameter) -> list[str]:
    if not isinstance(param, click.Option) or param.hidden:
        return []
    return [*param.opts, *param.secondary_opts]


def _common_start(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _edits(a: str, b: str) -> int:
    """Letters to leave out, add, change or swap with a neighbour to turn A into B."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(
                rows[i - 1][j] + 1,
                row[j - 1] + 1,
                rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]

"""`--help` as a user reads it: every command listed with a whole, readable line."""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest

from tests.conftest import Result
from tests.unit.cli.test_suggest import commands

Run = Callable[..., Result]


def listed(help_text: str) -> list[str]:
    """The entries of the Commands section, each with the lines it wraps onto."""
    lines = help_text.split("Commands:\n", 1)[1].splitlines()
    entries: list[str] = []
    for line in lines:
        if line.startswith("    ") and entries:
            entries[-1] += "\n" + line
        elif line.startswith("  "):
            entries.append(line)
    return entries


@pytest.mark.parametrize("columns", ["80", "200"])
def test_every_listed_command_has_a_whole_line(
    run: Run, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    groups = [words for words, command in commands() if isinstance(command, click.Group)]
    assert len(groups) >= 10
    for words in groups:
        result = run(*words, "--help")
        assert result.code == 0, result.err
        entries = listed(result.out)
        assert entries, words
        for entry in entries:
            assert not entry.endswith("..."), (words, entry)
            assert entry.count("`") % 2 == 0, (words, entry)
            if columns == "200":  # the widest help drplan prints: 100 columns
                assert "\n" not in entry, (words, entry)

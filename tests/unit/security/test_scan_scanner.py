"""The external scanner of `drplan scan --scanner`: its command line, what its exit
statuses mean, what of its output is kept, a scanner that hangs, and where its scratch
directory may not be. Real processes (small shell scripts), no repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from drplan.errors import UsageError
from drplan.liveness import alive
from drplan.security.scan_scanner import (
    LINES_KEPT,
    Scanner,
    _run,
    refuse_overlap,
    scratch_base,
)
from tests.conftest import wait_until


def scanner(tmp_path: Path, body: str, found: str = "1", timeout: float = 60) -> Scanner:
    script = tmp_path / "scanner.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return Scanner.parse(f"{script} --scan {{dir}}", found, timeout, tmp_path / "scratch")


def test_the_command_line_takes_the_tree_where_it_says_else_last(tmp_path: Path) -> None:
    clam = Scanner.parse("sh -c 'exit 0' --infected", "1", 60, tmp_path)
    assert clam.argv_for("/s/tree") == ["sh", "-c", "exit 0", "--infected", "/s/tree"]
    placed = Scanner.parse("sh --path={dir} -r", "1", 60, tmp_path)
    assert placed.argv_for("/s/tree") == ["sh", "--path=/s/tree", "-r"]


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("", "--scanner needs a command"),
        ("no-such-scanner-here {dir}", "no-such-scanner-here is not a command"),
        ("clamscan 'unclosed", "No closing quotation"),
    ],
)
def test_a_scanner_that_cannot_run_is_refused_up_front(
    tmp_path: Path, command: str, said: str
) -> None:
    with pytest.raises(UsageError, match=said) as refused:
        Scanner.parse(command, "1", 60, tmp_path)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("found", ["0", "256", "x", "", "1,,2", "-1"])
def test_found_statuses_are_1_to_255_or_nonzero(tmp_path: Path, found: str) -> None:
    with pytest.raises(UsageError, match="--scanner-found"):
        Scanner.parse("sh", found, 60, tmp_path)


def test_clamscans_convention_and_the_generic_one(tmp_path: Path) -> None:
    clam = Scanner.parse("sh", "1", 60, tmp_path)
    assert [clam.outcome(c) for c in (0, 1, 2, 127, -9)] == [
        "clean", "found", "error", "error", "error"
    ]  # fmt: skip
    several = Scanner.parse("sh", "1, 3", 60, tmp_path)
    assert [several.outcome(c) for c in (1, 2, 3)] == ["found", "error", "found"]
    generic = Scanner.parse("sh", "nonzero", 60, tmp_path)
    assert [generic.outcome(c) for c in (0, 1, 2, 127, -9)] == [
        "clean", "found", "found", "found", "error"
    ]  # fmt: skip


def test_a_finding_keeps_its_lines_with_the_restored_trees_prefix_taken_off(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    body = (
        'for i in $(seq 1 50); do echo "$2/srv/data/f$i.exe: Win.Test.EICAR FOUND"; done\nexit 1\n'
    )
    result = _run(scanner(tmp_path, body), tree)
    assert (result.outcome, result.exit_code, result.lines_total) == ("found", 1, 50)
    assert len(result.lines) == LINES_KEPT
    assert result.lines[0] == "/srv/data/f1.exe: Win.Test.EICAR FOUND"
    assert result.reason() == (
        "the scanner found something (exit 1): /srv/data/f1.exe: Win.Test.EICAR FOUND"
    )
    assert _run(scanner(tmp_path, "echo scanned $2\nexit 0\n"), tree).outcome == "clean"


def test_an_error_says_its_status_and_last_words(tmp_path: Path) -> None:
    body = "echo 'LibClamAV Error: cli_loaddbdir(): No supported database files' >&2\nexit 2\n"
    result = _run(scanner(tmp_path, body), tmp_path / "tree")
    assert (result.outcome, result.exit_code) == ("error", 2)
    assert result.error == "exit 2: LibClamAV Error: cli_loaddbdir(): No supported database files"
    assert result.reason().startswith("the scanner could not judge it: exit 2")
    killed = _run(scanner(tmp_path, "kill -9 $$\n"), tmp_path / "tree")
    assert killed.error == "killed by signal 9"


def test_a_scanner_past_its_time_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"sleep 300 &\necho $! > {pids}\nwait\n"
    result = _run(scanner(tmp_path, body, timeout=0.5), tmp_path / "tree")
    assert (result.outcome, result.exit_code) == ("error", None)
    assert result.error == "still running after 0.5s: stopped"
    child = int(pids.read_text())
    wait_until(lambda: not alive(child), "the scanner's child to be gone with its group")


def test_the_scratch_directory_is_never_inside_what_a_system_backs_up(tmp_path: Path) -> None:
    assert scratch_base(None, "/var/lib/drplan") == Path("/var/lib/drplan/scan")
    assert scratch_base("/big", "/state") == Path("/big/drplan-scan")
    places = {"web": [str(tmp_path / "srv")], "db": [str(tmp_path / "pg")]}
    refuse_overlap(tmp_path / "scratch", places)
    with pytest.raises(UsageError, match=r"lies inside .* system web's") as refused:
        refuse_overlap(tmp_path / "srv" / "tmp" / "drplan-scan", places)
    assert refused.value.exit_code == 2

"""How progress reads: human units, the time left, and restic-style JSON status lines."""

from __future__ import annotations

import re

import pytest

from drplan.cli.progress import _interval, human_duration, status_json, status_line
from drplan.errors import UsageError
from drplan.progress import Status


def status(**changes: object) -> Status:
    values: dict[str, object] = {
        "items_done": 120,
        "items_total": 5000,
        "bytes_done": 1288490188,  # 1.2 GiB
        "bytes_total": 3650722201,  # 3.4 GiB
        "totals_known": True,
        "finished": False,
        "elapsed": 60.0,
    }
    values.update(changes)
    return Status(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "1s"),
        (1.6, "2s"),
        (110.00000001, "1m50s"),
        (45, "45s"),
        (83, "1m23s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (2 * 86400 + 4 * 3600 + 59, "2d04h"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_the_terminal_line_says_done_of_total_rate_and_eta_in_human_units() -> None:
    line = status_line("files", status())
    assert line == "35.3%  120 of 5000 files  1.2 GiB of 3.4 GiB  20.5 MiB/s  ETA 1m50s"
    assert not re.search(r"\d,\d{3}", line)


def test_no_share_or_eta_while_the_total_still_grows() -> None:
    line = status_line("files", status(totals_known=False))
    assert line == "120 of 5000+ files  1.2 GiB of 3.4 GiB+  20.5 MiB/s"


def test_before_anything_is_known_only_what_is_done() -> None:
    line = status_line("packs", status(items_total=0, bytes_total=0, totals_known=False))
    assert line.startswith("120 packs  1.2 GiB")


def test_json_status_lines_are_restics() -> None:
    data = status_json("restore", "files", status())
    assert data == {
        "message_type": "status",
        "action": "restore",
        "percent_done": 0.3529,
        "total_files": 5000,
        "files_done": 120,
        "total_bytes": 3650722201,
        "bytes_done": 1288490188,
        "totals_complete": True,
        "seconds_elapsed": 60,
        "seconds_remaining": 110,
    }
    finished = status_json("check", "packs", status(finished=True))
    assert finished["percent_done"] == 1.0
    assert finished["seconds_remaining"] == 0
    assert finished["total_packs"] == 5000
    assert status_json("backup", "files", status(totals_known=False))["seconds_remaining"] is None


def test_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRPLAN_PROGRESS_INTERVAL", raising=False)
    assert _interval(as_json=True) == 1.0
    assert _interval(as_json=False) == 0.2
    monkeypatch.setenv("DRPLAN_PROGRESS_INTERVAL", "0")
    assert _interval(as_json=True) == 0.0
    monkeypatch.setenv("DRPLAN_PROGRESS_INTERVAL", "off")
    assert _interval(as_json=True) is None
    for wrong in ("-1", "soon", "nan"):
        monkeypatch.setenv("DRPLAN_PROGRESS_INTERVAL", wrong)
        with pytest.raises(UsageError):
            _interval(as_json=True)

"""The local journal: a crash mid-append loses only the event it was writing (never
acknowledged), concurrent appenders never share a place, and a damaged line is damage."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drplan.errors import DrplanError, IntegrityError
from drplan.incidents.journal import Journal
from drplan.incidents.timeline import verify

T0 = datetime(2026, 12, 7, 3, 10, tzinfo=UTC)


def test_a_line_cut_by_a_crash_is_skipped_then_overwritten(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("INC-AAAA", "declared", "cto", {}, T0, new=True)
    journal.append("INC-AAAA", "note", "cto", {"text": "one"}, T0)
    with open(journal.path("INC-AAAA"), "ab") as f:
        f.write(b'{"body": "{\\"incident\\": \\"INC-AA')  # the crash came mid-write
    assert [e.seq for e in journal.read("INC-AAAA")] == [1, 2]
    journal.append("INC-AAAA", "note", "cto", {"text": "two"}, T0)
    events = journal.read("INC-AAAA")
    assert [e.data.get("text") for e in events] == [None, "one", "two"]
    assert verify(events) == []


def test_a_damaged_line_is_damage_naming_the_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("INC-AAAA", "declared", "cto", {}, T0, new=True)
    journal.append("INC-AAAA", "note", "cto", {}, T0)
    path = journal.path("INC-AAAA")
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(lines[0] + b"\nnot json\n")
    with pytest.raises(IntegrityError, match="line 2 is not a timeline entry"):
        journal.read("INC-AAAA")


def test_an_id_is_declared_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("INC-AAAA", "declared", "cto", {}, T0, new=True)
    with pytest.raises(DrplanError, match="exists already"):
        journal.append("INC-AAAA", "declared", "cto", {}, T0, new=True)


def _append_many(directory: str, worker: int) -> None:
    journal = Journal(Path(directory))
    for n in range(25):
        journal.append("INC-AAAA", "note", f"w{worker}", {"n": n}, T0)


def test_concurrent_appenders_never_share_a_place(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("INC-AAAA", "declared", "cto", {}, T0, new=True)
    workers = [multiprocessing.get_context("spawn").Process(target=_append_many,
                                                            args=(str(tmp_path), w))
               for w in range(3)]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    events = journal.read("INC-AAAA")
    assert [e.seq for e in events] == list(range(1, 77))
    assert verify(events) == []


def test_an_id_that_is_not_one_never_becomes_a_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an incident id"):
        Journal(tmp_path).path("../../etc/passwd")

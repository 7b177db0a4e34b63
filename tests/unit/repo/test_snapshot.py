"""Snapshot objects: whatever their body holds, a decoded snapshot has every field of the
type its users expect, or it is damage (IntegrityError naming the snapshot)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo.snapshot import Snapshot, Summary
from tests.fixtures.fuzz import decoded_or_damage, fuzz, json_mutated, mutated

SAMPLE = Snapshot(
    time=datetime(2026, 11, 26, 1, 45, tzinfo=UTC),
    tree=b"\x01" * 32,
    paths=["/etc/app"],
    host="web1",
    user="root",
    tags=["daily"],
    job="app-config",
    system="app-config",
    parent="ab" * 32,
    source={"kind": "files"},
    summary=Summary(files_new=10, bytes_read=123, duration_seconds=1.5, errors=["x: gone"]),
    program="drplan 0.1.0",
    id="cd" * 32,
)
VALID = SAMPLE.to_json()
DOC: dict[str, Any] = json.loads(VALID)


def trustworthy(s: Snapshot) -> None:
    assert s.time.tzinfo is not None
    assert len(s.tree) == 32
    assert all(type(p) is str for p in [*s.paths, *s.tags, s.host, s.user, s.program])
    assert all(v is None or type(v) is str for v in (s.job, s.system, s.parent))
    assert type(s.source) is dict
    assert type(s.source.get("kind", "")) is str
    counts = [s.summary.files_new, s.summary.files_changed, s.summary.dirs, s.summary.bytes_read]
    assert all(type(c) is int and c >= 0 for c in counts)
    assert s.summary.duration_seconds >= 0
    assert all(type(e) is str for e in s.summary.errors)
    s.to_json()  # and it is written back as it came
    assert s.summary.files >= 0


@fuzz
@given(st.binary(max_size=300) | mutated(VALID) | json_mutated(DOC))
def test_fuzz_snapshot(raw: bytes) -> None:
    found = decoded_or_damage(lambda: Snapshot.from_json(raw, "cd" * 32))
    if found is not None:
        trustworthy(found)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"time": 5}, "time is 5"),
        ({"time": "2026-11-26T01:45:00"}, "not an RFC 3339 time"),  # no zone: not comparable
        ({"tree": "zz"}, "tree is 'zz'"),
        ({"paths": "/etc"}, "paths is '/etc'"),
        ({"host": None}, "host is None"),
        ({"parent": 7}, "parent is 7"),
        ({"source": []}, "source is []"),
        ({"summary": {"files_new": "10"}}, "summary files_new is '10'"),
        ({"summary": {"duration_seconds": -1}}, "summary duration_seconds is -1"),
        ({"summary": {"errors": [1]}}, "summary errors is [1]"),
        ({"version": True}, "format version True"),
    ],
)
def test_fields_of_the_wrong_type_are_damage(change: dict[str, Any], problem: str) -> None:
    raw = json.dumps({**DOC, **change}).encode()
    with pytest.raises(IntegrityError, match=r"^snapshot cdcdcdcd ") as caught:
        Snapshot.from_json(raw, "cd" * 32)
    assert problem in caught.value.message


@pytest.mark.parametrize("raw", [b"[]", b"7", b"[" * 100_000])
def test_a_body_that_is_no_object_is_damage(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match=r"^snapshot cdcdcdcd "):
        Snapshot.from_json(raw, "cd" * 32)

"""The timeline's hash chain: any edited, deleted or reordered entry is named, and a
copy cut short or gone on elsewhere is found by comparing the copies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from drplan.incidents.timeline import Event, compare, make_event, parse, verify

T0 = datetime(2026, 12, 7, 3, 10, tzinfo=UTC)


def chain(count: int) -> list[Event]:
    events: list[Event] = []
    for n in range(count):
        last = events[-1] if events else None
        events.append(make_event(last, "INC-7K3Q", "declared" if n == 0 else "step", "cto",
                                 {"n": n}, T0 + timedelta(seconds=n)))  # fmt: skip
    return events


def edited(event: Event, **changes: object) -> Event:
    fields = {**json.loads(event.body), **changes}
    return parse(json.dumps(fields, sort_keys=True, separators=(",", ":")), event.hash)


def test_an_intact_chain_verifies_and_round_trips() -> None:
    events = chain(5)
    assert verify(events) == []
    assert [parse(e.body, e.hash) for e in events] == events
    assert events[3].at == T0 + timedelta(seconds=3)  # microseconds kept: RTOs are measured


def test_an_edited_entry_is_named() -> None:
    events = chain(5)
    events[2] = edited(events[2], actor="someone-else")
    assert verify(events) == ["entry 3 (step) was edited: its content does not match its hash"]


def test_an_edited_entry_whose_hash_was_recomputed_breaks_the_next_link() -> None:
    events = chain(5)
    forged = make_event(events[1], "INC-7K3Q", "step", "cto", {"n": 99}, events[2].at)
    events[2] = forged
    (problem,) = verify(events)
    assert problem.startswith("entry 4 (step) does not follow the entry before it")


def test_a_deleted_entry_and_a_reordering_are_named() -> None:
    events = chain(5)
    assert verify(events[:2] + events[3:]) == [
        "entry 3 says it is entry 4: entries were deleted or reordered before it",
        "entry 4 says it is entry 5: entries were deleted or reordered before it",
    ]
    swapped = [events[0], events[2], events[1], *events[3:]]
    assert len(verify(swapped)) == 3


def test_copies_are_compared_for_a_cut_tail_and_a_divergence() -> None:
    ours = chain(5)
    assert compare("the catalog", ours, ours) == []
    assert compare("the catalog", ours, ours[:3]) == [
        "the copy in the catalog ends at entry 3, this one at 5 (not yet copied there, or cut)"
    ]
    assert "entries were cut here" in compare("the catalog", ours[:4], ours)[0]
    other = [*ours[:2], make_event(ours[1], "INC-7K3Q", "note", "x", {}, T0)]
    assert compare("the catalog", ours[:3], other) == [
        "entry 3 differs from the copy in the catalog"
    ]

"""An incident's timeline: events appended in order, each carrying the hash of the one
before it (a hash chain), so that an edited, deleted or reordered entry is detected.

An event is stored as its canonical JSON text (``body``) and the SHA-256 of that text;
the body holds the previous event's hash. Editing a body breaks its own hash; deleting
or reordering breaks the link of the entry after it. Cutting the tail breaks no link,
which is why every copy of a timeline (the local journal, the catalog, the replicas in
the plan's locations) is compared with the others (``compare``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64  # the "previous hash" of an incident's first event


@dataclass(frozen=True)
class Event:
    incident: str
    seq: int  # 1, 2, 3 ... in the order appended
    at: datetime
    kind: str  # declared, step, approved, note, message, escalated, clock_stopped, ...
    actor: str  # who did it: a role, a user, or drplan itself
    data: dict[str, Any]
    prev: str  # the hash of event seq - 1 (GENESIS for the first)
    body: str  # the canonical JSON of all the above
    hash: str  # SHA-256 of body

    def as_dict(self) -> dict[str, Any]:
        return {**json.loads(self.body), "hash": self.hash}


def make_event(
    last: Event | None, incident: str, kind: str, actor: str, data: dict[str, Any],
    at: datetime,
) -> Event:  # fmt: skip
    """The event that follows ``last`` (None: the incident's first)."""
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    fields = {
        "incident": incident, "seq": seq, "at": instant(at), "kind": kind,
        "actor": actor, "data": data, "prev": prev,
    }  # fmt: skip
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return parse(body, _digest(body))


def parse(body: str, digest: str) -> Event:
    """An event from its stored body and hash; ValueError when the body is not one (the
    hash is not checked here: ``verify`` does, and says which entry is wrong)."""
    try:
        fields = json.loads(body)
        return Event(
            incident=str(fields["incident"]), seq=int(fields["seq"]),
            at=datetime.fromisoformat(str(fields["at"]).replace("Z", "+00:00")),
            kind=str(fields["kind"]), actor=str(fields["actor"]), data=dict(fields["data"]),
            prev=str(fields["prev"]), body=body, hash=digest,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a timeline entry ({type(exc).__name__})") from None


def verify(events: list[Event]) -> list[str]:
    """What is wrong with a timeline, entry by entry (empty: the chain holds)."""
    problems: list[str] = []
    prev = GENESIS
    for number, event in enumerate(events, 1):
        if _digest(event.body) != event.hash:
            problems.append(f"entry {number} ({event.kind}) was edited: its content does not"
                            " match its hash")  # fmt: skip
        if event.seq != number:
            problems.append(f"entry {number} says it is entry {event.seq}: entries were"
                            " deleted or reordered before it")  # fmt: skip
        elif event.prev != prev:
            problems.append(f"entry {number} ({event.kind}) does not follow the entry before"
                            " it: that one was edited, deleted or moved")  # fmt: skip
        prev = event.hash
    return problems


def compare(name: str, ours: list[Event], theirs: list[Event]) -> list[str]:
    """Where copy ``name`` of a timeline disagrees with ours: a different entry at the same
    place, or entries one of them lacks at the end."""
    problems = [
        f"entry {a.seq} differs from the copy in {name}"
        for a, b in zip(ours, theirs, strict=False)
        if (a.hash, a.body) != (b.hash, b.body)
    ]
    if len(theirs) < len(ours):
        problems.append(f"the copy in {name} ends at entry {len(theirs)}, this one at"
                        f" {len(ours)} (not yet copied there, or cut)")  # fmt: skip
    elif len(theirs) > len(ours):
        problems.append(f"the copy in {name} has {len(theirs) - len(ours)} entries more than"
                        " this one: entries were cut here")  # fmt: skip
    return problems


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def instant(at: datetime) -> str:
    """Microseconds, UTC: an RTO is measured between two of these."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

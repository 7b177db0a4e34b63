"""Each component's last ``DAYS`` days: the worst state of each day and the share of the
time it was up, from the incidents themselves.

A component is out from an incident's disaster moment until each of its systems that
the incident took is back (its clock stopped), or the incident was resolved, or now;
the state is the incident's tier's. As Atlassian Statuspage counts it, a major outage
counts whole against uptime, a partial outage 30%, degraded performance not at all.
Rehearsals never count. The outages the daemon's probes found count the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from drplan.statuspage import state as page
from drplan.statuspage.state import DEGRADED, MAJOR, OPERATIONAL, PARTIAL, WORSE

if TYPE_CHECKING:
    from drplan.incidents.state import Incident
    from drplan.plan.model import StatusPage

DAYS = 90
WEIGHT = {MAJOR: 1.0, PARTIAL: 0.3, DEGRADED: 0.0}


@dataclass(frozen=True)
class Day:
    day: date
    state: str  # the worst of the day
    down_seconds: float  # weighted: major whole, partial 30%


@dataclass(frozen=True)
class Uptime:
    days: list[Day]  # the oldest first, today last
    percent: float  # over all of them, to now

    @property
    def outages(self) -> int:
        return sum(1 for d in self.days if d.state != OPERATIONAL)


Span = tuple[datetime, datetime, str]


def uptime(
    config: StatusPage, incidents: list[Incident], now: datetime,
    outages: page.Outages | None = None,
) -> dict[str, Uptime]:  # fmt: skip
    """Per component of ``config``, its last DAYS days to ``now`` (``outages``: the spans
    the daemon's probes found it out, an open one lasting to now)."""
    first = (now - timedelta(days=DAYS - 1)).date()
    start = datetime.combine(first, time(), UTC)
    spans: dict[str, list[Span]] = {name: [] for name in config.components}
    for incident in incidents:
        if incident.declared.get("rehearsal"):
            continue
        state = page.STATE_OF_TIER.get(int(incident.declared["tier"]), MAJOR)
        ended = page.resolved_at(incident)
        for name, component in config.components.items():
            for system in set(component.systems) & set(incident.systems):
                back = incident.recovered.get(system)
                end = back["at"] if back is not None else (ended or now)
                if end > start and incident.since < now:
                    spans[name].append((max(incident.since, start), min(end, now), state))
    for name, found_out in (outages or {}).items():
        for begin, end, state in found_out:
            if name in spans and (end or now) > start:
                spans[name].append((max(begin, start), min(end or now, now), state))
    found = {}
    for name, held in spans.items():
        segments = _worst_over_time(held)
        days = [_day(first + timedelta(days=n), segments, now) for n in range(DAYS)]
        total = (now - start).total_seconds()
        down = sum(d.down_seconds for d in days)
        found[name] = Uptime(days, round(100.0 * (1 - down / total), 2) if total > 0 else 100.0)
    return found


def _worst_over_time(spans: list[Span]) -> list[Span]:
    """The spans cut where any begins or ends, each piece with the worst state over it
    (overlapping incidents count once, at their worst)."""
    cuts = sorted({t for s, e, _ in spans for t in (s, e)})
    pieces = []
    for a, b in itertools.pairwise(cuts):
        states = [st for s, e, st in spans if s <= a and e >= b]
        if states:
            pieces.append((a, b, max(states, key=WORSE.index)))
    return pieces


def _day(day: date, pieces: list[Span], now: datetime) -> Day:
    start = datetime.combine(day, time(), UTC)
    end = min(start + timedelta(days=1), now)
    worst, down = OPERATIONAL, 0.0
    for a, b, state in pieces:
        overlap = (min(b, end) - max(a, start)).total_seconds()
        if overlap > 0:
            worst = max(worst, state, key=WORSE.index)
            down += overlap * WEIGHT.get(state, 0.0)
    return Day(day, worst, down)

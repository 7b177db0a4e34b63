"""``--to last-good``: the newest point at which a system's drill validations pass,
found by bisecting its recoverable window with scratch recoveries, to the second.

The search assumes what corruption looks like: good up to a moment, bad from then on.
It recovers the oldest point (the end of the oldest base backup) and the newest (just
before the incident's disaster moment, or all archived WAL), then halves the seconds
between the last good and the first bad until they are one second apart: 2 + ceil(log2
of the window in seconds) scratch recoveries. Each is judged by the checks of the
system's database drill that look at the copy alone (amcheck, the SQL checks, the smoke
commands, checksums); table comparisons are left out, since the production tables they
compare with are the damaged thing. A recovery that fails counts as bad: the point
chosen is never one that was not shown good.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drplan.drills.results import SystemResult
from drplan.drills.runner import DrillContext, candidates_of, probe
from drplan.errors import RecoveryTargetError, UsageError
from drplan.incidents.points import LAST_GOOD
from drplan.plan.model import Plan
from drplan.recovery.pitr import Target
from drplan.sources.postgres.wal_status import fmt_time, recoverable_window, stop_time

SECOND = timedelta(seconds=1)


@dataclass
class Probe:
    target: str
    good: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "good": self.good, "detail": self.detail,
                "seconds": round(self.seconds, 3)}  # fmt: skip


@dataclass
class Search:
    drill: str
    window: tuple[datetime, datetime]
    found: Target | None = None
    probes: list[Probe] = field(default_factory=list)

    @property
    def limit(self) -> int:
        """The most scratch recoveries the search may take."""
        span = max((self.window[1] - self.window[0]).total_seconds(), 1.0)
        return 2 + math.ceil(math.log2(span))

    def as_dict(self) -> dict[str, Any]:
        return {
            "drill": self.drill, "window": [w.isoformat() for w in self.window],
            "found": self.found.describe() if self.found else None,
            "probes": [p.as_dict() for p in self.probes], "limit": self.limit,
        }  # fmt: skip


def drill_of(plan: Plan, system: str) -> str:
    """The database drill whose checks tell a good point of ``system`` from a bad one."""
    for name, drill in plan.drills.items():
        if drill.kind == "database" and system in drill.systems:
            return name
    raise UsageError(
        f"--to {LAST_GOOD} needs a database drill of {system}: its validations tell a good"
        " point from a bad one",
        hint=f"add a drill of kind database with systems: [{system}] and its sql checks",
    )


def last_good(
    ctx: DrillContext, system: str, before: datetime | None,
    tell: Callable[[str], None] = lambda _: None,
) -> Search:  # fmt: skip
    """Search ``system``'s window (up to just before ``before``) for its last good point."""
    name = drill_of(ctx.plan, system)
    drill = ctx.plan.drills[name]
    candidates = candidates_of(ctx.plan, name, system)
    with ctx.open_location(candidates[0]) as repo:
        window = recoverable_window(repo, system)
    usable = [r for r in window.reaches if r.archived] or window.reaches
    if not usable or window.end is None:
        raise RecoveryTargetError(f"{candidates[0]} holds no base backup of {system}")
    oldest = min(usable, key=lambda r: stop_time(r.base))
    start = stop_time(oldest.base)
    end = min(before, window.end) if before is not None else window.end
    search = Search(name, (start, end))

    def judge(target: Target) -> bool:
        outcome = probe(ctx, name, drill, system, target, candidates)
        good, detail = _verdict(outcome)
        search.probes.append(Probe(target.describe(), good, detail,
                                   sum(outcome.phases.values())))  # fmt: skip
        tell(f"last-good: {target.describe()}: {'good' if good else 'bad'} ({detail})")
        return good

    newest = (Target("time", LAST_GOOD, before, inclusive=False)
              if before is not None and before <= window.end else Target("latest"))  # fmt: skip
    if judge(newest):
        search.found = newest
        return search
    if not judge(Target("snapshot", oldest.base.id)):
        raise RecoveryTargetError(
            f"no good point of {system} in {candidates[0]}: the oldest it can recover to"
            f" ({fmt_time(start)}) fails drill {name}'s checks too",
            hint="restore from another location (--repo), or look at the checks' findings"
            " in `drplan incident timeline`",
        )
    good, bad = 0, max(1, math.ceil((end - start).total_seconds()))  # seconds after start
    while bad - good > 1:
        middle = (good + bad) // 2
        if judge(Target("time", LAST_GOOD, start + middle * SECOND)):
            good = middle
        else:
            bad = middle
    found = start + good * SECOND
    search.found = (Target("snapshot", oldest.base.id) if good == 0
                    else Target("time", LAST_GOOD, found))  # fmt: skip
    return search


def _verdict(outcome: SystemResult) -> tuple[bool, str]:
    if outcome.error:
        return False, f"the recovery failed: {outcome.error}"
    failed = [f"{v.name}: {v.detail}" for v in outcome.validations if v.outcome == "failed"]
    if failed:
        return False, "; ".join(failed)
    return True, f"{len(outcome.validations)} checks passed"

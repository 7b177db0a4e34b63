"""``--to last-good``: the newest point at which a system's drill validations pass,
found by bisecting its recoverable window with scratch recoveries, to the second; and
the search itself, which ``--to last-clean`` (``last_clean``) runs with other checks.

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

from drplan.drills.commits import Commit
from drplan.drills.runner import DrillContext, candidates_of, probe
from drplan.errors import RecoveryTargetError, UsageError
from drplan.incidents.points import LAST_GOOD
from drplan.plan.model import Plan
from drplan.plan.model.assurance import Drill
from drplan.recovery.pitr import Target
from drplan.sources.postgres.wal_status import fmt_time, recoverable_window, stop_time

SECOND = timedelta(seconds=1)
Tell = Callable[[str], None]


@dataclass(frozen=True)
class Judge:
    """What tells a point that passes from one that fails, and the words a search says
    it in: the checks of ``drill`` as ``runner.probe`` runs them (never those comparing
    with production, nor a sentinel)."""

    point: str  # the --to word: last-good, last-clean
    drill_name: str | None  # the plan's drill the checks come from (None: made for the search)
    drill: Drill
    candidates: list[str]  # locations the scratch recoveries may use; the first is searched
    checks: str  # whose checks, for messages: "drill db-check's checks"
    hint: str  # what to do when even the oldest point fails
    passes: str = "good"
    fails: str = "bad"

    @property
    def scratch_name(self) -> str:
        """What the scratch targets are named after."""
        return self.drill_name or self.point


@dataclass
class Probe:
    target: str
    good: bool
    detail: str
    seconds: float
    at: Target  # the point recovered to, as the restore takes it
    lsn: str | None = None  # where its recovery stopped ("redo done at")
    last_transaction: datetime | None = None  # the last commit it replayed

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "good": self.good, "detail": self.detail,
                "seconds": round(self.seconds, 3), "reached_lsn": self.lsn,
                "last_transaction": self.last_transaction.isoformat()
                if self.last_transaction else None}  # fmt: skip


@dataclass
class Search:
    drill: str | None
    window: tuple[datetime, datetime]
    found: Target | None = None
    probes: list[Probe] = field(default_factory=list)
    # The last point that passed and the first that failed, once the newest has failed.
    bracket: tuple[Probe, Probe] | None = None
    refine: int = 0  # scratch recoveries allowed past the second, going on to the commit
    first_failing: Commit | None = None  # the first commit with which the checks fail
    note: str | None = None  # why the search stopped short of where it could have gone

    @property
    def limit(self) -> int:
        """The most scratch recoveries the search may take."""
        span = max((self.window[1] - self.window[0]).total_seconds(), 1.0)
        return 2 + math.ceil(math.log2(span)) + self.refine

    @property
    def newest_passed(self) -> bool:
        """Whether the newest point passed: there was nothing to bisect."""
        return bool(self.probes) and self.probes[0].good

    def as_dict(self) -> dict[str, Any]:
        return {
            "drill": self.drill, "window": [w.isoformat() for w in self.window],
            "found": self.found.describe() if self.found else None,
            "probes": [p.as_dict() for p in self.probes], "limit": self.limit,
            "newest_passed": self.newest_passed,
            "first_failing": self.first_failing.as_dict() if self.first_failing else None,
            "note": self.note,
        }  # fmt: skip


def database_drill(plan: Plan, system: str) -> str | None:
    """The name of the system's (first) database drill, None when it has none."""
    for name, drill in plan.drills.items():
        if drill.kind == "database" and system in drill.systems:
            return name
    return None


def drill_of(plan: Plan, system: str) -> str:
    """The database drill whose checks tell a good point of ``system`` from a bad one."""
    name = database_drill(plan, system)
    if name is None:
        raise UsageError(
            f"--to {LAST_GOOD} needs a database drill of {system}: its validations tell a"
            " good point from a bad one",
            hint=f"add a drill of kind database with systems: [{system}] and its sql checks",
        )
    return name


def last_good(
    ctx: DrillContext, system: str, before: datetime | None, tell: Tell = lambda _: None
) -> Search:
    """Search ``system``'s window (up to just before ``before``) for its last good point."""
    name = drill_of(ctx.plan, system)
    judge = Judge(
        LAST_GOOD, name, ctx.plan.drills[name], candidates_of(ctx.plan, name, system),
        checks=f"drill {name}'s checks",
        hint="restore from another location (--repo), or look at the checks' findings"
        " in `drplan incident timeline`",
    )  # fmt: skip
    return search_window(ctx, system, before, judge, tell)


def search_window(
    ctx: DrillContext, system: str, before: datetime | None, judge: Judge, tell: Tell
) -> Search:
    """The newest point of ``system``'s window (up to just before ``before``) that passes
    ``judge``'s checks, to the second; RecoveryTargetError when even the oldest fails."""
    where = judge.candidates[0]
    with ctx.open_location(where) as repo:
        window = recoverable_window(repo, system)
    usable = [r for r in window.reaches if r.archived] or window.reaches
    if not usable or window.end is None:
        raise RecoveryTargetError(f"{where} holds no base backup of {system}")
    oldest = min(usable, key=lambda r: stop_time(r.base))
    start = stop_time(oldest.base)
    end = min(before, window.end) if before is not None else window.end
    if before is not None and before <= start:  # every point is at or after the disaster
        raise RecoveryTargetError(
            f"no point of {system} in {where} is before the incident's disaster moment"
            f" ({fmt_time(before)}): the oldest it can recover to is {fmt_time(start)}",
            hint="restore from a location that keeps older base backups (--repo)",
        )
    search = Search(judge.drill_name, (start, end))
    newest = (Target("time", judge.point, before, inclusive=False)
              if before is not None and before <= window.end else Target("latest"))  # fmt: skip
    failing = judged(ctx, system, judge, search, newest, tell)
    if failing.good:
        search.found = newest
        return search
    passing = judged(ctx, system, judge, search, Target("snapshot", oldest.base.id), tell)
    if not passing.good:
        raise RecoveryTargetError(
            f"no {judge.passes} point of {system} in {where} ({fmt_time(start)} to"
            f" {fmt_time(end)}): the oldest it can recover to fails {judge.checks} too"
            f" ({passing.detail}); nothing was restored",
            hint=judge.hint,
        )
    good, bad = 0, max(1, math.ceil((end - start).total_seconds()))  # seconds after start
    while bad - good > 1:
        middle = (good + bad) // 2
        tried = judged(ctx, system, judge, search,
                       Target("time", judge.point, start + middle * SECOND), tell)  # fmt: skip
        if tried.good:
            good, passing = middle, tried
        else:
            bad, failing = middle, tried
    search.found = passing.at
    search.bracket = (passing, failing)
    return search


def judged(
    ctx: DrillContext, system: str, judge: Judge, search: Search, target: Target, tell: Tell
) -> Probe:
    """Recover ``target`` in scratch and judge it; recorded in ``search`` and told."""
    outcome = probe(ctx, judge.scratch_name, judge.drill, system, target, judge.candidates)
    if outcome.error:
        good, detail = False, f"the recovery failed: {outcome.error}"
    else:
        failed = [f"{v.name}: {v.detail}" for v in outcome.validations if v.outcome == "failed"]
        good = not failed
        detail = "; ".join(failed) or f"{len(outcome.validations)} checks passed"
    tried = Probe(target.describe(), good, detail, sum(outcome.phases.values()), target,
                  outcome.reached_lsn, outcome.last_transaction)  # fmt: skip
    search.probes.append(tried)
    tell(f"{judge.point}: {tried.target}: {judge.passes if good else judge.fails} ({detail})")
    return tried

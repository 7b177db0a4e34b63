"""``--to last-clean``: the newest point of a PostgreSQL system clean of a security breach,
searched for as ``--to last-good`` searches (``last_good.search_window``), judged by the
system's ``security_checks``, then taken from the second to the commit.

A breach has the shape corruption has: clean up to the attacker's first write the checks
see, not clean from then on (a rogue admin row stays until someone removes it, and the
search is run before anyone does). So the window is bisected to the second; then the
commits archived in that second (``commits``) are bisected too. The point found replays
every commit before the first one the checks fail on, which is named (transaction id,
LSN, time) for the security team; the legitimate commits of that second before it are
kept. When the commits cannot be listed, the search stays to the second and says why.

With the security checks, the copy-alone checks of the system's database drill judge
too, when it has one (amcheck, its SQL checks, its commands, checksums; never its table
comparisons, which hold the copy against production, the breached thing). A point clean
of the attacker's traces but unsound (rows the attacker damaged that the drill's checks
see, a torn page) is no point to put back; and each kind of check holds up to a moment
and fails from then on, so together they do too, and the bisection still applies.
Without a drill, the security checks alone judge, in scratch targets under the state
directory.

What it cannot find is in docs/security.md: a breach leaving no trace the checks see
(every point passes: the newest is restored, said clean only as far as the checks tell);
one that began before the oldest base backup kept (every point fails: nothing is
restored, exit 19). WAL altered in the repository cannot pass for clean: every segment is
authenticated as it is fetched, and one that fails makes a failed recovery, never a
point that passed.
"""

from __future__ import annotations

import math
from datetime import datetime

from drplan.drills.commits import Commit, CommitsUnknown, commits_between
from drplan.drills.last_good import (
    Judge,
    Probe,
    Search,
    Tell,
    database_drill,
    judged,
    search_window,
)
from drplan.drills.runner import DrillContext, candidates_of
from drplan.errors import DrplanError, UsageError
from drplan.incidents.points import LAST_CLEAN
from drplan.plan.model import Plan, PostgresSystem
from drplan.plan.model.assurance import Drill, DrillValidations, SqlCheck
from drplan.recovery.pitr import Target
from drplan.recovery.recover import locations_of
from drplan.sources.postgres.binaries import find_binaries
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.sources.postgres.wal_status import fmt_time, recoverable_window

SECURITY = "security: "  # before each security check's name in findings


def security_checks(plan: Plan, system: str) -> list[SqlCheck]:
    """The system's security checks; refused when it has none (nothing would tell a clean
    point from a breached one)."""
    found = plan.systems[system]
    checks = found.security_checks if isinstance(found, PostgresSystem) else []
    if not checks:
        raise UsageError(
            f"--to {LAST_CLEAN} needs security checks of {system}: SQL that holds at a point"
            " clean of the breach",
            hint=f"add security_checks to systems.{system} (e.g. query: select count(*) = 0"
            " from pg_roles where rolsuper and rolname <> 'postgres')",
        )
    return checks


def judge_of(plan: Plan, system: str, candidates: list[str] | None = None) -> Judge:
    """The security checks, with the copy-alone checks of the system's database drill when
    it has one; ``candidates`` (``--repo``, an incident's locations) before the drill's."""
    checks = [
        c.model_copy(update={"name": SECURITY + c.name}) for c in security_checks(plan, system)
    ]
    name = database_drill(plan, system)
    if name is None:
        drill = Drill(kind="database", systems=[system], sentinel=False,
                      validations=DrillValidations(amcheck=False, checksums=False, sql=checks))  # fmt: skip
        where, whose = candidates or locations_of(plan, system), "the security checks"
    else:
        own = plan.drills[name]
        validations = own.validations.model_copy(update={"sql": [*checks, *own.validations.sql]})
        drill = own.model_copy(update={"validations": validations})
        where = candidates or candidates_of(plan, name, system)
        whose = f"the security checks (with drill {name}'s)"
    if not where:
        raise UsageError(f"no location holds backups of {system}",
                         hint=f"give --repo LOCATION, or add a job for {system}")  # fmt: skip
    return Judge(
        LAST_CLEAN, name, drill, where, checks=whose, passes="clean", fails="not clean",
        hint="the breach is older than the oldest base backup there: restore from a location"
        " that keeps older ones (--repo); or, if a check is wrong, correct security_checks",
    )  # fmt: skip


def last_clean(
    ctx: DrillContext, system: str, before: datetime | None, tell: Tell = lambda _: None,
    candidates: list[str] | None = None,
) -> Search:  # fmt: skip
    """Search ``system``'s window (up to just before ``before``) for its last clean point,
    to the commit."""
    judge = judge_of(ctx.plan, system, candidates)
    search = search_window(ctx, system, before, judge, tell)
    if search.bracket is not None:
        try:
            listed = _commits(ctx, system, judge.candidates[0], *search.bracket)
        except CommitsUnknown as exc:
            search.note = f"to the second only: {exc}"
            tell(f"{LAST_CLEAN}: {search.note}")
        else:
            steps = separating(listed, *search.bracket, search.window[0])
            _to_the_commit(ctx, system, judge, search, steps, tell)
    return search


def summary(system: str, search: Search) -> str:
    """What the search found, in a line for people."""
    assert search.found is not None
    if search.newest_passed:
        return (
            f"{LAST_CLEAN}: the newest point of {system} ({search.found.describe()}) passes every"
            " check, so it is restored: clean as far as the checks can tell; a breach they"
            " cannot see would be in it (add a check that sees it, and search again)"
        )
    line = f"{LAST_CLEAN}: the last clean point of {system} is {search.found.describe()}"
    bad = search.first_failing
    if bad is not None:
        line += (f"; the checks fail from transaction {bad.xid} on (committed"
                 f" {fmt_time(bad.time)}, LSN {bad.lsn})")  # fmt: skip
    return line + (f"; {search.note}" if search.note else "")


def _commits(
    ctx: DrillContext, system: str, where: str, passing: Probe, failing: Probe
) -> list[Commit]:
    """The commits archived between where the passing and the failing probe stopped."""
    if passing.lsn is None or failing.lsn is None:
        raise CommitsUnknown("a scratch recovery did not say where it stopped")
    found = ctx.plan.systems[system]
    assert isinstance(found, PostgresSystem)
    try:
        with ctx.open_location(where) as repo:
            window = recoverable_window(repo, system)
            major = int(window.bases[-1].source.get("server_version", 0)) // 10000
            pg_waldump = find_binaries(found.bin_dir, major).tool("pg_waldump")
            archive = WalArchive(repo, system)
            return commits_between(
                archive, passing.lsn, failing.lsn, window.segment_size, pg_waldump
            )
    except DrplanError as exc:
        raise CommitsUnknown(exc.message) from None


def separating(
    listed: list[Commit], passing: Probe, failing: Probe, start: datetime
) -> list[Commit]:
    """The commits that make the failing point out of the passing one, in time order (one
    per time: a time target cannot tell two apart); ``start`` is the window's, for a
    passing base backup that replayed no transaction."""
    after = passing.at.time if passing.at.kind == "time" else passing.last_transaction
    after = after or start
    upto = failing.at if failing.at.kind == "time" else None

    def inside(commit: Commit) -> bool:
        if commit.time <= after:
            return False
        if upto is None or upto.time is None:
            return True
        return commit.time <= upto.time if upto.inclusive else commit.time < upto.time

    by_time: dict[datetime, Commit] = {}
    for commit in filter(inside, listed):
        by_time.setdefault(commit.time, commit)
    return [by_time[t] for t in sorted(by_time)]


def _to_the_commit(
    ctx: DrillContext, system: str, judge: Judge, search: Search, steps: list[Commit], tell: Tell
) -> None:
    """Bisect ``steps`` (the failing point is the last one's): the newest that passes is the
    point found, the one after it the first the checks fail on."""
    if not steps:
        search.note = "to the second only: no commit was found in that second's WAL"
        tell(f"{LAST_CLEAN}: {search.note}")
        return
    assert search.bracket is not None
    passing = search.bracket[0]
    search.refine = math.ceil(math.log2(len(steps))) if len(steps) > 1 else 0
    low, high = -1, len(steps) - 1  # low passes (-1: the passing probe), high fails
    while high - low > 1:
        middle = (low + high) // 2
        tried = judged(
            ctx, system, judge, search, Target("time", LAST_CLEAN, steps[middle].time), tell
        )
        if tried.good:
            low, passing = middle, tried
        else:
            high = middle
    search.found = passing.at
    search.first_failing = steps[high]

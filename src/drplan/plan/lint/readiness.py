"""Rules about readiness to recover: tiers and RTOs, runbooks, drills, people, reviews."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise

from drplan.plan.durations import format_duration as fmt
from drplan.plan.lint.engine import Hit, LintContext
from drplan.plan.model import Drill, Plan, Tier


def depends_on_lower_tier(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, system in plan.systems.items():
        for i, dep in enumerate(system.depends_on):
            other = plan.systems.get(dep)
            # What matters is time: a dependency allowed to take longer than this system's
            # RTO holds it hostage, whatever the tiers say.
            if other is not None and plan.rto_of(dep) > plan.rto_of(name):
                yield Hit(
                    ("systems", name, "depends_on", i),
                    f"{system.tier} system '{name}' (RTO {fmt(plan.rto_of(name))}) depends on"
                    f" {other.tier} system '{dep}': it cannot be back before '{dep}', whose RTO is"
                    f" {fmt(plan.rto_of(dep))}",
                    f"give '{dep}' an RTO of {fmt(plan.rto_of(name))} or less (raise its tier), or remove the dependency",
                )


def system_rto_exceeds_tier(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, system in plan.systems.items():
        tier_rto = plan.objectives.rto.for_tier(system.tier)
        if system.rto and system.rto > tier_rto:
            yield Hit(
                ("systems", name, "rto"),
                f"system '{name}' has an RTO of {fmt(system.rto)}, longer than the {fmt(tier_rto)}"
                f" of its tier ({system.tier})",
                f"lower its rto to {fmt(tier_rto)} or less, or move it to a slower tier",
            )


def tier_rto_order(ctx: LintContext) -> Iterator[Hit]:
    rto = ctx.plan.objectives.rto
    tiers = list(Tier)
    for faster, slower in pairwise(tiers):
        if rto.for_tier(faster) > rto.for_tier(slower):
            yield Hit(
                ("objectives", "rto", slower.value),
                f"{slower} systems have a shorter RTO ({fmt(rto.for_tier(slower))}) than"
                f" {faster} ones ({fmt(rto.for_tier(faster))})",
                "order the tier RTOs from the most urgent tier to the least",
            )
    for tier in tiers:
        if rto.for_tier(tier) > rto.full_platform:
            yield Hit(
                ("objectives", "rto", tier.value),
                f"{tier} systems may take {fmt(rto.for_tier(tier))}, but a full-platform recovery"
                f" must finish in {fmt(rto.full_platform)}: the two objectives contradict",
                f"lower the {tier} RTO to {fmt(rto.full_platform)} or less, or raise"
                f" full_platform to {fmt(rto.for_tier(tier))}",
            )


def _recovered_by(plan: Plan, drill: Drill) -> list[str]:
    return drill.systems or (list(plan.systems) if drill.kind == "full_platform" else [])


def tier_without_drill(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    tested: set[Tier] = set()
    for drill in plan.drills.values():
        if not drill.scheduled:
            continue  # ad-hoc drills prove nothing on a schedule
        tested.update(plan.systems[n].tier for n in _recovered_by(plan, drill))
    for tier in Tier:
        systems = sorted(n for n, s in plan.systems.items() if s.tier is tier)
        if systems and tier not in tested:
            yield Hit(
                ("drills",),
                f"no scheduled drill recovers a {tier} system ({', '.join(systems)}):"
                f" the {fmt(plan.objectives.rto.for_tier(tier))} RTO is never measured",
                f"add a drill with a schedule whose systems include one of {', '.join(systems)}",
            )


def system_drilled_only_by_hand(ctx: LintContext) -> Iterator[Hit]:
    """A system the plan means to drill (a drill names it) that no scheduled drill recovers:
    the testing schedule never measures it, whatever the tier's coverage says."""
    plan = ctx.plan
    scheduled: set[str] = set()
    by_hand: dict[str, list[str]] = {}
    for name, drill in plan.drills.items():
        for system in _recovered_by(plan, drill):
            if drill.scheduled:
                scheduled.add(system)
            else:
                by_hand.setdefault(system, []).append(name)
    for system, drills in by_hand.items():
        spec = plan.systems.get(system)
        if spec is None or system in scheduled:
            continue
        # The SmartWatts testing schedule: databases monthly, everything else quarterly.
        kind, cron, every = (
            ("database", "0 3 1 * *", "monthly")
            if spec.kind == "postgres"
            else ("service", "0 3 1 1,4,7,10 *", "quarterly")
        )
        yield Hit(
            ("drills", drills[0]),
            f"{spec.tier} system '{system}' is recovered only by drills run by hand"
            f" ({', '.join(drills)}): no drill on the plan's testing schedule measures its"
            f" {fmt(plan.rto_of(system))} RTO",
            f"give drill '{drills[0]}' a schedule (e.g. `schedule: \"{cron}\"`, {every}), or add"
            f" a scheduled {kind} drill with `systems: [{system}]`",
        )


def review_past_due(ctx: LintContext) -> Iterator[Hit]:
    review = ctx.plan.review
    if review is None:
        yield Hit(
            (),
            "the plan has no `review` section: nobody is due to check it is still true",
            "add review: {version, last_updated, next_review, every, approved_by}",
        )
    elif review.next_review < ctx.today:
        late = (ctx.today - review.next_review).days
        yield Hit(
            ("review", "next_review"),
            f"the plan's review was due on {review.next_review} ({late} days ago)",
            "review the plan, then update review.last_updated and review.next_review",
        )
    elif review.next_review - review.last_updated > review.every + timedelta(days=1):
        yield Hit(
            ("review", "next_review"),
            f"the next review ({review.next_review}) is later than the {fmt(review.every)} cadence"
            f" after the last update ({review.last_updated}) allows",
            f"set next_review to {review.last_updated + review.every} or earlier",
        )


def runbook_phase_exceeds_rto(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, runbook in plan.runbooks.items():
        for p, phase in enumerate(runbook.phases):
            if phase.window is None:
                continue
            for step in phase.steps:
                late = [s for s in step.recovers if plan.rto_of(s) < phase.window.end]
                if late:
                    rtos = ", ".join(f"{s} ({fmt(plan.rto_of(s))})" for s in late)
                    yield Hit(
                        ("runbooks", name, "phases", p, "window"),
                        f"step '{step.title}' of phase '{phase.name}' (window {phase.window})"
                        f" recovers systems whose RTO ends earlier: {rtos}",
                        "move the step to an earlier phase or end the window within the RTO",
                    )
        last = next((ph.window for ph in reversed(runbook.phases) if ph.window), None)
        if last and last.end > plan.objectives.rto.full_platform:
            yield Hit(
                ("runbooks", name),
                f"runbook '{name}' runs to {fmt(last.end)}, past the full-platform RTO of"
                f" {fmt(plan.objectives.rto.full_platform)}",
                "shorten its phases",
            )


def no_immutable_copy(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    critical = {c for s in plan.systems.values() if s.tier is Tier.CRITICAL for c in s.data_classes}
    # Only where jobs write: a locked location that holds no backups (evidence) keeps no copy.
    written = {name for job in plan.jobs.values() for name in job.locations}
    immutable = [n for n, loc in plan.locations.items()
                 if n in written and getattr(loc, "immutability", None)]  # fmt: skip
    if critical and not immutable:
        yield Hit(
            ("locations",),
            f"no location is immutable, so critical data ({', '.join(sorted(critical))}) can be"
            " deleted by anyone holding the backup credentials, ransomware included",
            "give an S3 location `immutability: {mode: compliance, days: N}` (S3 Object Lock)",
        )


def role_unreachable(ctx: LintContext) -> Iterator[Hit]:
    for name, role in ctx.plan.roles.items():
        if not (role.phone or role.email or role.slack):
            yield Hit(
                ("roles", name),
                f"role '{name}' ({role.title}) has no phone, e-mail or Slack handle",
                "add at least a phone number: during an incident chat may be down",
            )


def scenario_without_runbook(ctx: LintContext) -> Iterator[Hit]:
    for name, scenario in ctx.plan.scenarios.items():
        if scenario.runbook is None:
            yield Hit(
                ("scenarios", name),
                f"scenario '{name}' (tier {scenario.tier}) has no runbook: responders improvise",
                "set `runbook:` to one of the plan's runbooks",
            )


def drill_budget_exceeds_rto(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, drill in plan.drills.items():
        if drill.budget is None:
            continue
        limit = (
            plan.objectives.rto.full_platform
            if drill.kind == "full_platform"
            else min(plan.rto_of(s) for s in drill.systems)
        )
        if drill.budget > limit:
            yield Hit(
                ("drills", name, "budget"),
                f"drill '{name}' may take {fmt(drill.budget)}, more than the {fmt(limit)} RTO it"
                " should prove: it can pass while the objective is missed",
                f"set its budget to {fmt(limit)} or less",
            )


def drill_location_lacks_data(ctx: LintContext) -> Iterator[Hit]:
    plan = ctx.plan
    for name, drill in plan.drills.items():
        if drill.from_location is None:
            continue
        systems = plan.drilled_systems(name)
        held = {j.system for j in plan.jobs.values() if drill.from_location in j.locations}
        absent = [s for s in systems if s not in held]
        if absent:
            yield Hit(
                ("drills", name, "from_location"),
                f"drill '{name}' restores from '{drill.from_location}', where no job keeps"
                f" {', '.join(absent)}",
                f"add '{drill.from_location}' to their jobs' locations, or drill from another location",
            )


def production_write_without_approval(ctx: LintContext) -> Iterator[Hit]:
    """An automated step that writes to production (it recovers systems, or restores a
    database into production) and waits for nobody: at 3 a.m., a typo in the disaster
    moment would then overwrite production unasked."""
    for name, runbook in ctx.plan.runbooks.items():
        for p, phase in enumerate(runbook.phases):
            for s, step in enumerate(phase.steps):
                if not step.automated or step.approve or step.unattended:
                    continue
                words = (step.action or "").split()
                into_production = words[:2] == ["restore", "postgres"] and (
                    "--production" in words or not any(w.startswith("--target-dir") for w in words)
                )
                if not step.recovers and not into_production:
                    continue
                what = "restores into production" if into_production else (
                    f"recovers {', '.join(step.recovers)}")  # fmt: skip
                yield Hit(
                    ("runbooks", name, "phases", p, "steps", s),
                    f"step '{step.title}' {what} without an approval gate",
                    "give it `approve: ROLE` (drplan incident approve), or `unattended: true`"
                    " when it should run unasked",
                )

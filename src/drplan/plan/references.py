"""Checks that need the whole plan: every name used is defined, and recovery order has no cycle.

Each problem is returned as (path, message) so the loader can place it in the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator

from drplan.plan.model import JOB_TYPES_BY_KIND, Job, Plan
from drplan.plan.schedule import ScheduleKind
from drplan.plan.source import PathKey
from drplan.plan.wal_loss import MIN_PARTIAL_EVERY

Found = tuple[PathKey, str]


def check_references(plan: Plan) -> list[Found]:
    return [
        *_systems(plan),
        *_jobs(plan),
        *_data_classes(plan),
        *_locations(plan),
        *_response(plan),
        *_drills(plan),
        *_status_page(plan),
        *_dependency_cycles(plan),
    ]


def _unknown(kind: str, name: str, defined: Iterable[str]) -> str:
    names = sorted(defined)
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(names) if names else f"none: add a `{kind}s` section"
    return f"unknown {kind} '{name}' (defined: {listed}){guess}"


def _refs(
    path: PathKey, names: Iterable[str] | str | None, kind: str, defined: Iterable[str]
) -> Iterator[Found]:
    """Problems for each name in ``names`` (a list at ``path``, or one name) not in ``defined``."""
    known = set(defined)
    if names is None:
        return
    if isinstance(names, str):
        if names not in known:
            yield path, _unknown(kind, names, known)
        return
    for i, name in enumerate(names):
        if name not in known:
            yield (*path, i), _unknown(kind, name, known)


def _systems(plan: Plan) -> Iterator[Found]:
    classes = plan.objectives.rpo
    for name, system in plan.systems.items():
        base: PathKey = ("systems", name)
        yield from _refs((*base, "data_classes"), system.data_classes, "data class", classes)
        yield from _refs((*base, "depends_on"), system.depends_on, "system", plan.systems)
        yield from _refs((*base, "site"), system.site, "site", plan.sites)
        yield from _refs((*base, "owner"), system.owner, "role", plan.roles)
        if name in system.depends_on:
            yield (*base, "depends_on"), f"system '{name}' cannot depend on itself"


def _jobs(plan: Plan) -> Iterator[Found]:
    for name, job in plan.jobs.items():
        base: PathKey = ("jobs", name)
        yield from _refs((*base, "locations"), job.locations, "location", plan.locations)
        system = plan.systems.get(job.system)
        if system is None:
            yield (*base, "system"), _unknown("system", job.system, plan.systems)
            continue
        allowed = JOB_TYPES_BY_KIND[system.kind]
        if job.type not in allowed:
            yield (
                (*base, "type"),
                f"a {system.kind} system cannot run a '{job.type}' job"
                f" (allowed: {', '.join(t.value for t in allowed)})",
            )
        if job.stream and (job.type != "wal" or job.schedule.kind != ScheduleKind.CONTINUOUS):
            yield (*base, "stream"), "only a wal job with schedule `continuous` can stream"
        yield from _wal_settings(base, job)
        yield from _trigger_settings(base, job, system.kind)
        extra = [c for c in job.data_classes or [] if c not in system.data_classes]
        for cls in extra:
            index = (job.data_classes or []).index(cls)
            yield (
                (*base, "data_classes", index),
                f"system '{job.system}' holds no data class '{cls}'"
                f" (it holds: {', '.join(system.data_classes)})",
            )


WATCHABLE = ("files", "git")  # what `drplan serve` can see change (scheduler/watch.py)


def _trigger_settings(base: PathKey, job: Job, kind: str) -> Iterator[Found]:
    """`on change` only where something watches, and debounce and poll only where they apply:
    a schedule the plan accepts but nothing fires would leave a system silently unprotected."""
    change = job.schedule.kind == ScheduleKind.EVENT and job.schedule.event == "change"
    if change and kind not in WATCHABLE:
        yield (
            (*base, "schedule"),
            (
                f"nothing watches a {kind} system for changes (`on change` is for files and git"
                " systems): give it an interval, a cron expression, or `on EVENT` fired by"
                " `drplan trigger`"
            ),
        )
    if job.debounce is not None and not change:
        yield (*base, "debounce"), "only an `on change` job waits for its paths to be quiet"
    if job.poll is not None and not (change and kind == "git"):
        yield (*base, "poll"), "only an `on change` job of a git system polls its remotes"


def _wal_settings(base: PathKey, job: Job) -> Iterator[Found]:
    """partial_every and archive_timeout: where they mean something, at values they can take."""
    if job.partial_every is not None and not job.stream:
        yield (*base, "partial_every"), "only a job with `stream: true` ships a partial segment"
    elif job.partial_every is not None and job.partial_every < MIN_PARTIAL_EVERY:
        yield (*base, "partial_every"), f"at least {MIN_PARTIAL_EVERY.total_seconds():g}s"
    timeout = job.archive_timeout
    if timeout is not None and job.type != "wal":
        yield (*base, "archive_timeout"), "only a wal job relies on the server's archive_timeout"
    elif timeout is not None and not timeout.total_seconds().is_integer():
        yield (*base, "archive_timeout"), "whole seconds: the server's archive_timeout has no less"


def _data_classes(plan: Plan) -> Iterator[Found]:
    for name, spec in plan.data_classes.items():
        base: PathKey = ("data_classes", name)
        if name not in plan.objectives.rpo:
            yield (
                base,
                _unknown("data class", name, plan.objectives.rpo)
                + " (declare its RPO in objectives.rpo)",
            )
        yield from _refs((*base, "locations"), spec.locations, "location", plan.locations)
        types = {"any", *(t for kinds in JOB_TYPES_BY_KIND.values() for t in kinds)}
        for job_type in spec.retention:
            if job_type not in types:
                yield (*base, "retention", job_type), _unknown("job type", job_type, types)


def _locations(plan: Plan) -> Iterator[Found]:
    for name, location in plan.locations.items():
        yield from _refs(("locations", name, "site"), location.site, "site", plan.sites)


def _response(plan: Plan) -> Iterator[Found]:
    for name, scenario in plan.scenarios.items():
        base: PathKey = ("scenarios", name)
        yield from _refs((*base, "runbook"), scenario.runbook, "runbook", plan.runbooks)
        yield from _refs((*base, "affects"), scenario.affects, "system", plan.systems)
        yield from _refs((*base, "recover_from"), scenario.recover_from, "location", plan.locations)
    for name, runbook in plan.runbooks.items():
        for p, phase in enumerate(runbook.phases):
            for s, step in enumerate(phase.steps):
                at: PathKey = ("runbooks", name, "phases", p, "steps", s)
                yield from _refs((*at, "owner"), step.owner, "role", plan.roles)
                yield from _refs((*at, "approve"), step.approve, "role", plan.roles)
                yield from _refs((*at, "recovers"), step.recovers, "system", plan.systems)
    for name, role in plan.roles.items():
        yield from _refs(("roles", name, "deputy"), role.deputy, "role", plan.roles)
    for name, channel in plan.channels.items():
        if channel.kind == "phone":
            yield from _refs(("channels", name, "call"), channel.call, "role", plan.roles)
    comm = plan.communication
    if comm is not None:
        for key in ("primary", "secondary", "emergency", "public"):
            yield from _refs(("communication", key), getattr(comm, key), "channel", plan.channels)
        for audience, spec in comm.audiences.items():
            at = ("communication", "audiences", audience, "channels")
            yield from _refs(at, spec.channels, "channel", plan.channels)
        yield from _refs(("communication", "escalation_contacts"), comm.escalation_contacts,
                         "contact", plan.contacts)  # fmt: skip
        yield from _refs(("communication", "executive"), comm.executive, "audience",
                         comm.audiences)  # fmt: skip
    for i, route in enumerate(plan.alerting.routes):
        at = ("alerting", "routes", i, "channels")
        yield from _refs(at, route.channels, "channel", plan.channels)


def _status_page(plan: Plan) -> Iterator[Found]:
    page = plan.status_page
    if page is None:
        return
    for name, component in page.components.items():
        at = ("status_page", "components", name)
        yield from _refs((*at, "systems"), component.systems, "system", plan.systems)
        yield from _refs((*at, "group"), component.group, "group", page.groups)
    audiences = plan.communication.audiences if plan.communication else {}
    yield from _refs(("status_page", "audience"), page.audience, "audience", audiences)
    s3 = [n for n, loc in plan.locations.items() if loc.kind == "s3"]
    yield from _refs(("status_page", "publish_to"), page.publish_to, "S3 location", s3)
    hooks = [n for n, c in plan.channels.items() if c.kind == "webhook"]
    yield from _refs(("status_page", "subscribers"), page.subscribers, "webhook channel", hooks)


def _drills(plan: Plan) -> Iterator[Found]:
    for name, drill in plan.drills.items():
        base: PathKey = ("drills", name)
        yield from _refs((*base, "systems"), drill.systems, "system", plan.systems)
        yield from _refs((*base, "scenario"), drill.scenario, "scenario", plan.scenarios)
        yield from _refs((*base, "from_location"), drill.from_location, "location", plan.locations)


def _dependency_cycles(plan: Plan) -> Iterator[Found]:
    """Report each cycle in depends_on once, at the system where it was first entered."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> Iterator[Found]:
        state[name] = 1
        for dep in plan.systems[name].depends_on:
            if dep not in plan.systems or dep == name:
                continue  # reported by _systems
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep] if dep in trail else [name, dep]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    yield ("systems", dep, "depends_on"), "dependency cycle: " + " -> ".join(cycle)
            elif state.get(dep) is None:
                yield from visit(dep, [*trail, dep])
        state[name] = 2

    for name in plan.systems:
        if name not in state:
            yield from visit(name, [name])


def recovery_order(plan: Plan) -> list[list[str]]:
    """Systems in waves: each wave depends only on earlier ones (``depends_on`` and the
    platform's order, see ``plan.order``), so a wave can recover in parallel.

    Within a wave, more urgent tiers come first. Assumes the plan passed check_references.
    """
    from drplan.plan.order import dependencies  # noqa: PLC0415

    graph = dependencies(plan, list(plan.systems))
    remaining = dict(plan.systems)
    done: set[str] = set()
    waves: list[list[str]] = []
    while remaining:
        wave = [n for n in remaining if graph[n] <= done]
        wave.sort(key=lambda n: (plan.systems[n].tier.rank, n))
        waves.append(wave)
        done.update(wave)
        for n in wave:
            del remaining[n]
    return waves

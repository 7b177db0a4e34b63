"""Service and full-platform drills: systems recovered in dependency order, those whose
dependencies are all recovered at the same time, and the critical path reported against
the full-platform RTO, with a prediction from past drills made before starting.

The order is the plan's ``depends_on`` and the platform's own order (``plan.order``),
by levels: level 0 depends on nothing in the drill, level n on systems of lower levels
only. The critical path is the chain of dependencies whose recovery times add up to the most: with enough parallel hands, the
platform cannot be back sooner. The prediction adds up, along the same graph, each
system's median measured RTO over its last drills (from the catalog).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from drplan.drills.report import systems_of
from drplan.plan.model import Plan
from drplan.plan.order import dependencies

HISTORY = 5  # past measurements per system the prediction is the median of


def levels(plan: Plan, systems: list[str]) -> list[list[str]]:
    """``systems`` by recovery level (dependencies outside the drill are taken as up)."""
    graph = dependencies(plan, systems)
    placed: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in placed:
            placed[name] = 1 + max((level(d) for d in graph[name]), default=-1)
        return placed[name]

    for name in systems:
        level(name)
    out: list[list[str]] = [[] for _ in range(max(placed.values(), default=-1) + 1)]
    for name in systems:  # the plan's order within a level
        out[placed[name]].append(name)
    return out


def critical_path(plan: Plan, durations: dict[str, float]) -> tuple[list[str], float] | None:
    """The chain of dependencies with the longest total recovery time, and that time;
    None when a system has no duration (it did not recover)."""
    if not durations:
        return None
    graph = dependencies(plan, list(durations))
    finish: dict[str, tuple[float, list[str]]] = {}

    def done(name: str) -> tuple[float, list[str]]:
        if name not in finish:
            deps = graph[name]
            before = max((done(d) for d in deps), default=(0.0, []), key=lambda f: f[0])
            finish[name] = (before[0] + durations[name], [*before[1], name])
        return finish[name]

    seconds, path = max((done(n) for n in durations), key=lambda f: f[0])
    return path, seconds


def predicted(plan: Plan, systems: list[str], history: Iterable[dict[str, Any]]) -> float | None:
    """The critical path the systems' past drills (catalog rows, newest first) predict;
    None without a measurement of every one of them."""
    measured: dict[str, list[float]] = {}
    for row in history:
        for system in systems_of(row) or []:
            seconds = (system.get("rto") or {}).get("seconds")
            name = system.get("system")
            if name in systems and seconds is not None and system.get("stage") == "recovery":
                measured.setdefault(name, []).append(float(seconds))
    if any(name not in measured for name in systems):
        return None
    medians = {n: statistics.median(measured[n][:HISTORY]) for n in systems}
    found = critical_path(plan, medians)
    return None if found is None else found[1]

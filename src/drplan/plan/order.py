"""The order systems are recovered in: the plan's ``depends_on``, and beside it the
platform's own order (``PLATFORM_ORDER``): the cluster's state (etcd) before the images
that run on it, before the code and manifests (git), before the databases, before
files, as a platform is brought back by hand. A system waits for every system of an
earlier kind among those recovered with it, unless that would turn against the plan's
own ``depends_on`` (a cycle): the plan's word wins. ``plan show``, drills and their
critical paths all read the order from here.
"""

from __future__ import annotations

from drplan.plan.model import Plan

PLATFORM_ORDER = ("etcd", "images", "git", "postgres", "files", "command")


def dependencies(plan: Plan, systems: list[str]) -> dict[str, set[str]]:
    """What each of ``systems`` waits for in a recovery of them all: its ``depends_on``
    within them, and the systems of an earlier kind (see the module's docstring)."""
    chosen = set(systems)
    graph = {n: {d for d in plan.systems[n].depends_on if d in chosen} for n in systems}

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                stack += graph[name]
        return False

    rank = {n: PLATFORM_ORDER.index(plan.systems[n].kind) for n in systems}
    for name in sorted(systems, key=rank.__getitem__):
        for earlier in sorted(systems, key=rank.__getitem__):
            if rank[earlier] < rank[name] and not reaches(earlier, name):
                graph[name].add(earlier)
    return graph

"""Which jobs protect which data: one data class of one system, and the jobs and locations for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from drplan.plan.model import Job, Plan


@dataclass(frozen=True)
class Coverage:
    """The jobs that back up one data class of one system."""

    system: str
    data_class: str
    jobs: dict[str, Job]

    @property
    def where(self) -> tuple[str, str, str]:
        """The place a finding about where this data goes points at: its first job's locations."""
        return ("jobs", next(iter(self.jobs)), "locations")

    @property
    def locations(self) -> list[str]:
        return sorted({loc for job in self.jobs.values() for loc in job.locations})


def coverages(plan: Plan) -> Iterator[Coverage]:
    by_system: dict[str, dict[str, Job]] = {}
    for name, job in plan.jobs.items():
        by_system.setdefault(job.system, {})[name] = job
    for system_name, system in plan.systems.items():
        jobs = by_system.get(system_name, {})
        for cls in system.data_classes:
            covering = {n: j for n, j in jobs.items() if cls in plan.job_data_classes(j)}
            yield Coverage(system_name, cls, covering)

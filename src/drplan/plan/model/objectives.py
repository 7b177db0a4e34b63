"""Recovery objectives: RTO per system tier, RPO per data class, and what each data class requires."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, Percent, PlanModel
from drplan.plan.schedule import ScheduleField


class Tier(StrEnum):
    """How soon a system must be back: the plan's RTO tiers, most urgent first."""

    CRITICAL = "critical"
    IMPORTANT = "important"
    NON_CRITICAL = "non_critical"

    @property
    def rank(self) -> int:
        """0 for the most urgent tier; a higher rank may wait longer."""
        return list(Tier).index(self)


class RtoObjectives(PlanModel):
    critical: Duration
    """Longest time critical systems may be down (SmartWatts: 4h)."""
    important: Duration
    """Longest time important systems may be down (SmartWatts: 8h)."""
    non_critical: Duration
    """Longest time non-critical systems may be down (SmartWatts: 24h)."""
    full_platform: Duration
    """Longest time to bring back every system after losing all of them (SmartWatts: 12h)."""

    def for_tier(self, tier: Tier) -> Duration:
        return {
            Tier.CRITICAL: self.critical,
            Tier.IMPORTANT: self.important,
            Tier.NON_CRITICAL: self.non_critical,
        }[tier]


class Objectives(PlanModel):
    rto: RtoObjectives
    """Recovery time objectives per system tier."""
    rpo: dict[Name, Duration] = Field(min_length=1)
    """Recovery point objective per data class; the keys define the plan's data classes
    (SmartWatts: database 15m, application 1h, configuration 4h, logs_metrics 24h)."""
    at_risk: Percent = 0.8
    """Fraction of an RPO after which exposure is reported as at risk, before it is breached."""


class DataClass(PlanModel):
    """What the plan requires of every backup of one data class, beyond its RPO."""

    description: str = ""
    """What this data is, in the plan's words."""
    retention: dict[str, Duration] = Field(default_factory=dict)
    """Minimum time to keep backups, per job type (e.g. `full: 1y`, `incremental: 30d`);
    `any` applies to every job type not named."""
    locations: list[Name] = Field(default_factory=list)
    """Locations every backup of this class must reach (e.g. primary, secondary, cloud)."""
    verify: ScheduleField | None = None
    """How often the repository's integrity is checked for this class (e.g. `@daily`)."""

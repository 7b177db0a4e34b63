"""Alerting: which problems the daemon tells whom, how often, and when they are over.

A *problem* is an RPO at risk or breached (per data class and location), or a job
failing several runs in a row. Each has a severity; routes send problems of at least
a severity (and, optionally, of systems of some tiers) to channels. A problem is told
once when it opens, again every ``repeat_every`` while it stays open, and once when it
is resolved; PagerDuty incidents are triggered and resolved under one key per problem.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, StrictInt

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, PlanModel
from drplan.plan.model.objectives import Tier


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info; a higher rank is more urgent."""
        return list(Severity).index(self)


class AlertRoute(PlanModel):
    channels: list[Name] = Field(min_length=1)
    """Channels (see `channels`) that are told."""
    min_severity: Severity = Severity.WARNING
    """Only problems at least this severe: info, warning, error or critical."""
    tiers: list[Tier] = Field(default_factory=list)
    """Only problems of systems of these tiers; empty: every tier."""


class Alerting(PlanModel):
    routes: list[AlertRoute] = Field(default_factory=list)
    """Who is told what. Without routes, warnings and worse go to
    `communication.primary` when the plan names one."""
    failures_before_alert: StrictInt = Field(default=2, ge=1, le=100)
    """Failed runs in a row before a job's failures are a problem (one failure is
    retried first)."""
    repeat_every: Duration | None = None
    """Tell an open problem again after this long (e.g. `4h`); unset: once."""
    max_per_hour: StrictInt = Field(default=30, ge=1, le=10_000)
    """Messages per channel per hour; more are suppressed (and logged in the catalog)."""

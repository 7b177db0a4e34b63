"""Proving the plan: drills, success criteria and KPIs, reviews, recovery sites, repository settings."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, StrictInt, model_validator

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, Percent, PlanModel
from drplan.plan.schedule import ScheduleField


class Drill(PlanModel):
    description: str = ""
    kind: Literal["database", "service", "full_platform"]
    """What is recovered: one database, one service, or every system in dependency order."""
    systems: list[Name] = Field(default_factory=list)
    """Systems recovered; empty for a full-platform drill means all of them."""
    scenario: Name | None = None
    """The scenario (see `scenarios`) it rehearses."""
    schedule: ScheduleField
    """When it runs, e.g. `0 3 1 * *` (monthly) or `on major-change` (ad hoc)."""
    from_location: Name | None = None
    """Restore from this location, to prove that copy; defaults to the first reachable."""
    recovery_point: str = "latest"
    """`latest`, `random`, a time, an LSN or a restore point name."""
    budget: Duration | None = None
    """Time the drill may take; defaults to the RTO of its systems."""

    @model_validator(mode="after")
    def _systems_named(self) -> Drill:
        if self.kind != "full_platform" and not self.systems:
            raise ValueError(f"a {self.kind} drill names the systems it recovers in `systems`")
        return self


Kpi = Literal["recovery_time", "data_loss", "service_availability", "customer_impact"]


def _default_kpis() -> dict[Kpi, str]:
    return {"recovery_time": "Actual vs. target RTO", "data_loss": "Actual vs. target RPO"}


class SuccessCriteria(PlanModel):
    rto_achievement: Percent = 0.95
    """Fraction of recoveries (drills and incidents) that must finish within their RTO."""
    rpo_achievement: Percent = 0.99
    """Fraction of recoveries whose data loss must stay within the RPO."""
    data_integrity: Percent = 1.0
    """Fraction of recoveries that must pass every integrity validation."""
    service_quality: str = ""
    """How service quality after recovery is judged (SmartWatts: no degradation in performance)."""
    kpis: dict[Kpi, str] = Field(default_factory=_default_kpis)
    """Key performance indicators reported for each recovery, with what each compares."""


class Review(PlanModel):
    version: str
    """Version of the plan document."""
    last_updated: dt.date
    """Date the plan was last updated."""
    next_review: dt.date
    """Date the next review is due; lint warns once it has passed."""
    every: Duration
    """Review cadence (SmartWatts: quarterly, `3mo`)."""
    approved_by: str
    """Who approved this version."""
    distribution: str = ""
    """Who receives the plan."""
    also_after: list[str] = Field(default_factory=list)
    """Events that trigger an update besides the cadence (incidents, technology changes, ...)."""
    post_incident: list[str] = Field(default_factory=list)
    """What every post-recovery review covers (root cause, process, tools, training)."""

    @model_validator(mode="after")
    def _dates_in_order(self) -> Review:
        if self.next_review < self.last_updated:
            raise ValueError("next_review is before last_updated")
        return self


class Site(PlanModel):
    description: str = ""
    provider: str = ""
    """Who runs it (e.g. AWS)."""
    region: str = ""
    """Region or location (e.g. us-east-1)."""
    capacity: Percent = 1.0
    """Share of production capacity it can carry."""
    network: str = ""
    """Network arrangement (e.g. Multi-AZ deployment)."""
    storage: str = ""
    """Storage arrangement (e.g. EBS with replication)."""


class Compression(PlanModel):
    level: StrictInt = Field(default=1, ge=1, le=22)
    """zstd level."""


class RepositorySettings(PlanModel):
    encryption: Literal["aes-256-gcm", "chacha20-poly1305"] = "aes-256-gcm"
    """Client-side authenticated encryption of every object at rest."""
    password_command: str | None = None
    """Shell command printing the repository password (else `$DRPLAN_PASSWORD` or `--password-file`)."""
    compression: Compression = Field(default_factory=Compression)
    """Compression of stored data."""


class Tool(PlanModel):
    """Something recovery relies on besides drplan: scripts, infrastructure code, dashboards."""

    purpose: str
    """What it is used for (e.g. infrastructure provisioning)."""
    kind: Literal[
        "terraform",
        "ansible",
        "kubernetes",
        "scripts",
        "dashboard",
        "metrics",
        "alerting",
        "chat",
        "other",
    ]
    """What sort of tool it is."""
    location: str = ""
    """Where it is kept (a repository, a path, a URL)."""


class Document(PlanModel):
    """A document the plan refers to (its appendices): checklists, contact lists, diagrams."""

    title: str
    """The document's title."""
    category: Literal[
        "checklist",
        "scripts",
        "contacts",
        "escalation",
        "templates",
        "notifications",
        "technical",
        "other",
    ]
    """What sort of document it is."""
    location: str = ""
    """Where it is kept."""

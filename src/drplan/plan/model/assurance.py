"""Proving the plan: drills, success criteria and KPIs, reviews, recovery sites, repository settings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, Percent, PlanModel
from drplan.plan.schedule import ScheduleField, ScheduleKind

_SLOTTED = (ScheduleKind.CRON, ScheduleKind.INTERVAL)  # schedules with run times


class SqlCheck(PlanModel):
    name: str
    """What it proves, as a person would say it (e.g. `readings in the last hour`)."""
    query: str
    """A query returning one row whose first column is true when the check passes (e.g.
    `select count(*) > 0 from readings where taken_at > '{point}'::timestamptz - interval '1 hour'`);
    `{point}` is the recovery point reached, `{disaster}` the moment the drill declared."""
    database: str | None = None
    """Database to run it in; defaults to the system's connection's."""


class CommandCheck(PlanModel):
    name: str
    """What it proves (e.g. `API smoke test`)."""
    run: str
    """Shell command; it gets the scratch cluster in PGHOST, PGPORT, PGUSER, PGDATABASE and
    PGPASSWORD (for PostgreSQL) or DRPLAN_RESTORED (the restored directory); exit 0 passes."""
    timeout: Duration | None = None
    """Stop it and fail after this long (default 10 minutes)."""


class TableCheck(PlanModel):
    table: str
    """Table to compare between the source and the recovered cluster (e.g. `public.meters`)."""
    where: str | None = None
    """Rows to compare (SQL condition); `{disaster}` is the moment the drill declared, e.g.
    `taken_at < '{disaster}'::timestamptz - interval '1 minute'` for an append-only table
    that goes on growing at the source."""
    database: str | None = None
    """Database it is in; defaults to the system's connection's."""


class DrillValidations(PlanModel):
    amcheck: StrictBool = True
    """`pg_amcheck` over every relation and index of every database (heap and B-tree)."""
    checksums: StrictBool = True
    """`pg_checksums --check` on the stopped cluster (when it has data checksums)."""
    tables: list[TableCheck] = Field(default_factory=list)
    """Row counts and checksums compared with the source."""
    sql: list[SqlCheck] = Field(default_factory=list)
    """The plan's own checks in SQL."""
    commands: list[CommandCheck] = Field(default_factory=list)
    """Smoke tests with the scratch connection in their environment."""


class Drill(PlanModel):
    description: str = ""
    kind: Literal["database", "service", "full_platform"]
    """What is recovered: one database, one service, or every system in dependency order."""
    systems: list[Name] = Field(default_factory=list)
    """Systems recovered; empty for a full-platform drill means all of them."""
    scenario: Name | None = None
    """The scenario (see `scenarios`) it rehearses."""
    schedule: ScheduleField | None = None
    """When `drplan serve` runs it, e.g. `0 3 1 * *` (monthly); without one (or with
    `manual`, or an event such as `on major-change`) it runs only by hand, with
    `drplan drill run`, and is never overdue."""
    from_location: Name | None = None
    """Restore from this location, to prove that copy; defaults to the first reachable."""
    recovery_point: str = "latest"
    """`latest`, `random` (a point picked at random in what the location holds), a time,
    an LSN or a restore point (`name:NAME`)."""
    budget: Duration | None = None
    """Time the drill may take; defaults to the RTO of its systems."""
    simulate: Literal["none", "corruption"] = "none"
    """What the drill does to the recovered copy: `corruption` damages relation pages,
    shows the validations catch it, then recovers again to the last point before it."""
    sentinel: StrictBool = True
    """Write a row into the source (`drplan.drill_sentinel`, created when missing) at the
    disaster moment, to measure the data lost; off for sources drplan may not write to
    (the loss is then measured from the last transaction replayed)."""
    validations: DrillValidations = Field(default_factory=DrillValidations)
    """What proves the recovery good, each reported on its own."""
    scratch_ports: Annotated[str, Field(pattern=r"^[0-9]{1,5}(-[0-9]{1,5})?$")] | None = None
    """Ports a scratch server may listen on, `LOW-HIGH` (default: any free one)."""
    scratch_dir: str | None = None
    """Where scratch targets are made (default: the state directory's `drills/`); never a
    system's data directory or inside one."""

    @property
    def scheduled(self) -> bool:
        """Whether it has slots (a cron or interval schedule): the daemon runs it then, and
        a slot passed without a run makes it overdue."""
        return self.schedule is not None and self.schedule.kind in _SLOTTED

    @property
    def schedule_text(self) -> str:
        """Its schedule as the plan says it, for people: `by hand` when it has none."""
        return "by hand" if self.schedule is None else str(self.schedule)

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
